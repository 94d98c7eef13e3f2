"""A request whose client has gone is given up upstream too: no further batch row is sent, and
the requests already at vLLM are cut off (their connections closed, which vLLM takes as its
client gone: it aborts them and frees their place in the engine).

The client's leaving is seen on its connection: a closed (or reset) connection becomes readable
with nothing to read. DRUM's gunicorn worker gives the request's socket in the WSGI environ; a
watcher in gevent's loop (DRUM's gevent worker), or else a thread, waits on it while the request
waits on vLLM. A request that its worker gives up (an exception from outside, such as gevent's
GreenletExit) is given up the same way. A client that half-closes its side after sending (rare in HTTP) is taken
as gone, as nginx takes it.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, Protocol

import flask
from datarobot_drum.drum.exceptions import CustomHTTPError

log = logging.getLogger("vllm_dropin.departure")
WATCH_S = 1.0  # how long after its request ends a watcher thread may linger (its client's leaving wakes it at once)


class Abortable(Protocol):
    def abort(self) -> None:
        """End the request in progress on this connection at once (the caller's call then raises)."""


class Departure:
    """One request's work at vLLM, given up when its client leaves."""

    def __init__(self) -> None:
        self.gone = threading.Event()
        self._lock = threading.Lock()
        self._held: set[Abortable] = set()

    def give_up(self) -> None:
        """Cut off every request held at vLLM; none is sent after."""
        with self._lock:
            self.gone.set()
            for connection in self._held:
                connection.abort()

    @contextmanager
    def holding(self, connection: Abortable) -> Iterator[None]:
        """`connection` is cut off if the request is given up while this block runs."""
        with self._lock:
            if self.gone.is_set():
                raise ClientGone()
            self._held.add(connection)
        try:
            yield
        finally:
            with self._lock:  # not cut off once given back: another request may have it next
                self._held.discard(connection)


class ClientGone(Exception):
    """The client left before its answer."""

    STATUS = 499  # nginx's "client closed request": no one reads it; the log line and series do
    MESSAGE = "the client closed its connection before the answer; vLLM's work for it was aborted"


class Left(CustomHTTPError):
    """What a hook raises for a request whose client left: answered 499 with one log line, where
    DRUM's handler of every error would log a traceback for what is no error of the deployment's."""

    def __init__(self, message: str = ClientGone.MESSAGE) -> None:
        super().__init__(message, status_code=ClientGone.STATUS)


DRUM_BLUEPRINT = "model_api"  # DRUM's routes, whose handler of every Exception logs a traceback


def init_app(app: flask.Flask) -> None:
    """Answer `Left` before DRUM's handler does: a handler for the class itself comes first in the
    blueprint's map (Flask looks a class's own handler up before its bases')."""

    def left(error: Left) -> flask.Response:
        log.info("%s", error)
        body = json.dumps({"message": str(error)})
        return flask.Response(body, status=ClientGone.STATUS, mimetype="application/json")

    app.error_handler_spec[DRUM_BLUEPRINT][None][Left] = left


CURRENT: ContextVar[Departure | None] = ContextVar("dropin_departure", default=None)


def held(connection: Abortable) -> Any:
    """A block during which `connection` is cut off if the current request is given up."""
    departure = CURRENT.get()
    return nullcontext() if departure is None else departure.holding(connection)


@contextmanager
def watched() -> Iterator[Departure]:
    """The current request's Departure, given up when its client closes its connection or when
    the block is left by an exception (the request given up, or failed: nothing to wait for)."""
    departure = Departure()
    token = CURRENT.set(departure)
    client = _client_socket()
    stop = _watching(client, departure) if client is not None else None
    try:
        yield departure
    except BaseException as exc:
        left = departure.gone.is_set()
        departure.give_up()
        if left and isinstance(exc, Exception) and not isinstance(exc, ClientGone):
            raise ClientGone() from None  # the cut-off connection's error, taken for what it is
        raise
    finally:
        if stop is not None:
            stop()
        CURRENT.reset(token)


def _client_socket() -> Any:
    """The socket of the current request's client, where the server gives it (gunicorn)."""
    if not flask.has_request_context():
        return None
    return flask.request.environ.get("gunicorn.socket")


def _watching(client: Any, departure: Departure) -> Callable[[], None]:
    """Watch `client` until the returned function is called: in gevent's loop when the worker is
    gevent's (a watcher costs a few microseconds where a greenlet costs tens), else in a thread."""
    if _gevent_patched():
        import gevent

        watcher = gevent.get_hub().loop.io(client.fileno(), 1)  # 1: readable

        def readable() -> None:  # in the loop itself, which must not block: the check goes elsewhere
            watcher.stop()
            gevent.spawn(_check, client, departure)

        watcher.start(readable)
        return lambda: (watcher.stop(), watcher.close())
    ended = threading.Event()
    threading.Thread(target=_watch, args=(client, departure, ended), daemon=True).start()
    return ended.set


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")


def _watch(client: Any, departure: Departure, ended: threading.Event) -> None:
    """Give the request up if its client's connection closes before the request ends."""
    waiting = select.poll()  # not select(): a worker's descriptors may number past its 1024
    waiting.register(client, select.POLLIN)
    while not ended.is_set():
        try:
            if waiting.poll(WATCH_S * 1000):
                if not ended.is_set():
                    _check(client, departure)
                return
        except (OSError, ValueError):
            return  # the server closed the socket: the request is over


def _check(client: Any, departure: Departure) -> None:
    """Give the request up if its readable client connection is closed (nothing to read) or reset;
    a client that sent more (a pipelined request) is there."""
    try:
        gone = client.recv(1, socket.MSG_PEEK) == b""
    except ConnectionError:
        gone = True
    except (OSError, ValueError):
        gone = False  # the server closed the socket: the request is over
    if gone:
        departure.give_up()
