"""OpenAI-compatible endpoints (a vLLM server, a hosted teacher): one client factory and one reachability
check, so a down endpoint is the same clear error wherever sclcoder talks to one."""

from __future__ import annotations

import os
from typing import Any

from sclcoder import defaults
from sclcoder.errors import SclError


def openai_client(base_url: str, *, api_key: str | None = None, timeout: float, max_retries: int) -> Any:
    """A client for `base_url`; without a key (a local vLLM server needs none) a placeholder is sent."""
    from openai import OpenAI

    key = api_key or os.environ.get("OPENAI_API_KEY") or "not-needed"
    return OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=max_retries)


def check_reachable(client: Any, base_url: str, *, what: str = "endpoint", field: str | None = None) -> list[str]:
    """The names of the models the endpoint serves, listed once: any transport or HTTP failure means the same
    thing to the user."""
    try:
        return [m.id for m in client.models.list()]
    except Exception as exc:
        raise SclError(f"{what} {base_url} is not reachable ({type(exc).__name__}: {exc})", field=field) from None


def free_port(host: str = defaults.LOOPBACK) -> int:
    """A TCP port nobody listens on right now (for a server or a process group we are about to start)."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
