"""Clients pointed at the entrypoint's vLLM, one per in-flight request: httpx with openai's Stream
for streamed chats, plain urllib3 connections for batch rows and plain chats.

One shared client with hundreds of pooled connections costs O(connections) per request:
httpcore checks every idle connection's socket on each checkout and release, and under DRUM's
gevent worker each check is an emulated poll(), most of the adapter's CPU with hundreds of rows
in flight. Single-connection clients lent one per request keep that O(1) and still
reuse their keep-alive connection from request to request.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx2
import openai
import urllib3

from vllm_dropin.contract import UPSTREAM_KEEPALIVE_S, BatchSettings, Layout, WorkerContract
from vllm_dropin.drum.model_names import ModelNames
from vllm_dropin.drum.openai_errors import error_object
from vllm_dropin.drum.rows_budget import RowsBudget

Client = TypeVar("Client")


def unreachable(exc: BaseException) -> str:
    """One line for a failed connection to vLLM, naming the low-level cause (it holds no secret):
    openai's error wraps it, urllib3's and httpx's are it."""
    cause = exc.__cause__ if isinstance(exc, openai.APIConnectionError) else exc
    detail = f"{type(cause).__name__}: {cause}" if cause else str(exc)
    return f"vLLM server is not reachable ({detail}); if it stopped, the environment restarts"


class ClientPool(Generic[Client]):
    """Idle clients, last used first (its connection is the likeliest to be alive); grows on demand."""

    def __init__(self, make: Callable[[], Client]) -> None:
        self._make = make
        self._idle: list[Client] = []
        self._lock = threading.Lock()

    def take(self) -> Client:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._make()

    def give_back(self, client: Client) -> None:
        with self._lock:
            self._idle.append(client)

    @contextmanager
    def client(self) -> Iterator[Client]:
        client = self.take()
        try:
            yield client
        finally:
            self.give_back(client)


class UpstreamStatusError(Exception):
    """vLLM answered a request with an HTTP error."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body  # vLLM's JSON, for a chat's error in OpenAI's shape
        # vLLM's own words (its error fields, bare or under "error"), on one line
        self.message = error_object(status, body, f"HTTP {status}")["message"].replace("\n", " ")


class JsonConnection:
    """One keep-alive connection to vLLM that POSTs JSON (batch rows, plain chats) and relays
    vLLM's other routes, with urllib3, without openai's client: a fraction of its CPU per
    request, and openai's request building was most of the adapter's cost per row. Idle longer
    than half vLLM's keep-alive, the connection is opened anew before use, as the chat clients'
    keepalive_expiry does: it never meets one vLLM is closing."""

    def __init__(self, base_url: str, api_key: str, tls: ssl.SSLContext) -> None:
        url = urllib3.util.parse_url(base_url)
        self._open = lambda: urllib3.connection_from_url(
            base_url,
            maxsize=1,
            retries=False,  # a retry would duplicate work and hide a dead vLLM
            timeout=urllib3.Timeout(connect=5.0, read=None),
            **({"ssl_context": tls} if url.scheme == "https" else {}),
        )
        self._prefix = (url.path or "").rstrip("/")
        self._headers = _json_headers(api_key)
        self._pool = self._opened()
        self._used = time.monotonic()
        self._connection: urllib3.connection.HTTPConnection | None = None  # the pool's one

    def _opened(self) -> urllib3.HTTPConnectionPool:
        """A pool of one connection, which this object keeps hold of (`abort`)."""
        pool = self._open()
        make = pool.ConnectionCls

        def connection(**kwargs: Any) -> urllib3.connection.HTTPConnection:
            self._connection = make(**kwargs)
            return self._connection

        pool.ConnectionCls = connection  # type: ignore[assignment,misc]
        return pool

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """vLLM's JSON answer. Raises UpstreamStatusError for an HTTP error (or an answer that is
        not a JSON object) and urllib3's HTTPError when no answer came (refused, reset, cut off)."""
        reply = self.send("POST", self._prefix + path, _encoded(body), self._headers)
        answer = json_or_none(reply.data)
        if reply.status >= 400:
            raise UpstreamStatusError(reply.status, answer)
        if not isinstance(answer, dict):
            raise UpstreamStatusError(502, {"message": f"vLLM answered HTTP {reply.status} without a JSON object"})
        return answer

    def send(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str], whole: bool = True
    ) -> urllib3.BaseHTTPResponse:
        """vLLM's answer to a request for `target` (a path from vLLM's root, with its query), read
        whole, or with its body unread (`whole=False`: the caller reads it, then releases or closes
        it). Raises urllib3's HTTPError when no answer came."""
        if time.monotonic() - self._used > UPSTREAM_KEEPALIVE_S / 2:
            self._pool.close()
            self._pool = self._opened()
        try:
            return self._pool.urlopen(method, target, body=body, headers=headers, redirect=False, preload_content=whole)
        finally:
            self._used = time.monotonic()

    def abort(self) -> None:
        """Cut off the request in progress, from another thread: its socket is shut down, so vLLM
        sees its client gone (and aborts the request) and the call waiting on it raises."""
        sock = getattr(self._connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    def authorized(self, headers: dict[str, str]) -> dict[str, str]:
        """`headers` with vLLM's key in place of the caller's credentials."""
        return {**headers, "Authorization": self._headers["Authorization"]}


def _json_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}


def _encoded(body: dict[str, Any]) -> bytes:
    """The request body as JSON, NaN included: vLLM judges the body (httpx's json= would raise)."""
    return json.dumps(body).encode()


def json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


class StreamClient:
    """One keep-alive connection to vLLM for streamed chats (and the model list): a chat's request
    goes out on httpx directly, and openai's Stream over the response decodes vLLM's SSE and raises
    its mid-stream errors. openai's own request building (its options model deep-copies defaults,
    then URL and header merging) is a large share of a DRUM worker's CPU per short stream, paid
    while a burst of new streams waits for its first event (bench.relay)."""

    def __init__(self, base_url: str, api_key: str, tls: ssl.SSLContext) -> None:
        # `tls` is shared: building an SSL context per client was a sixth of the adapter's CPU
        timeout = httpx2.Timeout(None, connect=5.0)
        limits = httpx2.Limits(
            max_connections=1, max_keepalive_connections=1, keepalive_expiry=UPSTREAM_KEEPALIVE_S / 2
        )
        self._http = openai.DefaultHttpxClient(verify=tls, limits=limits, timeout=timeout)
        # max_retries=0: a retry would duplicate work and hide a dead vLLM
        self.openai = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout,
                                    http_client=self._http)  # fmt: skip
        self._url = f"{base_url.rstrip('/')}/chat/completions"
        self._headers = _json_headers(api_key)

    def chat_stream(self, body: dict[str, Any]) -> httpx2.Response:
        """vLLM's answer to a streamed chat, its body unread. Raises UpstreamStatusError for an HTTP
        error and httpx's TransportError when no answer came."""
        request = self._http.build_request("POST", self._url, content=_encoded(body), headers=self._headers)
        response = self._http.send(request, stream=True)
        if response.is_error:
            try:
                raise UpstreamStatusError(response.status_code, json_or_none(response.read()))
            finally:
                response.close()
        return response


CHAT_ROUTE = "/chat/completions"
EMBEDDINGS_ROUTE = "/embeddings"
BUDGET_FILE = "batch-rows"  # the deployment's rows budget, beside the layout in the launch's folder


@dataclass
class Upstream:
    """What DRUM's hooks get as their model: clients of vLLM and the batch settings."""

    clients: ClientPool[StreamClient]  # streamed chats, the model list
    posts: ClientPool[JsonConnection]  # batch rows, plain chats, vLLM's other routes
    model: str  # the served name requests carry
    batch: BatchSettings
    target: str  # the output column of batch predictions
    names: ModelNames  # the model names requests may carry, adapters of lora_adapters_uri loaded on demand
    vllm_paths: frozenset[str] = frozenset()  # the route templates vLLM serves (empty: not published)
    request_log: bool = True  # a JSON line per request (drum.observe)
    rows_budget: RowsBudget | None = None  # the deployment's batch rows in flight (None: each batch its own)

    @property
    def rows_route(self) -> str | None:
        """Where batch rows go (under /v1); None: the model serves neither chat nor embeddings."""
        return rows_route(self.vllm_paths or None)


def rows_route(paths: frozenset[str] | None) -> str | None:
    """Where batch rows go, by the routes vLLM serves for its model: chat completions for a
    generative model, embeddings for a pooling one. Unknown routes (vLLM's --disable-fastapi-docs
    hides its route list) are taken as vLLM's default runner, generation."""
    if paths is None or "/v1" + CHAT_ROUTE in paths:
        return CHAT_ROUTE
    return EMBEDDINGS_ROUTE if "/v1" + EMBEDDINGS_ROUTE in paths else None


def _field_of(connection: JsonConnection, path: str, field: str) -> Any:
    """`field` of the JSON object vLLM answers a GET of `path` with; None for any other answer."""
    reply = connection.send("GET", path, None, connection.authorized({}))
    document = json_or_none(reply.data) if reply.status == 200 else None
    return document.get(field) if isinstance(document, dict) else None


def served_paths(connection: JsonConnection) -> frozenset[str] | None:
    """The paths vLLM serves for its model (its OpenAPI document), or None when it publishes none."""
    paths = _field_of(connection, "/openapi.json", "paths")
    return frozenset(paths) if isinstance(paths, dict) else None


def served_names(connection: JsonConnection) -> list[str]:
    """The names vLLM serves now (its /v1/models: the model's names and its adapters)."""
    models = _field_of(connection, "/v1/models", "data")
    return [m["id"] for m in models or () if isinstance(m, dict) and isinstance(m.get("id"), str)]


def connect(contract: WorkerContract, layout: Layout) -> Upstream:
    """Clients of the vLLM named by the contract, sized by the layout it runs, and the route its
    batch rows take (read from the routes vLLM serves)."""
    vllm = contract.vllm
    tls = ssl.create_default_context()
    pool = ClientPool(lambda: StreamClient(vllm.base_url, vllm.api_key, tls))
    posts = ClientPool(lambda: JsonConnection(vllm.base_url, vllm.api_key, tls))
    with posts.client() as connection:
        paths = served_paths(connection)
        names = ModelNames(served_names(connection), contract.adapter_service)
    batch = contract.batch_in(layout)
    rows_budget = RowsBudget(layout.rows_in_flight, Path(contract.layout_file).with_name(BUDGET_FILE))
    rows_budget.forget_dead_workers()
    return Upstream(
        pool,
        posts,
        vllm.model,
        batch,
        contract.target,
        names,
        paths or frozenset(),
        contract.request_log,
        rows_budget,
    )
