"""Start the environment the way the image does (`environment/start_server.sh`), wait, stop.

Shared by the demo, the tests and the benchmarks, so all of them exercise the image's own path.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests

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


class RunningEnvironment:
    """One `start_server.sh` process group, logging to a file."""

    def __init__(self, code_dir: Path, log_path: Path, env: Mapping[str, str] = (), args: list[str] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {
            **os.environ,
            "PYTHON": sys.executable,  # the image runs its own python3; here, this venv's
            "CODE_DIR": str(code_dir),
            "ADDRESS": f"127.0.0.1:{self.port}",
            "TARGET_NAME": "resultText",
            "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
            **dict(env),
        }
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["bash", str(START_SERVER), *args],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 600) -> None:
        """Poll until DRUM answers /v1/models (vLLM healthy and a DRUM worker loaded)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"environment exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if requests.get(f"{self.url}/v1/models", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"environment not ready after {timeout_s} s:\n{self.log()[-4000:]}")

    def wait_exit(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            self._log.flush()

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM the entrypoint (as the platform does); kill the group if it does not exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
