"""`sclcoder serve`: vLLM's OpenAI-compatible server with a model loaded (for scale-out and tools), under the
name clients ask for: a merged model as it is; an adapter merged into its base weights or on them with LoRA, as
predict would run it (`predict.merge_adapter`: merged on CPU, LoRA on GPUs)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from sclcoder import defaults
from sclcoder.artifacts import Adapter
from sclcoder.errors import SclError
from sclcoder.infer.merge import merged_model
from sclcoder.infer.server import ServerSpec, start_server, stop_server, wait_until_ready
from sclcoder.infer.settings import merges, predict_settings
from sclcoder.progress import console

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def server_spec(
    adapter: Adapter,
    *,
    host: str,
    port: int,
    name: str,
    tensor_parallel_size: int | None = None,
    max_model_len: int | None = None,
    merge_adapter: str | None = None,
) -> ServerSpec:
    """How `sclcoder serve` starts vLLM for a model: a merged model as it is, an adapter merged into its base
    weights or with LoRA per request as `predict.merge_adapter` (or `merge_adapter` here) says."""
    settings = predict_settings(adapter, {"merge_adapter": merge_adapter})
    common = {
        "host": host,
        "port": port,
        "max_model_len": max_model_len or settings.max_model_len,
        "dtype": settings.dtype,
        "cpu_kv_cache_gb": settings.cpu_kv_cache_gb,
        "tensor_parallel_size": tensor_parallel_size or settings.tensor_parallel_size,
    }
    if adapter.merged:
        return ServerSpec(model=adapter.base_model, served_model_name=name, **common)
    if merges(settings):  # as predict serves it: faster on CPU, and able to score prompts (support scores)
        return ServerSpec(model=str(merged_model(adapter)), served_model_name=name, **common)
    base = adapter.base_model
    return ServerSpec(
        model=base,
        served_model_name=Path(base).name if Path(base).exists() else base,
        lora_name=name,
        lora_path=str(adapter.path),
        max_lora_rank=settings.max_lora_rank or adapter.lora_rank,
        **common,
    )


def serve(adapter: Adapter, **kwargs) -> None:  # type: ignore[no-untyped-def]
    """Run the server in the foreground until Ctrl-C or SIGTERM; the server stops with this process."""
    spec = server_spec(adapter, **kwargs)
    if spec.host not in LOCAL_HOSTS:
        console.print(f"[yellow]binding {spec.host}: anyone who can reach this machine can send notes to it[/]")
    # SIGTERM (and Ctrl-C) become a clean stop below, even while the server is still loading
    signal.signal(signal.SIGTERM, _stop)
    proc = start_server(spec)
    name = spec.lora_name or spec.served_model_name or defaults.SERVED_MODEL_NAME
    try:
        wait_until_ready(spec.base_url, proc)
        console.print(
            f"serving [bold]{name}[/] ({adapter.path}{'' if adapter.merged else f' on {spec.model}'}) at "
            f"[bold]{spec.base_url}[/]\n"
            f"  sclcoder predict NOTES.jsonl --adapter {adapter.path} --endpoint {spec.base_url} "
            f"--endpoint-model {name} -o predictions.jsonl\n"
            f"  curl {spec.base_url}/chat/completions -H 'Content-Type: application/json' "
            f'-d \'{{"model": "{name}", "messages": [...]}}\'\n'
            "Ctrl-C stops it."
        )
        while proc.poll() is None:
            time.sleep(1.0)
        raise SclError(f"the vLLM server stopped by itself (exit code {proc.returncode})")
    except KeyboardInterrupt:
        pass
    finally:
        stop_server(proc)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds into serve's finally, which stops the server
