"""What an operator watches, in DRUM's Flask app: every request counted (route, status, seconds,
a stream's first chunk) into the deployment's series, and GET /metrics (also under /directAccess/)
answering vLLM's own series followed by the deployment's."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator

import flask
import urllib3

from vllm_dropin.drum import telemetry
from vllm_dropin.drum.client import Upstream, unreachable
from vllm_dropin.drum.relay import DIRECT_ACCESS, error_response

_STARTED = "dropin_started"


def init_app(app: flask.Flask, upstream: Callable[[], Upstream]) -> None:
    prefix = os.environ.get("URL_PREFIX", "")
    view = functools.partial(metrics, upstream)
    for path in ("/metrics", *(f"/{name}/metrics" for name in DIRECT_ACCESS)):
        app.add_url_rule(prefix + path, f"metrics{path.replace('/', '_')}", view, methods=["GET"])

    def names() -> telemetry.RouteNames:  # asked per request: the worker's upstream is connected later
        return telemetry.route_names(upstream().vllm_paths)

    @app.before_request
    def started() -> None:
        setattr(flask.g, _STARTED, time.monotonic())

    @app.after_request
    def counted(response: flask.Response) -> flask.Response:
        began = getattr(flask.g, _STARTED, None)
        if began is None:
            return response
        route = route_of(flask.request, names)
        if response.is_streamed:
            response.response = _timed(response.response, route, response.status_code, began)
        else:
            _answered(route, response.status_code, began)
        return response


def route_of(request: flask.Request, names: Callable[[], telemetry.RouteNames]) -> str:
    """The route label: DRUM's rule, else the vLLM route template the relayed path matches."""
    rule = request.url_rule
    if rule is None:
        return telemetry.OTHER_ROUTE
    path = (request.view_args or {}).get("path")
    if path is None:
        return rule.rule.removeprefix(os.environ.get("URL_PREFIX", ""))
    return names().of(f"/{path}")


def _answered(route: str, status: int, began: float) -> None:
    telemetry.REQUESTS.labels(route, str(status)).inc()
    telemetry.DURATION.labels(route).observe(time.monotonic() - began)


def _timed(chunks: Iterable[bytes], route: str, status: int, began: float) -> Iterator[bytes]:
    """The stream's chunks, its first chunk's time and its whole time counted (at its end, or when
    its client leaves)."""
    first = True
    try:
        for chunk in chunks:
            if first:
                telemetry.TIME_TO_FIRST_TOKEN.labels(route).observe(time.monotonic() - began)
                first = False
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        _answered(route, status, began)


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
