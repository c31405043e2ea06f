"""vLLM's OpenAI-compatible server as a child process: `sclcoder serve`, endpoints for `predict --endpoint` and
teacher LLMs in tests. It runs in a process group of its own under `sclcoder.infer.watchdog`, which Linux tells
to stop when sclcoder dies, so nothing of the server outlives sclcoder."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sclcoder import defaults
from sclcoder.errors import SclError
from sclcoder.infer.environment import STRUCTURED_OUTPUTS, engine_dtype, lora_rank, server_env

READY_TIMEOUT_S = 300.0
"""How long a server may take to load (vLLM on CPU: 20-60 s; a large model on GPU: minutes)."""
STOP_TIMEOUT_S = 30.0


@dataclass
class ServerSpec:
    model: str
    host: str
    port: int
    max_model_len: int
    dtype: str
    cpu_kv_cache_gb: float
    served_model_name: str | None = None
    lora_name: str | None = None
    lora_path: str | None = None
    max_lora_rank: int | None = None
    tensor_parallel_size: int | None = None
    enforce_eager: bool = False
    chat_template: str | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        host = defaults.LOOPBACK if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}/v1"

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model,
            "--host", self.host,
            "--port", str(self.port),
            "--max-model-len", str(self.max_model_len),
            "--dtype", engine_dtype(self.dtype),
            "--structured-outputs-config", json.dumps(STRUCTURED_OUTPUTS),
            "--disable-uvicorn-access-log",
        ]  # fmt: skip
        if self.tensor_parallel_size:
            cmd += ["--tensor-parallel-size", str(self.tensor_parallel_size)]
        if self.served_model_name:
            cmd += ["--served-model-name", self.served_model_name]
        if self.enforce_eager:
            cmd.append("--enforce-eager")
        if self.chat_template:
            cmd += ["--chat-template", self.chat_template]
        if self.lora_path:
            if not self.max_lora_rank:
                raise SclError("a LoRA adapter needs its rank to be served", field="max_lora_rank")
            cmd += [
                "--enable-lora",
                "--max-lora-rank", str(lora_rank(self.max_lora_rank)),
                "--lora-modules", f"{self.lora_name or defaults.SERVED_MODEL_NAME}={self.lora_path}",
            ]  # fmt: skip
        return cmd + list(self.extra_args)


def check_port_free(host: str, port: int) -> None:
    """One line when another process already listens on host:port (vLLM itself would report it deep in a
    traceback, after loading the model)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        # a port left in TIME_WAIT by a server that just stopped is free; one with a listener is not
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise SclError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", field="port") from None


def _die_with(parent: int) -> None:
    """In the child, before exec: ask Linux to send SIGTERM when the parent dies, however it dies (even
    SIGKILL, which leaves the parent no chance to stop its children)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request was in place
        os._exit(1)


def start_server(spec: ServerSpec, log_path: str | os.PathLike[str] | None = None) -> subprocess.Popen:
    """Start vLLM's OpenAI-compatible server (its output goes to `log_path`) in a process group of its own,
    led by `sclcoder.infer.watchdog`, which Linux tells to stop when this process dies."""
    check_port_free(spec.host, spec.port)
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    parent = os.getpid()
    watch = (lambda: _die_with(parent)) if sys.platform == "linux" else None
    return subprocess.Popen(
        [sys.executable, "-m", "sclcoder.infer.watchdog", *spec.command()],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=server_env(spec.cpu_kv_cache_gb),
        start_new_session=True,
        preexec_fn=watch,
    )


def wait_until_ready(
    base_url: str,
    proc: subprocess.Popen | None = None,
    *,
    timeout: float = READY_TIMEOUT_S,
    log_path: str | os.PathLike[str] | None = None,
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


def stop_server(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> None:
    """Stop the server and everything in its process group (its watchdog escalates to SIGKILL itself)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, if any
