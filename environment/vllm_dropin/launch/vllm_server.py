"""Start `vllm serve` from a LaunchPlan on loopback and wait until it is healthy."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from .. import plan as plan_mod
from ..plan import LaunchPlan
from .processes import Child

POLL_S = 0.5


class StartupError(Exception):
    """vLLM exited or did not become healthy in time; the message ends with its log tail."""


@dataclass
class VllmEndpoint:
    """How the DRUM adapter reaches the running vLLM."""

    base_url: str
    api_key: str
    model: str  # a served name to put in requests


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vllm_executable() -> list[str]:
    """The `vllm` CLI beside this interpreter (the image's venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("vllm")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("vllm")
    return [found] if found else [sys.executable, "-m", "vllm.entrypoints.cli.main"]


def prepare_cache(plan: LaunchPlan) -> None:
    from ..errors import ConfigError

    for path in plan_mod.cache_env(plan.cache_dir).values():
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"runtime parameter 'cache_dir': cannot create {path}: {exc.strerror}") from None
        if not os.access(path, os.W_OK):
            raise ConfigError(f"runtime parameter 'cache_dir': {path} is not writable")


def start(plan: LaunchPlan, port: int | None = None) -> tuple[Child, VllmEndpoint, list[str]]:
    """Launch vLLM; returns the child, how to reach it, and its (secret-free) argv."""
    port = port or free_port()
    api_key = secrets.token_urlsafe(32)
    argv = plan_mod.vllm_command(plan, vllm_executable(), port)
    env = plan_mod.vllm_env(plan, os.environ, api_key)
    child = Child("vllm", argv, env, secrets=[api_key, env.get("HF_TOKEN", "")])
    return child, VllmEndpoint(f"http://127.0.0.1:{port}/v1", api_key, plan.served_names[0]), argv


def wait_healthy(child: Child, endpoint: VllmEndpoint, timeout_s: float, stop: threading.Event) -> float | None:
    """Poll /health until 200; StartupError on exit or timeout; None if `stop` was set first.

    Returns the seconds waited."""
    health = endpoint.base_url.removesuffix("/v1") + "/health"
    started = time.monotonic()
    with requests.Session() as session:
        while True:
            code = child.poll()
            if code is not None:
                raise StartupError(f"vLLM exited with code {code} during startup; last log lines:\n{child.tail()}")
            try:
                if session.get(health, timeout=5).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            if time.monotonic() - started > timeout_s:
                raise StartupError(
                    f"vLLM was not healthy after {timeout_s:g} s (runtime parameter "
                    f"'startup_timeout_seconds'); last log lines:\n{child.tail()}"
                )
            if stop.wait(POLL_S):
                return None
