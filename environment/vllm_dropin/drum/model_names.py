"""The model names a request may carry: those vLLM served when this worker connected (the model's
names, shipped adapters), and adapters from lora_adapters_uri, which the supervisor's adapter
service fetches, checks and loads into vLLM the first time any request names one.

Standard library only: under DRUM's gevent worker the unix socket cooperates.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from vllm_dropin.contract import ADAPTERS_PATH

ASK_TIMEOUT_S = 900.0  # a fetch of a large adapter from a slow store, then vLLM loading it


@dataclass(frozen=True)
class Refusal:
    """Why an adapter cannot be served: `message` names it (for the client that named it), `reason`
    does not (for a batch row: a cell's text never goes into an error)."""

    status: int
    message: str
    reason: str


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=ASK_TIMEOUT_S)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class ModelNames:
    """`name in names`: vLLM serves it now. `ready(name)`: have the supervisor load it if it is an
    adapter of the store."""

    def __init__(self, served: Iterable[str] = (), adapter_service: str | None = None) -> None:
        self._known = set(served)
        self._service = adapter_service

    def __contains__(self, name: object) -> bool:
        return name in self._known

    @property
    def loads(self) -> bool:
        """Whether names vLLM does not serve may be adapters of a store (lora_adapters_uri)."""
        return self._service is not None

    def ready(self, name: object) -> Refusal | None:
        """None when a request naming `name` may go to vLLM: it is served (now), or no adapter of
        that name exists, which vLLM's own 404 then says. A Refusal for an adapter of the store that
        cannot be served (its check failed, the store failed)."""
        if not self.loads or not isinstance(name, str) or not name or name in self._known:
            return None
        status, body = self._ask(name)
        if status == 200:
            self._known.add(name)
            return None
        if status == 404:
            return None
        return Refusal(status, body.get("message") or "the adapter cannot be served", body.get("reason") or "")

    def _ask(self, name: str) -> tuple[int, dict[str, str]]:
        connection = _UnixConnection(self._service)  # type: ignore[arg-type]
        try:
            connection.request("POST", ADAPTERS_PATH + quote(name, safe=""))
            reply = connection.getresponse()
            data = reply.read()
        except OSError as exc:
            why = f"the adapter service did not answer ({type(exc).__name__})"
            return 503, {"message": why, "reason": why}
        finally:
            connection.close()
        try:
            body = json.loads(data)
        except ValueError:
            body = {}
        return reply.status, body if isinstance(body, dict) else {}
