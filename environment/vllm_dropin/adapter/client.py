"""OpenAI clients pointed at the entrypoint's vLLM, one per in-flight request.

One shared client with hundreds of pooled connections costs O(connections) per request:
httpcore checks every idle connection's socket on each checkout and release, and under DRUM's
gevent worker each check is an emulated poll() (measured: over half the adapter's CPU at 256
rows in flight). Single-connection clients lent one per request keep that O(1) and still
reuse their keep-alive connection from request to request.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx2
import openai

from ..contract import UPSTREAM_KEEPALIVE_S, BatchSettings, WorkerContract


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
    """What DRUM's hooks get as their model: clients of vLLM and the batch settings."""

    clients: ClientPool
    model: str  # the served name requests carry
    batch: BatchSettings
    target: str  # the output column of batch predictions
    lora_adapters: list[str]  # served LoRA adapters (names a row may pick)


def single_connection_client(base_url: str, api_key: str, tls: ssl.SSLContext) -> openai.OpenAI:
    """`tls` is shared: building an SSL context per client was a sixth of the adapter's CPU."""
    return openai.OpenAI(
        base_url=base_url,
        api_key=api_key,
        max_retries=0,  # a retry would duplicate work and hide a dead vLLM
        timeout=httpx2.Timeout(None, connect=5.0),
        http_client=openai.DefaultHttpxClient(
            verify=tls,
            limits=httpx2.Limits(
                max_connections=1, max_keepalive_connections=1, keepalive_expiry=UPSTREAM_KEEPALIVE_S / 2
            ),
        ),
    )


def connect(contract: WorkerContract) -> Upstream:
    """Clients of the vLLM named by the contract (nothing is sent yet)."""
    vllm = contract.vllm
    tls = ssl.create_default_context()
    pool = ClientPool(lambda: single_connection_client(vllm.base_url, vllm.api_key, tls))
    return Upstream(pool, vllm.model, contract.batch, contract.target, contract.lora_adapters)
