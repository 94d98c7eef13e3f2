"""Wait until an HTTP endpoint answers 200: the one poller of the supervisor, DRUM workers and tools.

Standard library only (DRUM workers import it; under gevent its sockets cooperate), and never
through a proxy: the endpoints polled are on loopback.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Callable

POLL_S = 0.1
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answers(url: str, timeout_s: float = 5.0) -> bool:
    """Whether `url` answers 200 now."""
    try:
        with _OPENER.open(url, timeout=timeout_s) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError, http.client.HTTPException):
        return False


def wait(url: str, timeout_s: float, stop: Callable[[], bool] = lambda: False, poll_s: float = POLL_S) -> float | None:
    """Seconds until `url` answered 200, or None if `stop()` said so first; TimeoutError after `timeout_s`.

    `stop` is called before every attempt: it may also raise (a watched process died)."""
    started = time.monotonic()
    while not stop():
        if answers(url):
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{url} did not answer 200 within {timeout_s:g} s")
        time.sleep(poll_s)
    return None
