"""Start the environment the way the image does (`environment/start_server.sh`), wait, stop.

Shared by the demo, the tests and the benchmarks, so all of them exercise the image's own path.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from vllm_dropin import health
from vllm_dropin.launch.processes import ProcessGroup

REPO = Path(__file__).resolve().parent.parent
START_SERVER = REPO / "environment" / "start_server.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def runtime_param_env(values: Mapping[str, object]) -> dict[str, str]:
    """MLOPS_RUNTIME_PARAM_* variables as the platform sets them (type inferred from the value)."""
    import json

    def kind(v: object) -> str:
        if isinstance(v, bool):
            return "boolean"
        if isinstance(v, (int, float)):
            return "numeric"
        return "credential" if isinstance(v, dict) else "string"

    return {f"MLOPS_RUNTIME_PARAM_{k}": json.dumps({"type": kind(v), "payload": v}) for k, v in values.items()}


class Service(ProcessGroup):
    """One process group started in its own session, logging to a file; polled over HTTP."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log_path: Path, name: str = "service"):
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        super().__init__(name, argv, env, self._log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, done: Callable[[str], bool], timeout_s: float = 30) -> str:
        """The log once done(log) holds or `timeout_s` passed, whichever comes first: lines a
        child writes after answering (vLLM's access log) reach the file later than the answer."""
        deadline = time.monotonic() + timeout_s
        while not done(text := self.log()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return text

    def wait_http(self, url: str, timeout_s: float = 600) -> float:
        """Poll `url` until it answers 200; seconds since the process started. Raises if it exits first."""

        def exited() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            return False

        try:
            health.wait(url, timeout_s, exited)
        except TimeoutError:
            raise TimeoutError(f"{self.name} not ready after {timeout_s} s:\n{self.log()[-4000:]}") from None
        return time.monotonic() - self.started

    def wait_exit(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            self._log.flush()

    def stop(self, timeout_s: float = 60, sweep: bool = False) -> int:  # type: ignore[override]
        """SIGTERM the leader (as the platform does); kill the group if it does not exit in time.

        `sweep`: kill what is left of the group even after a clean exit (for third-party servers
        that leave children behind; our own entrypoint must not need it, and tests check that)."""
        code = super().stop(timeout_s, whole_group=False, sweep=sweep)
        self._log.close()
        return code


class RunningEnvironment(Service):
    """`start_server.sh` (this tree's, or an unpacked tarball's) as the image runs it."""

    def __init__(
        self,
        code_dir: Path,
        log_path: Path,
        env: Mapping[str, str] = (),
        args: list[str] = (),
        start_server: Path = START_SERVER,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.code_dir = code_dir
        self.extra_env = dict(env)
        full_env = {
            **os.environ,
            "PYTHON": sys.executable,  # the image runs its own python3; here, this venv's
            "CODE_DIR": str(code_dir),
            "ADDRESS": f"127.0.0.1:{self.port}",
            "TARGET_NAME": "resultText",
            "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
            **dict(env),
        }
        super().__init__(["bash", str(start_server), *args], full_env, log_path, name="environment")

    def wait_ready(self, timeout_s: float = 600) -> float:
        """Poll until DRUM answers /v1/models (vLLM healthy and a DRUM worker loaded)."""
        return self.wait_http(f"{self.url}/v1/models", timeout_s)
