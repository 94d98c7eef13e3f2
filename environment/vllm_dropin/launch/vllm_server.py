"""Start vLLM on loopback (its argv is built in its own process, see vllm_entry) and wait until healthy."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from .. import gpus
from .. import plan as plan_mod
from ..errors import ConfigError
from ..parameters import DEFAULT_SERVED_ALIAS
from ..plan import LaunchPlan
from ..runtime_params import Values
from . import vllm_entry
from .processes import Child

POLL_S = 0.1
PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent
# The Python that has vLLM; default: ours. The CUDA image keeps vLLM in the base image's Python
# and DRUM in a venv of its own, so neither closure can break the other.
VLLM_PYTHON_VAR = "DROPIN_VLLM_PYTHON"
CHECK_TIMEOUT_S = 600


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


def prepare_cache(plan: LaunchPlan) -> None:
    for path in plan_mod.cache_env(plan.cache_dir).values():
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"runtime parameter 'cache_dir': cannot create {path}: {exc.strerror}") from None
        if not os.access(path, os.W_OK):
            raise ConfigError(f"runtime parameter 'cache_dir': {path} is not writable")


def _entry(
    plan: LaunchPlan,
    values: Values,
    engine_args: list[str],
    code_dir: Path,
    api_key: str,
    mode: list[str],
    assume_hook_fills: bool = False,
) -> tuple[list[str], dict[str, str]]:
    """argv and environment of `vllm_entry` in vLLM's Python (scrubbed env, spec without secrets)."""
    env = plan_mod.vllm_env(plan, os.environ, api_key)
    visible = gpus.visible(os.environ)
    env[vllm_entry.SPEC_VAR] = vllm_entry.spec_json(values, engine_args, code_dir, visible, assume_hook_fills)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    python = os.environ.get(VLLM_PYTHON_VAR) or sys.executable
    return [python, "-m", "vllm_dropin.launch.vllm_entry", *mode], env


def check(
    plan: LaunchPlan, values: Values, engine_args: list[str], code_dir: Path, assume_hook_fills: bool = False
) -> list[str]:
    """The plan as vLLM's own parser sees it, launching nothing; ConfigError on a bad flag.

    `assume_hook_fills`: checked before load_model runs, so ${CODE_DIR}/vllm/ may still be empty."""
    prepare_cache(plan)  # vLLM writes under it as soon as it is imported
    argv, env = _entry(plan, values, engine_args, code_dir, "<per-launch key>", ["--check"], assume_hook_fills)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)
    rejected = _config_error(done.returncode, done.stdout)
    if rejected is not None:
        raise rejected
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise ConfigError(f"checking vLLM's arguments failed (exit code {done.returncode}):\n{tail}")
    return done.stdout.splitlines()


def _config_error(code: int, output: str) -> ConfigError | None:
    """vllm_entry's one-line verdict on the flags, if that is why it exited."""
    errors = [line for line in output.splitlines() if line.startswith(vllm_entry.CONFIG_ERROR)]
    if code == vllm_entry.CONFIG_ERROR_EXIT and errors:
        return ConfigError(errors[-1].removeprefix(vllm_entry.CONFIG_ERROR))
    return None


def start(plan: LaunchPlan, values: Values, engine_args: list[str], code_dir: Path) -> tuple[Child, VllmEndpoint]:
    """Launch the vLLM process; it checks its arguments first (a config error exits with code 2)."""
    port = free_port()
    api_key = secrets.token_urlsafe(32)
    argv, env = _entry(plan, values, engine_args, code_dir, api_key, ["--port", str(port)])
    child = Child("vllm", argv, env, secrets=[api_key, env.get("HF_TOKEN", "")])
    return child, VllmEndpoint(f"http://127.0.0.1:{port}/v1", api_key, DEFAULT_SERVED_ALIAS)


def _exited(child: Child, code: int) -> Exception:
    tail = child.tail()
    rejected = _config_error(code, tail)
    if rejected is not None:
        return rejected
    name = {"vllm": "vLLM", "drum": "DRUM"}.get(child.name, child.name)
    return StartupError(f"{name} exited with code {code} during startup; last log lines:\n{tail}")


def wait_healthy(
    child: Child, endpoint: VllmEndpoint, timeout_s: float, stop: threading.Event, others: list[Child] = ()
) -> float | None:
    """Poll /health until 200; None if `stop` was set first. Returns the seconds waited.

    ConfigError if vLLM rejected its arguments; StartupError if it (or one of `others`, started
    alongside it) exits, or on timeout."""
    health = endpoint.base_url.removesuffix("/v1") + "/health"
    started = time.monotonic()
    with requests.Session() as session:
        while True:
            for watched in (child, *others):
                code = watched.poll()
                if code is not None:
                    raise _exited(watched, code)
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
