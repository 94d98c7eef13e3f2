"""Streamed responses: each stream yields its DRUM worker to other requests as it goes, and
DRUM's streamed chats are written one whole SSE event at a time.

DRUM yields every chunk as two strings (its `data:` line, then the blank line that ends the
event), and gunicorn writes each yielded item as its own chunked-encoding write: two sends per
token. Joining them is one send per event, and holds nothing back: DRUM yields the blank line
right after the data line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import flask

Chunk = TypeVar("Chunk")
FAIR_SLICE_S = 0.001  # longest a stream keeps its DRUM worker before letting other requests run


def fair(chunks: Iterable[Chunk], finish: Callable[[], None]) -> Iterator[Chunk]:
    """`chunks`, yielding to other requests after every chunk; `finish` runs when the stream ends
    or is dropped (its client gone).

    Under DRUM's gevent worker a socket read only switches greenlets when it would block; vLLM
    streams faster than chunks are re-encoded, so without this one stream would hold the worker
    (and every other request, new ones included) until it ended. Outside gevent it costs nothing.
    """
    switched = time.monotonic()
    try:
        for chunk in chunks:
            yield chunk
            if time.monotonic() - switched >= FAIR_SLICE_S:
                time.sleep(0)
                switched = time.monotonic()
    finally:
        finish()


def whole_events(parts: Iterable[str | bytes]) -> Iterator[bytes]:
    """`parts` joined up to each event's end (a part ending in a blank line, or the blank line alone)."""
    pending: list[bytes] = []
    try:
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            pending.append(data)
            if data == b"\n" or data.endswith(b"\n\n"):
                yield b"".join(pending)
                pending.clear()
        if pending:
            yield b"".join(pending)
    finally:
        close = getattr(parts, "close", None)
        if close is not None:
            close()  # DRUM's stream span and our stream's release run on a client's disconnect too


def init_app(app: flask.Flask) -> None:
    @app.after_request
    def one_write_per_event(response: flask.Response) -> flask.Response:
        if response.mimetype == "text/event-stream" and response.is_streamed:
            response.response = whole_events(response.response)
        return response
