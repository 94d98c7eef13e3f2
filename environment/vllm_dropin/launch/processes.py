"""Children in their own process group: started, watched, stopped with everything they spawned.

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
from collections.abc import Callable, Iterable, Mapping
from typing import IO

KEPT_LINES = 200  # read for the cause of a failure (failure.py)
SHOWN_LINES = 40  # logged with it


class ProcessGroup:
    """A process started as the leader of a new session (and so of a new process group)."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        output: IO[str] | int,
        leader_stops_group: bool = False,
    ) -> None:
        self.name = name
        # A leader that stops its own group in order (Ray's `ray start --block`) gets SIGTERM alone:
        # signalled all at once, its members die before it can drain them, and it waits out its grace.
        self.leader_stops_group = leader_stops_group
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            bufsize=1,
            text=True,
            errors="replace",
        )

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self, grace_s: float, whole_group: bool | None = None, sweep: bool = True) -> int:
        """SIGTERM the group (or only its leader, as a platform does; by default as the child asked),
        wait up to `grace_s` for the leader, then SIGKILL the group if the leader is still there or
        `sweep` is set (the leader may be gone while members of its group live on). Returns the
        leader's exit code."""
        if whole_group is None:
            whole_group = not self.leader_stops_group
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM, whole_group)
            deadline = time.monotonic() + grace_s
            while self.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
        if sweep or self.proc.poll() is None:
            self.signal(signal.SIGKILL, whole_group=True)
        return self.proc.wait()

    def signal(self, sig: int, whole_group: bool = True) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if whole_group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)


class Child(ProcessGroup):
    """A child of the supervisor whose output is relayed line by line (secrets masked) and whose
    last lines are kept for error messages."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        secrets: Iterable[str] = (),
        leader_stops_group: bool = False,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self._secrets = [s for s in secrets if s]
        self._on_line = on_line  # each line as relayed (masked)
        self._tail: collections.deque[str] = collections.deque(maxlen=KEPT_LINES)
        super().__init__(name, argv, env, subprocess.PIPE, leader_stops_group)
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
            if self._on_line is not None:
                self._on_line(line)
            sys.stdout.write(f"[{self.name}] {line}\n")
            sys.stdout.flush()

    def tail(self) -> list[str]:
        """The last lines of the child's output (for error messages), after the relay caught up."""
        if self.proc.poll() is not None:
            self._relay.join(timeout=2)
        return list(self._tail)

    def stop(self, grace_s: float, whole_group: bool | None = None, sweep: bool = True) -> int:
        code = super().stop(grace_s, whole_group, sweep)
        self._relay.join(timeout=2)
        return code
