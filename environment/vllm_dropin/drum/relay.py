"""vLLM's own routes through DRUM's Flask app: every path DRUM does not serve itself, and every
path under /directAccess/ (DataRobot's gateway) and /nim/, goes to vLLM as the client sent it and
comes back as vLLM answered it: status, headers and body, an SSE stream relayed chunk by chunk.

Every path is forwarded, not a list of vLLM's routes: what this vLLM serves for this model (its
version's routes, its runner's tasks, plugins') is what the deployment serves, and vLLM's own
answer says what it does not. DRUM's routes stay DRUM's (chat with its monitoring,
/predictions/, /v1/models, /info/, /health/, /ping). The caller's credentials stay here: vLLM
gets its deployment key. Nothing of a request is logged.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import flask
import urllib3
from datarobot_drum.drum.enum import URL_PREFIX_ENV_VAR_NAME
from werkzeug.exceptions import HTTPException

from vllm_dropin.drum import departure, sse, telemetry, usage
from vllm_dropin.drum.client import JsonConnection, Upstream, json_or_none, unreachable
from vllm_dropin.drum.departure import ClientGone
from vllm_dropin.drum.openai_errors import error_object, named_by_status, route_error

# vLLM's routes that load and unload adapters from a path on this host: the deployment loads them
ADAPTER_ROUTES = frozenset({"/v1/load_lora_adapter", "/v1/unload_lora_adapter"})
DIRECT_ACCESS = ("directAccess", "nim")  # DRUM's prefixes of a passthrough to the model's own server
DRUM_PASSTHROUGH_VIEW = "model_api.forward_request"  # DRUM's view of them, which needs an OpenAI predictor
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding"}
    | {"upgrade"}
)
# The caller's credentials and what the relay itself sets or cannot pass on (a compressed body).
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "authorization", "cookie", "accept-encoding"}
NOT_RETURNED = HOP_BY_HOP | {"content-length", "content-encoding", "date", "server"}
log = logging.getLogger("vllm_dropin.relay")


def init_app(app: flask.Flask, upstream: Callable[[], Upstream]) -> None:
    """Serve vLLM's routes bare and under DRUM's passthrough prefixes, and every routing error
    (no such path, a method the path does not take) as JSON in OpenAI's shape."""
    prefix = url_prefix()

    def view(path: str) -> flask.Response:
        return relay(upstream(), path)

    options: dict[str, Any] = {"methods": METHODS, "provide_automatic_options": False}
    app.add_url_rule(f"{prefix}/<path:path>", "vllm_route", view, **options)
    for name in DIRECT_ACCESS:  # DRUM's own rule takes only GET, POST and PUT
        app.add_url_rule(f"{prefix}/{name}/<path:path>", f"vllm_{name}", view, **options)
    app.view_functions[DRUM_PASSTHROUGH_VIEW] = view
    # vLLM's /health, which DRUM's /health/ would otherwise answer with a redirect to itself
    app.add_url_rule(f"{prefix}/health", "vllm_health", view, defaults={"path": "health"}, **options)
    app.register_error_handler(404, _routing_error)
    app.register_error_handler(405, _routing_error)


def url_prefix() -> str:
    """The path DRUM serves its own routes under (its URL_PREFIX), which ours share."""
    return os.environ.get(URL_PREFIX_ENV_VAR_NAME, "")


def relay(upstream: Upstream, path: str) -> flask.Response:
    """vLLM's answer to this request, sent to vLLM's `/path` on a connection lent for as long as
    the answer lasts (a stream's, until its end or its client's leaving, which closes the
    connection: vLLM then aborts the request)."""
    request = flask.request
    target = quote(f"/{path}") + (f"?{request.query_string.decode('latin-1')}" if request.query_string else "")
    route = telemetry.route_names(upstream.vllm_paths).of(f"/{path}")
    if route in ADAPTER_ROUTES:
        return error_response(
            404, f"{route} is not served: adapters of lora_adapters_uri load when a request names them"
        )
    sent, shown = request.get_data(), True
    if request.method == "POST" and upstream.names.loads:
        refusal = upstream.names.ready(usage.model_in(sent))
        if refusal is not None:
            return error_response(refusal.status, refusal.message)
    if request.method == "POST" and route in usage.ASKED_ROUTES:
        sent, shown = usage.asked_in(sent)
    connection = upstream.posts.take()
    reply, streamed = None, False
    try:
        # until a stream starts (its client's leaving is then seen as its chunks are written),
        # a client that leaves has its request aborted at vLLM
        with departure.watched(), departure.held(connection):
            headers = connection.authorized(forwarded(request.headers.items()))
            reply = connection.send(request.method, target, sent or None, headers, whole=False)
            streamed = reply.headers.get("content-type", "").startswith("text/event-stream")
            if not streamed:
                body = reply.data
        if streamed:  # the stream gives the connection back when it ends
            answer = reply
            told = usage.counted(answer.stream(None), lambda used: _count(route, sent, used, upstream.model), shown)
            chunks = sse.fair(told, lambda: _finish(upstream, connection, answer))
            return flask.Response(chunks, status=answer.status, headers=returned(answer.headers.items()))
    except urllib3.exceptions.HTTPError as exc:  # no answer, or vLLM gone before its end
        log.warning("%s", unreachable(exc))
        return error_response(503, unreachable(exc))
    except ClientGone:
        return error_response(ClientGone.STATUS, ClientGone.MESSAGE)
    finally:
        if not streamed:
            _finish(upstream, connection, reply)
    if reply.status == 200:
        _count(route, sent, usage.in_body(body), upstream.model)
    if reply.status >= 400:  # an error's body is decoded only to tell the web framework's errors
        unrouted = route_error(reply.status, json_or_none(body), request.method, f"/{path}")
        if unrouted is not None:
            return error_response(reply.status, unrouted)
    return flask.Response(body, status=reply.status, headers=returned(reply.headers.items()))


def _count(route: str, sent: bytes, used: Any, served: str) -> None:
    """The tokens of an answer's usage, under the model its request named (else the served one)."""
    if used is not None:
        telemetry.count_usage(route, usage.model_in(sent) or served, used)


def forwarded(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The caller's headers that vLLM gets (no credentials, no hop-by-hop or transport headers)."""
    return {name: value for name, value in headers if name.lower() not in NOT_FORWARDED}


def returned(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """vLLM's headers that the caller gets (the server and transport ones are this server's)."""
    return [(name, value) for name, value in headers if name.lower() not in NOT_RETURNED]


def _finish(upstream: Upstream, connection: JsonConnection, reply: urllib3.BaseHTTPResponse | None) -> None:
    """Give the connection back: kept alive when vLLM's answer was read to its end, else closed,
    so that vLLM sees its client gone."""
    if reply is not None:
        if not reply.isclosed():
            reply.close()
        reply.release_conn()
    upstream.posts.give_back(connection)


def error_response(status: int, message: str) -> flask.Response:
    """An error in OpenAI's shape, its type the status's name as vLLM names it."""
    error = error_object(status, named_by_status(status, message), message)
    return flask.Response(json.dumps({"error": error}), status=status, mimetype="application/json")


def _routing_error(exc: HTTPException) -> flask.Response:
    """A routing error (Flask's is an HTML page) as JSON naming the path."""
    if exc.code == 405:
        return error_response(405, f"route {flask.request.path} does not take {flask.request.method}")
    return error_response(404, f"no route {flask.request.path}")
