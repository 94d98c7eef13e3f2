"""vLLM's own view of a run: per-request means from the histograms on its /metrics, read before and
after. Set against a path's wall time they tell where a batch's time went: a row's arrival to its
first token (queue and prefill), the time between its tokens (one engine step while decoding), its
arrival to its end, and what lies outside vLLM (wall time less the rows' time in vLLM)."""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Callable

import requests

from bench.servers import Endpoint
from bench.workload import Result

# histogram -> (the key it reports under, the unit's scale from seconds)
HISTOGRAMS = {
    "vllm:time_to_first_token_seconds": ("vllm_ttft_mean_s", 1),
    "vllm:request_queue_time_seconds": ("vllm_queue_mean_s", 1),
    "vllm:e2e_request_latency_seconds": ("vllm_e2e_mean_s", 1),
    "vllm:inter_token_latency_seconds": ("vllm_itl_mean_ms", 1000),
}

Sums = dict[str, float]
BUSY = re.compile(r"^vllm:num_requests_(?:running|waiting)\{[^}]*\} (\S+)$", re.M)
GENERATED = re.compile(r"^vllm:generation_tokens_total\{[^}]*\} (\S+)$", re.M)


def _text(vllm: Endpoint) -> str:
    """vLLM's /metrics as it answers now."""
    url = vllm.base_url.removesuffix("/v1") + "/metrics"
    return requests.get(url, headers={"Authorization": f"Bearer {vllm.api_key}"}, timeout=30).text


def scraped(vllm: Endpoint) -> Sums:
    """Each histogram's `_sum` and `_count`, added over every engine and API server."""
    sums: Sums = collections.defaultdict(float)
    for line in _text(vllm).splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if not line.startswith("#") and name.removesuffix("_sum").removesuffix("_count") in HISTOGRAMS:
            sums[name] += float(line.rsplit(" ", 1)[1])
    return sums


def _summed(vllm: Endpoint, series: re.Pattern[str]) -> float:
    return sum(float(value) for value in series.findall(_text(vllm)))


def busy(vllm: Endpoint) -> float:
    """Requests running or waiting in vLLM's engine, over every engine, as its gauges last said
    (with several API servers, one that gets no more output keeps its last value)."""
    return _summed(vllm, BUSY)


def generated(vllm: Endpoint) -> float:
    """Tokens vLLM has generated since it started, over every engine: it stops growing when the
    engine is idle, whatever its gauges say."""
    return _summed(vllm, GENERATED)


class Peak:
    """The most requests vLLM's engine held at once, sampled until stopped."""

    def __init__(self, vllm: Endpoint) -> None:
        self.most, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(vllm,), daemon=True)
        self._thread.start()

    def _sample(self, vllm: Endpoint) -> None:
        while not self._stop.wait(0.02):  # a scrape is CPU that the engine's host would give vLLM
            self.most = max(self.most, busy(vllm))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.most


def means(before: Sums, after: Sums) -> dict[str, float]:
    """Per histogram, the mean over what was observed between two scrapes (NaN where nothing was)."""
    out = {}
    for name, (key, scale) in HISTOGRAMS.items():
        count = after.get(f"{name}_count", 0) - before.get(f"{name}_count", 0)
        total = after.get(f"{name}_sum", 0) - before.get(f"{name}_sum", 0)
        out[key] = round(scale * total / count, 3) if count else float("nan")
    return out


def observed(run: Callable[[], Result], vllm: Endpoint) -> Callable[[], Result]:
    """`run`, its result carrying vLLM's means over that run (the scrapes lie outside its clock)."""

    def measured() -> Result:
        before = scraped(vllm)
        result = run()
        result.extra |= means(before, scraped(vllm))
        return result

    return measured
