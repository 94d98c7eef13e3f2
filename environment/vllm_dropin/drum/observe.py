"""What an operator watches, in DRUM's Flask app: every request counted (route, status, seconds,
a stream's first chunk) into the deployment's series, and GET /metrics (also under /directAccess/)
answering vLLM's own series followed by the deployment's."""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import flask
import urllib3

from vllm_dropin.drum import telemetry
from vllm_dropin.drum.client import Upstream, unreachable
from vllm_dropin.drum.relay import DIRECT_ACCESS, error_response, url_prefix

_STARTED = "dropin_started"
QUIET_ROUTES = frozenset({"/metrics", "/", "/ping/", "/health/", "/health"})  # probes: counted, not logged


def init_app(app: flask.Flask, upstream: Callable[[], Upstream]) -> None:
    prefix = url_prefix()
    telemetry.forget_dead_workers()
    view = functools.partial(metrics, upstream)
    for path in ("/metrics", *(f"/{name}/metrics" for name in DIRECT_ACCESS)):
        app.add_url_rule(prefix + path, f"metrics{path.replace('/', '_')}", view, methods=["GET"])

    def names() -> telemetry.RouteNames:  # asked per request: the worker's upstream is connected later
        return telemetry.route_names(upstream().vllm_paths)

    def logged() -> bool:
        return upstream().request_log

    @app.before_request
    def started() -> None:
        told = telemetry.Told()
        setattr(flask.g, _STARTED, (time.monotonic(), told))
        telemetry.CURRENT.set(told)

    @app.after_request
    def counted(response: flask.Response) -> flask.Response:
        began, told = getattr(flask.g, _STARTED, (None, None))
        if began is None:
            return response
        route = route_of(flask.request, names, prefix)
        done = Done(route, response.status_code, began, told, logged())
        if response.is_streamed:
            response.response = _timed(response.response, done)
        else:
            done()
        return response


def route_of(request: flask.Request, names: Callable[[], telemetry.RouteNames], prefix: str) -> str:
    """The route label: DRUM's rule, else the vLLM route template the relayed path matches."""
    rule = request.url_rule
    if rule is None:
        return telemetry.OTHER_ROUTE
    path = (request.view_args or {}).get("path")
    if path is None:
        return rule.rule.removeprefix(prefix)
    return names().of(f"/{path}")


@dataclass
class Done:
    """A request's end: its series counted and, unless turned off, its JSON line logged."""

    route: str
    status: int
    began: float
    told: telemetry.Told
    log: bool

    def __call__(self) -> None:
        seconds = time.monotonic() - self.began
        requests, duration = telemetry.answered(self.route, self.status)
        requests.inc()
        duration.observe(seconds)
        if self.log and self.route not in QUIET_ROUTES:
            # the line alone, as JSON, straight to the log (the logging module's record would
            # double what counting costs a short request)
            sys.stdout.write(json.dumps(line(self.route, self.status, seconds, self.told)) + "\n")
            sys.stdout.flush()


def line(route: str, status: int, seconds: float, told: telemetry.Told) -> dict[str, object]:
    """A request's log line: what it asked of and was told by the deployment, without its text."""
    first = told.first_chunk_s
    return {
        "event": "request",
        "route": route,
        "status": status,
        "seconds": round(seconds, 4),
        "time_to_first_token_seconds": None if first is None else round(first, 4),
        "prompt_tokens": told.prompt_tokens,
        "completion_tokens": told.completion_tokens,
        "model": told.model,
        "rows": told.rows,
        "association_id": getattr(told.answer, "datarobot_association_id", None),
    }


def _timed(chunks: Iterable[bytes], done: Done) -> Iterator[bytes]:
    """The stream's chunks, its first chunk's time and its end counted (at its last chunk, or when
    its client leaves)."""
    try:
        for chunk in chunks:
            if done.told.first_chunk_s is None:
                done.told.first_chunk_s = time.monotonic() - done.began
                telemetry.first_token(done.route).observe(done.told.first_chunk_s)
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        done()


def metrics(upstream: Callable[[], Upstream]) -> flask.Response:
    """vLLM's series, then the deployment's, in Prometheus' text format."""
    lent = upstream().posts
    try:
        with lent.client() as connection:
            reply = connection.send("GET", "/metrics", None, connection.authorized({}))
    except urllib3.exceptions.HTTPError as exc:
        return error_response(503, unreachable(exc))
    vllm = reply.data if reply.status == 200 else b""
    separator = b"" if not vllm or vllm.endswith(b"\n") else b"\n"
    return flask.Response(vllm + separator + telemetry.exposition(), mimetype=None, content_type=telemetry.CONTENT_TYPE)
