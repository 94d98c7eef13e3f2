"""One writer at a time for a file or folder in cache_dir, across the replicas that mount the same
volume (scaling out with one shared cache: the first replica fetches, the others wait and find the
model whole): an exclusive flock on a lock file beside it, which NFS v4 honours. The wait is
polled, so a stop request ends it."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from vllm_dropin.errors import ArtifactError

log = logging.getLogger(__name__)
POLL_S = 0.2


@contextlib.contextmanager
def held(path: Path, what: str, stopping: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """Hold `path`'s lock (`<path>.lock`) for the block; `what` names the work in the waiting line."""
    # Written to (NFS locks need it), holding nothing: the umask decides who may, as for the model.
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting:
                    log.info("another process holds %s (%s): waiting for it", path, what)
                    waiting = True
                if stopping():
                    raise ArtifactError(f"{what}: stopped on request while another process held {path}") from None
                time.sleep(POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock
