"""The flag check's process: waited for to its verdict, or stopped at once when abandoned (the
model arrived first: vLLM's process parses the same flags before it loads anything)."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from vllm_dropin.launch import vllm_server

SLEEPER = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)"


def _pid(path: Path) -> int:
    deadline = time.monotonic() + 30
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, "the process never started"
        time.sleep(0.05)
    return int(path.read_text())


def test_a_finished_check_gives_its_code_and_lines():
    argv = [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"]
    assert vllm_server._finished(argv, dict(os.environ), lambda: False) == (3, ["out", "err"])


def test_an_abandoned_check_is_stopped_and_says_nothing(tmp_path):
    pid_file = tmp_path / "pid"
    abandon = threading.Event()
    result: list[object] = []
    worker = threading.Thread(
        target=lambda: result.append(
            vllm_server._finished([sys.executable, "-c", SLEEPER, str(pid_file)], dict(os.environ), abandon.is_set)
        )
    )
    worker.start()
    pid = _pid(pid_file)
    abandon.set()
    worker.join(10)
    assert not worker.is_alive(), "abandoning did not end the wait"
    assert result == [None]
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running beside vLLM
        os.kill(pid, 0)
