"""`sclcoder serve`: vLLM's OpenAI-compatible server with an adapter loaded (for scale-out and tools)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from sclcoder.artifacts import open_adapter
from sclcoder.errors import SclError
from sclcoder.infer.engine import ServerSpec, predict_settings, start_server, stop_server, wait_until_ready
from sclcoder.progress import console


def server_spec(
    adapter: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str = "adapter",
    tensor_parallel_size: int = 1,
    max_model_len: int | None = None,
) -> ServerSpec:
    ad = open_adapter(adapter)
    settings = predict_settings(ad)
    return ServerSpec(
        model=ad.base_model,
        host=host,
        port=port,
        served_model_name=Path(ad.base_model).name if Path(ad.base_model).exists() else ad.base_model,
        max_model_len=max_model_len or settings.max_model_len,
        dtype=settings.dtype,
        lora_name=name,
        lora_path=str(ad.path),
        max_lora_rank=ad.lora_rank,
        tensor_parallel_size=tensor_parallel_size,
    )


def serve(adapter: str | os.PathLike[str], **kwargs) -> None:  # type: ignore[no-untyped-def]
    """Run the server in the foreground until Ctrl-C or SIGTERM; the server stops with this process."""
    spec = server_spec(adapter, **kwargs)
    if spec.host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]binding {spec.host}: anyone who can reach this machine can send notes to it[/]")
    # SIGTERM (and Ctrl-C) become a clean stop below, even while the server is still loading
    signal.signal(signal.SIGTERM, _stop)
    proc = start_server(spec)
    try:
        wait_until_ready(spec.base_url, proc)
        console.print(
            f"serving [bold]{spec.lora_name}[/] ({spec.lora_path} on {spec.model}) at [bold]{spec.base_url}[/]\n"
            f"  sclcoder predict NOTES.jsonl --adapter {spec.lora_path} --endpoint {spec.base_url} "
            f"--endpoint-model {spec.lora_name} -o predictions.jsonl\n"
            f"  curl {spec.base_url}/chat/completions -H 'Content-Type: application/json' "
            f'-d \'{{"model": "{spec.lora_name}", "messages": [...]}}\'\n'
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
