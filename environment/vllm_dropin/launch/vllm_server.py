"""Start vLLM on loopback (its argv is built in its own process, see vllm_entry) and wait until healthy."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from vllm_dropin import health
from vllm_dropin.config import Config
from vllm_dropin.contract import VllmEndpoint
from vllm_dropin.errors import ConfigError, DropinError, ExitCode, ServingError, StartupError
from vllm_dropin.launch import failure, model_infos, process_env, vllm_entry
from vllm_dropin.launch.processes import SHOWN_LINES, Child
from vllm_dropin.model.artifacts import cache_lock
from vllm_dropin.planning.plan import LaunchPlan

# The Python that has vLLM; default: ours. The CUDA image keeps vLLM in the base image's Python
# and DRUM in a venv of its own, so neither closure can break the other.
VLLM_PYTHON_VAR = "DROPIN_VLLM_PYTHON"
CHECK_TIMEOUT_S = 600
STOP_POLL_S = 0.2  # how soon a flag check no longer wanted is stopped
KEY_FILE = "vllm-api-key"  # in cache_dir: vLLM's key for DRUM's workers
CHILD_NAMES = {"vllm": "vLLM", "drum": "DRUM", "ray": "the Ray head", "ray-nodes": "the Ray node watch"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_cache(cache_dir: Path) -> None:
    """Every cache folder under cache_dir made and writable, or ConfigError naming it; vLLM's model
    infos in it from the install."""
    folders = process_env.cache_env(cache_dir)
    for path in folders.values():
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"runtime parameter 'cache_dir': cannot create {path}: {exc.strerror}") from None
        if not os.access(path, os.W_OK):
            raise ConfigError(f"runtime parameter 'cache_dir': {path} is not writable")
    model_infos.seed(Path(folders["VLLM_CACHE_ROOT"]))


def vllm_python() -> str:
    """The Python that has vLLM (and Ray, where the image has it)."""
    return os.environ.get(VLLM_PYTHON_VAR) or sys.executable


def _entry(plan: LaunchPlan, api_key: str, mode: list[str]) -> tuple[list[str], dict[str, str]]:
    """argv and environment of `vllm_entry` in vLLM's Python (scrubbed env, plan without secrets)."""
    env = process_env.with_package_path(process_env.vllm_env(plan, os.environ, api_key))
    env[vllm_entry.PLAN_VAR] = plan.to_json()
    return [vllm_python(), "-m", "vllm_dropin.launch.vllm_entry", *mode], env


def check_flags(config: Config, stopping: Callable[[], bool] = lambda: False) -> None:
    """engine_config.json's flags, the parameters' flags and the batch settings through vLLM's own
    parser and rules, before the model is known (so before a long load_model or download);
    ConfigError on a bad one. Once `stopping()` it is stopped, saying nothing: vLLM's process
    parses the same flags with the same rules before it loads anything."""
    env = {**process_env.without_secrets(os.environ), **process_env.cache_env(config.cache_dir)}
    env = process_env.with_package_path(env)
    env[vllm_entry.PLAN_VAR] = vllm_entry.flags_json(config.engine_args, config.param_flags, config.batch)
    prepare_cache(config.cache_dir)
    _run_check([vllm_python(), "-m", "vllm_dropin.launch.vllm_entry", "--check-flags"], env, stopping)


def check(plan: LaunchPlan) -> list[str]:
    """The plan as vLLM's own parser sees it, launching nothing; ConfigError on a bad flag.

    Only the plan's lines are returned: whatever vLLM's imports print (Triton, platform
    detection) stays out of `check`'s output."""
    prepare_cache(plan.cache_dir)  # vLLM writes under it as soon as it is imported
    return _run_check(*_entry(plan, "<deployment key>", ["--check"]))


def _run_check(argv: list[str], env: dict[str, str], stopping: Callable[[], bool] = lambda: False) -> list[str]:
    """The lines a checking vllm_entry printed for its plan (none if stopped); its config error, or
    a StartupError."""
    finished = _finished(argv, env, stopping)
    if finished is None:
        return []
    code, output = finished
    rejected = _config_error(code, output)
    if rejected is not None:
        raise rejected
    planned = [line.removeprefix(vllm_entry.PLAN_LINE) for line in output if line.startswith(vllm_entry.PLAN_LINE)]
    if code != 0 or not planned:
        what = f"checking vLLM's arguments in vLLM's Python failed (exit code {code})"
        raise StartupError(failure.summary(what, output), "\n".join(output[-SHOWN_LINES:]))
    return planned


def _finished(argv: list[str], env: dict[str, str], stopping: Callable[[], bool]) -> tuple[int, list[str]] | None:
    """A process's exit code and its output's lines (stdout's, then stderr's); None if `stopping()`
    before it ended (it is killed); subprocess.TimeoutExpired after CHECK_TIMEOUT_S."""
    deadline = time.monotonic() + CHECK_TIMEOUT_S
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        while True:
            try:
                stdout, stderr = proc.communicate(timeout=STOP_POLL_S)
                return proc.returncode, (stdout + stderr).splitlines()
            except subprocess.TimeoutExpired:
                stopped = stopping()
                if stopped or time.monotonic() > deadline:
                    proc.kill()
                    proc.communicate()
                    if stopped:
                        return None
                    raise


def _config_error(code: int, output: list[str]) -> ConfigError | None:
    """vllm_entry's one-line verdict on the configuration, if that is why it exited."""
    errors = [line for line in output if line.startswith(vllm_entry.CONFIG_ERROR)]
    if code == ExitCode.CONFIG and errors:
        return ConfigError(errors[-1].removeprefix(vllm_entry.CONFIG_ERROR))
    return None


def launch_key(cache_dir: Path) -> str:
    """The key DRUM's workers give vLLM: random, kept in cache_dir (owner-only), the same at every
    start, because vLLM 0.25 hashes VLLM_API_KEY into its torch.compile cache key (a new key would
    make every restart compile again). Replicas sharing cache_dir share it, and so their cache."""
    path = cache_dir / KEY_FILE
    with cache_lock.held(path, "vLLM's key"):
        try:
            return path.read_text(encoding="utf-8").strip() or _new_key(path)
        except FileNotFoundError:
            return _new_key(path)


def _new_key(path: Path) -> str:
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(key)
    return key


def start(
    plan: LaunchPlan, layout_file: Path, on_line: Callable[[str], None] | None = None
) -> tuple[Child, VllmEndpoint]:
    """Launch the vLLM process; it checks its arguments first (a config error exits with code 2),
    then writes the layout it decided to `layout_file`. `on_line` sees each line of its output."""
    port = free_port()
    api_key = launch_key(plan.cache_dir)
    argv, env = _entry(plan, api_key, ["--port", str(port)])
    env[vllm_entry.LAYOUT_VAR] = str(layout_file)
    masked = [api_key, *(env.get(name, "") for name in ("HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"))]
    child = Child("vllm", argv, env, secrets=masked, on_line=on_line)
    return child, VllmEndpoint(f"http://127.0.0.1:{port}/v1", api_key)


def exited(child: Child, code: int, startup: bool = True) -> DropinError:
    """The error for a child that exited with `code`: its config verdict, or the exception it died of."""
    lines = child.tail()
    rejected = _config_error(code, lines)
    if rejected is not None:
        return rejected
    name = CHILD_NAMES.get(child.name, child.name)
    shown = "\n".join(lines[-SHOWN_LINES:])
    if startup:
        return StartupError(failure.summary(f"{name} exited with code {code} during startup", lines), shown)
    return ServingError(failure.summary(f"{name} exited unexpectedly with code {code}", lines), shown)


def wait_healthy(
    vllm: Child, endpoint: VllmEndpoint, timeout_s: float, stopping: Callable[[], bool], watched: Sequence[Child]
) -> float | None:
    """Seconds until vLLM answered /health; None if `stopping()` first.

    ConfigError if vLLM rejected its arguments; StartupError if a watched child exits, or on timeout."""

    def stop_or_raise() -> bool:
        for child in watched:
            code = child.poll()
            if code is not None:
                raise exited(child, code)
        return stopping()

    try:
        return health.wait(endpoint.health_url, timeout_s, stop_or_raise)
    except TimeoutError:
        raise StartupError(
            f"vLLM was not healthy after {timeout_s:g} s (runtime parameter 'startup_timeout_seconds')",
            "\n".join(vllm.tail()[-SHOWN_LINES:]),
        ) from None
