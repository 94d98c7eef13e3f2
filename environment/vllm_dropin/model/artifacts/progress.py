"""Download progress: a log line every few seconds and a platform event now and then."""

from __future__ import annotations

import logging
import threading
import time

from vllm_dropin.events import EventReporter

log = logging.getLogger(__name__)
LOG_EVERY_S = 5.0
EVENT_EVERY_S = 30.0


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f}" if n >= 1e8 else f"{n / 1e9:.2f}"


def describe(done: int, total: int, elapsed: float) -> str:
    """'3.2 of 15.0 GB (21 %), 412 MB/s, ETA 29 s': counts only, never a file name."""
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = f", ETA {(total - done) / rate:.0f} s" if rate > 0 and total > done else ""
    share = f" ({100 * done / total:.0f} %)" if total > 0 else ""
    return f"{_gb(done)} of {_gb(total)} GB{share}, {rate / 1e6:.0f} MB/s{eta}"


class Progress:
    """Thread-safe byte counter for one fetch; `start()` reports until `stop()`."""

    def __init__(self, shown_uri: str, total: int, reporter: EventReporter | None) -> None:
        self.shown_uri = shown_uri
        self.total = total
        self.done = 0
        self._reporter = reporter
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._report, name="artifact-progress", daemon=True)

    def add(self, count: int) -> None:
        with self._lock:
            self.done += count

    def line(self) -> str:
        return describe(self.done, self.total, time.monotonic() - self._started)

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _report(self) -> None:
        last_event = self._started
        while not self._stop.wait(LOG_EVERY_S):
            line = self.line()
            log.info("downloading %s: %s", self.shown_uri, line)
            if self._reporter is not None and time.monotonic() - last_event >= EVENT_EVERY_S:
                self._reporter.report("Downloading model", line)
                last_event = time.monotonic()
