"""A child process in its own process group, with its output relayed and its tail kept.

Own process group: stopping a child stops everything it spawned (vLLM's engine core, the
gunicorn master and workers that `drum server` execs into), so no orphan outlives us.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping

TAIL_LINES = 40


class Child:
    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], secrets: Iterable[str] = ()) -> None:
        self.name = name
        self._secrets = [s for s in secrets if s]
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.proc = subprocess.Popen(
            argv,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            bufsize=1,
            text=True,
            errors="replace",
        )
        self._relay = threading.Thread(target=self._pump, name=f"{name}-log", daemon=True)
        self._relay.start()

    def _mask(self, line: str) -> str:
        for secret in self._secrets:
            line = line.replace(secret, "***")
        return line

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = self._mask(line.rstrip("\n"))
            self._tail.append(line)
            sys.stdout.write(f"[{self.name}] {line}\n")
            sys.stdout.flush()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def tail(self) -> str:
        """The last lines of the child's output (for error messages), after the relay caught up."""
        if self.proc.poll() is not None:
            self._relay.join(timeout=2)
        return "\n".join(self._tail)

    def stop(self, grace_s: float) -> int:
        """SIGTERM the whole group, SIGKILL what is left after `grace_s`; returns the exit code."""
        self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        # The leader may be gone while members of its group live on: always sweep the group.
        self._signal_group(signal.SIGKILL)
        code = self.proc.wait()
        self._relay.join(timeout=2)
        return code

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)
