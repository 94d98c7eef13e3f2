"""The deployment's own Prometheus series, counted in every DRUM worker and read as one.

DRUM's workers are processes: prometheus_client's multiprocess mode keeps each worker's values in
files under PROMETHEUS_MULTIPROC_DIR (the supervisor gives every launch a fresh folder), and a
scrape at any worker adds them up. GET /metrics answers vLLM's own series (every API server and
replica, as vLLM aggregates them) followed by these.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from vllm_dropin.contract import MULTIPROC_DIR_VAR
from vllm_dropin.drum.pids import alive

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OTHER_ROUTE = "other"  # a path no route of DRUM's or vLLM's matched: one label, not one per path
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

OWN = CollectorRegistry()  # ours alone: vLLM's exposition already has the process and GC series
REQUESTS = Counter(
    "vllm_dropin_requests", "Requests answered, by route and HTTP status.", ["route", "status"], registry=OWN
)
DURATION = Histogram(
    "vllm_dropin_request_duration_seconds",
    "From a request's arrival to the end of its answer (a stream's last chunk), by route.",
    ["route"],
    buckets=SECONDS,
    registry=OWN,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "vllm_dropin_time_to_first_token_seconds",
    "From a streamed request's arrival to its first chunk, by route.",
    ["route"],
    buckets=SECONDS,
    registry=OWN,
)
TOKENS = Counter(
    "vllm_dropin_tokens",
    "Tokens in the usage answered to clients, by route, kind (prompt | completion) and model "
    "(served name or LoRA adapter).",
    ["route", "kind", "model"],
    registry=OWN,
)
BATCH_ROWS = Counter(
    "vllm_dropin_batch_rows", "Batch prediction rows answered, by outcome (ok | failed).", ["outcome"], registry=OWN
)
BATCH_ROWS_IN_FLIGHT = Gauge(
    "vllm_dropin_batch_rows_in_flight",
    "Batch prediction rows sent to vLLM and not yet answered.",
    multiprocess_mode="livesum",
    registry=OWN,
)


def forget_dead_workers() -> None:
    """Drop the live gauges of DRUM workers that are gone (gunicorn replaced them): a new worker
    calls this as it starts, since DRUM owns gunicorn's hooks where this would otherwise go."""
    folder = os.environ.get(MULTIPROC_DIR_VAR)
    if not folder:
        return
    for path in Path(folder).glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        if not alive(pid):
            multiprocess.mark_process_dead(pid, folder)


def exposition() -> bytes:
    """The deployment's series in Prometheus' text format, summed over DRUM's workers."""
    if not os.environ.get(MULTIPROC_DIR_VAR):
        return generate_latest(OWN)  # one process (tests): its own values
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


@dataclass
class Told:
    """What one request told its client, for its log line (never its text)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str | None = None
    rows: int | None = None  # a batch's
    first_chunk_s: float | None = None  # a stream's
    answer: Any = None  # the relayed chat answer (or a chunk) DRUM gives its association id


# The request being answered: set per request (greenlet-local under DRUM's gevent workers); a
# batch's worker threads run in a copy of their request's context.
CURRENT: ContextVar[Told | None] = ContextVar("dropin_request", default=None)
_TOLD_LOCK = threading.Lock()
USAGE_NAMES = {"prompt": ("prompt_tokens", "input_tokens"), "completion": ("completion_tokens", "output_tokens")}


def count_usage(route: str, model: str, usage: Mapping[str, Any] | None) -> None:
    """Count the tokens of an answer's usage (OpenAI's prompt/completion, or the Responses API's
    input/output names), in the series and in the current request's record."""
    if not isinstance(usage, Mapping):
        return
    prompt, completion = (
        next((usage[name] for name in names if isinstance(usage.get(name), int)), 0) for names in USAGE_NAMES.values()
    )
    counters = _token_counters(route, model)
    if prompt:
        counters[0].inc(prompt)
    if completion:
        counters[1].inc(completion)
    told = CURRENT.get()
    if told is not None:
        with _TOLD_LOCK:
            told.prompt_tokens += prompt
            told.completion_tokens += completion
            told.model = model


@functools.lru_cache(maxsize=1024)
def answered(route: str, status: int) -> tuple[Any, Any]:
    """The request counter and duration histogram of a route and status (labels() is a lookup
    per call, a measurable share of a short request)."""
    return REQUESTS.labels(route, str(status)), DURATION.labels(route)


@functools.lru_cache(maxsize=256)
def first_token(route: str) -> Any:
    return TIME_TO_FIRST_TOKEN.labels(route)


@functools.lru_cache(maxsize=256)
def _token_counters(route: str, model: str) -> tuple[Any, Any]:
    """The prompt and completion counters of a route and model (labels() is a lookup per call)."""
    return TOKENS.labels(route, "prompt", model), TOKENS.labels(route, "completion", model)


@functools.lru_cache(maxsize=4)
def route_names(templates: frozenset[str]) -> RouteNames:
    """The route labels of vLLM's route templates, made once per worker."""
    return RouteNames(templates)


class RouteNames:
    """The route label of a path: DRUM's rule, or the template of the vLLM route it matches
    (`/v1/responses/{response_id}`); OTHER_ROUTE for a path that matches none."""

    def __init__(self, templates: Iterable[str]) -> None:
        self._exact = {t for t in templates if "{" not in t}
        self._patterns = [
            (re.compile("^" + re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(t)) + "$"), t) for t in templates if "{" in t
        ]

    def of(self, path: str) -> str:
        if path in self._exact:
            return path
        return next((template for pattern, template in self._patterns if pattern.match(path)), OTHER_ROUTE)
