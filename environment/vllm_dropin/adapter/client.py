"""OpenAI clients pointed at the entrypoint's vLLM, one per in-flight request.

One shared client with hundreds of pooled connections costs O(connections) per request:
httpcore checks every idle connection's socket on each checkout and release, and under DRUM's
gevent worker each check is an emulated poll() (measured: over half the adapter's CPU at 256
rows in flight). Single-connection clients lent one per request keep that O(1) and still
reuse their keep-alive connection from request to request.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import httpx2
import openai

from ..plan import VLLM_KEEPALIVE_S, BatchSettings


def unreachable(exc: openai.APIConnectionError) -> str:
    """One line for a failed connection to vLLM, naming the low-level cause (it holds no secret)."""
    cause = exc.__cause__
    detail = f"{type(cause).__name__}: {cause}" if cause else str(exc)
    return f"vLLM server is not reachable ({detail}); if it stopped, the environment restarts"


class ClientPool:
    """Idle clients, last used first (its connection is the likeliest to be alive); grows on demand."""

    def __init__(self, make: Callable[[], openai.OpenAI]) -> None:
        self._make = make
        self._idle: list[openai.OpenAI] = []
        self._lock = threading.Lock()

    def take(self) -> openai.OpenAI:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._make()

    def give_back(self, client: openai.OpenAI) -> None:
        with self._lock:
            self._idle.append(client)

    @contextmanager
    def client(self) -> Iterator[openai.OpenAI]:
        client = self.take()
        try:
            yield client
        finally:
            self.give_back(client)


@dataclass
class Upstream:
    clients: ClientPool
    model: str
    batch: BatchSettings


def single_connection_client(base_url: str, api_key: str, tls: ssl.SSLContext) -> openai.OpenAI:
    """`tls` is shared: building an SSL context per client was a sixth of the adapter's CPU."""
    return openai.OpenAI(
        base_url=base_url,
        api_key=api_key,
        max_retries=0,  # a retry would duplicate work and hide a dead vLLM
        timeout=httpx2.Timeout(None, connect=5.0),
        http_client=openai.DefaultHttpxClient(
            verify=tls,
            limits=httpx2.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=VLLM_KEEPALIVE_S / 2),
        ),
    )


def wait_until_healthy(base_url: str, timeout_s: float, poll_s: float = 0.1) -> None:
    """Block until vLLM answers /health: DRUM starts alongside vLLM, and a worker that has not
    finished loading takes no requests, so the deployment is not ready before vLLM is."""
    health = base_url.removesuffix("/v1") + "/health"
    deadline = time.monotonic() + timeout_s
    with httpx2.Client(timeout=5.0) as http:
        while time.monotonic() < deadline:
            try:
                if http.get(health).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(poll_s)
    raise RuntimeError(f"vLLM was not healthy after {timeout_s:g} s (see the [vllm] log lines)")


def from_environ(environ: Mapping[str, str] = os.environ) -> Upstream:
    url, key = environ["DROPIN_UPSTREAM_URL"], environ["DROPIN_UPSTREAM_KEY"]
    tls = ssl.create_default_context()
    pool = ClientPool(lambda: single_connection_client(url, key, tls))
    return Upstream(pool, environ["DROPIN_UPSTREAM_MODEL"], BatchSettings.from_json(environ["DROPIN_BATCH"]))
