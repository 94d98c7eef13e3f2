"""The adapter loader served to DRUM's workers: HTTP on a unix socket in the launch's folder, so only
processes of this container reach it. `POST /adapters/<name>` answers the loader's outcome:
its status, and JSON `{"message", "reason"}`.
"""

from __future__ import annotations

import json
import logging
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote

from vllm_dropin.contract import ADAPTERS_PATH
from vllm_dropin.launch.adapter_loader import AdapterLoader

log = logging.getLogger("vllm_dropin")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    loader: AdapterLoader


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        if not self.path.startswith(ADAPTERS_PATH):
            self._answer(404, {"message": "no such route"})
            return
        outcome = self.server.loader.ensure(unquote(self.path.removeprefix(ADAPTERS_PATH)))
        self._answer(outcome.status, {"message": outcome.message, "reason": outcome.reason})

    def _answer(self, status: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Nothing per request: the loader logs what it loads."""


class AdapterService:
    """The loader on `path`, answered from a thread per connection until `close()`."""

    def __init__(self, loader: AdapterLoader, path: Path) -> None:
        self.path = path
        self._server = _Server(str(path), _Handler)
        self._server.loader = loader
        self._thread = threading.Thread(target=self._server.serve_forever, name="adapter-service", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
