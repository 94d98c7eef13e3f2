"""The deployment's batch rows in flight: one budget (`max_concurrent_rows`, over vLLM's replicas)
shared by every batch request of every DRUM worker, so that concurrent requests (the platform
sends a dataset's chunks several at once) keep the engine at its best batch size, not N times
beyond it, and split it so that none waits for another to end.

How it is split (`targets`): every request is guaranteed an even share of half the budget (a
request that needs less gets what it needs, the rest is shared out); the other half goes to the
requests nearest their end (fewest rows left, then the oldest). A small request is answered at
once beside a large one, a large one keeps moving whatever arrives, and of equal requests the
first is answered first instead of all of them at the end. The engine is kept as full either way.

The requests are slots in a small table in a file of the launch's folder, mapped by every worker
and changed under a file lock; a slot whose worker is gone is freed by the next request that
joins and by every worker that starts. A request may put rows in flight only within its target
and the budget's room; it learns of room that other requests freed by looking again
(`POLL_S`), and of its own rows' ends at once.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from vllm_dropin.drum.pids import alive

POLL_S = 0.02  # how soon a request waiting for room sees room other requests freed
SLOTS = 512  # concurrent batch requests of the deployment; more wait for a free slot
_HEADER = struct.Struct("<qq")  # next ticket, slots in use at most (a high-water mark)
_SLOT = struct.Struct("<qqqq")  # worker pid (0: free), ticket, rows left, rows in flight
_SIZE = _HEADER.size + SLOTS * _SLOT.size


def targets(total: int, left: Sequence[int]) -> list[int]:
    """Rows in flight each request may hold, for requests in arrival order with `left` rows not
    yet answered: an even share of half of `total` each (capped by what it needs), the rest to
    those with the fewest rows left, the oldest first among equals."""
    if len(left) == 1:
        return [min(total, left[0])]
    held = even_shares(total // 2, left)
    rest = total - sum(held)
    for i in sorted(range(len(left)), key=lambda i: (left[i], i)):
        more = min(left[i] - held[i], rest)
        held[i] += more
        rest -= more
    return held


def even_shares(amount: int, needs: Sequence[int]) -> list[int]:
    """`amount` split evenly, none given more than it needs and what one needs not shared out
    among the others (water-filling); an indivisible remainder goes to the oldest."""
    shares = [0] * len(needs)
    wanting = [i for i, need in enumerate(needs) if need > 0]
    while amount > 0 and wanting:
        each = amount // len(wanting)
        if each == 0:
            for i in wanting[:amount]:
                shares[i] += 1
            break
        for i in wanting:
            given = min(each, needs[i] - shares[i])
            shares[i] += given
            amount -= given
        wanting = [i for i in wanting if shares[i] < needs[i]]
    return shares


class RowsBudget:
    """This worker's view of the shared budget (a file), or a budget of one process (no file)."""

    def __init__(self, total: int, path: Path | None = None) -> None:
        self.total = total
        self._lock = threading.Lock()
        self._fd: int | None = None
        if path is None:
            self._table = mmap.mmap(-1, _SIZE)
            return
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        with self._locked():
            if os.fstat(self._fd).st_size < _SIZE:
                os.ftruncate(self._fd, _SIZE)
        self._table = mmap.mmap(self._fd, _SIZE)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:  # a file lock is the process's: its threads need their own
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

    def forget_dead_workers(self) -> None:
        """Free the slots of workers that are gone, and this process's (a pid reused)."""
        with self._locked():
            self._free_dead(also=os.getpid())

    def join(self, rows: int) -> Share | None:
        """A share for a request of `rows` rows, or None while every slot is taken."""
        with self._locked():
            ticket, used = _HEADER.unpack_from(self._table, 0)
            slot = self._free_slot(used)
            if slot is None:
                self._free_dead()
                slot = self._free_slot(used)
            if slot is None:
                return None
            _SLOT.pack_into(self._table, _offset(slot), os.getpid(), ticket, rows, 0)
            _HEADER.pack_into(self._table, 0, ticket + 1, max(used, slot + 1))
        return Share(self, slot)

    @contextmanager
    def share(self, rows: int, gone: threading.Event) -> Iterator[Share | None]:
        """A share for a request of `rows` rows, waiting for a free slot (None if `gone` is set
        first), left when the block ends."""
        share = self.join(rows)
        while share is None and not gone.wait(POLL_S):
            share = self.join(rows)
        try:
            yield share
        finally:
            if share is not None:
                share.leave()

    def _free_slot(self, used: int) -> int | None:
        for slot in range(SLOTS):
            if slot >= used or _SLOT.unpack_from(self._table, _offset(slot))[0] == 0:
                return slot
        return None

    def _free_dead(self, also: int = 0) -> None:
        _, used = _HEADER.unpack_from(self._table, 0)
        for slot in range(used):
            pid = _SLOT.unpack_from(self._table, _offset(slot))[0]
            if pid and (pid == also or not alive(pid)):
                self._clear(slot)

    def _slots(self) -> list[tuple[int, int, int, int]]:
        """Slots in use: (slot, ticket, rows left, rows in flight), oldest first."""
        _, used = _HEADER.unpack_from(self._table, 0)
        table = self._table[_HEADER.size : _offset(used)]
        found = [(slot, *fields) for slot, (pid, *fields) in enumerate(_SLOT.iter_unpack(table)) if pid]
        return sorted(found, key=lambda found: found[1])

    def _clear(self, slot: int) -> None:
        """Free a slot, and lower the high-water mark past the free slots at its end."""
        _SLOT.pack_into(self._table, _offset(slot), 0, 0, 0, 0)
        ticket, used = _HEADER.unpack_from(self._table, 0)
        while used and _SLOT.unpack_from(self._table, _offset(used - 1))[0] == 0:
            used -= 1
        _HEADER.pack_into(self._table, 0, ticket, used)


def _offset(slot: int) -> int:
    return _HEADER.size + slot * _SLOT.size


class Share:
    """One request's place in the budget."""

    def __init__(self, budget: RowsBudget, slot: int) -> None:
        self._budget, self._slot = budget, slot

    def take(self, most: int, answered: int = 0, unsent: int = 0) -> int:
        """How many more rows (at most `most`) this request may put in flight now: 0 while it holds
        its target, or the budget has no room. First, in the same step, `answered` rows it had in
        flight are marked answered (or needing no answer from vLLM), and `unsent` rows granted
        before are given back (there was none left to send)."""
        budget = self._budget
        with budget._locked():
            _, ticket, left, in_flight = _SLOT.unpack_from(budget._table, _offset(self._slot))
            left, in_flight = left - answered, in_flight - answered - unsent
            granted = 0
            if most > 0:
                slots = budget._slots()
                mine = next(i for i, (slot, *_) in enumerate(slots) if slot == self._slot)
                slots[mine] = (self._slot, ticket, left, in_flight)
                aimed = targets(budget.total, [left for _, _, left, _ in slots])
                room = budget.total - sum(in_flight for *_, in_flight in slots)
                granted = max(0, min(most, aimed[mine] - in_flight, room))
            self._write(ticket, left, in_flight + granted)
        return granted

    def leave(self) -> None:
        with self._budget._locked():
            self._budget._clear(self._slot)

    def _write(self, ticket: int, left: int, in_flight: int) -> None:
        _SLOT.pack_into(self._budget._table, _offset(self._slot), os.getpid(), ticket, left, in_flight)
