"""The usage a streamed answer tells its client, counted whether or not the client asked for it.

vLLM puts a stream's usage in a last event (no choices, a `usage` object) only when the request
asks for it (`stream_options.include_usage`). The deployment asks on every stream of the routes
that take it, counts that event, and passes it on only to a client that asked: the client sees
what vLLM would have sent it. The Responses API's stream always ends with its usage
(`response.completed`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

# The routes whose streams carry usage only when asked (vLLM's stream_options).
ASKED_ROUTES = frozenset({"/v1/completions", "/v1/chat/completions"})
_DONE = b"data: [DONE]"
_DECODER = json.JSONDecoder()
# A JSON string never holds an unescaped quote, so this finds a "model" key, not text that says so.
_MODEL = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.)*)"')


def in_body(body: bytes) -> dict[str, Any] | None:
    """The usage of a whole answer, read from its last "usage" key without decoding the rest (an
    embeddings answer can be megabytes of numbers; vLLM writes usage after the data)."""
    at = body.rfind(b'"usage":')
    if at < 0:
        return None
    try:
        usage, _ = _DECODER.raw_decode(body[at + len(b'"usage":') :].decode().lstrip())
    except (ValueError, UnicodeDecodeError):
        return None
    return usage if isinstance(usage, dict) else None


def model_in(sent: bytes) -> str | None:
    """The model a request names, found without decoding the request (its input may be long)."""
    found = _MODEL.search(sent)
    if found is None:
        return None
    try:
        return json.loads(b'"' + found[1] + b'"')
    except ValueError:
        return None


def asked(body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A streamed request's body with usage asked for, and whether its client asked."""
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        return body, True
    options = options if isinstance(options, dict) else {}
    return {**body, "stream_options": {**options, "include_usage": True}}, False


def asked_in(data: bytes) -> tuple[bytes, bool]:
    """`asked` for a request body as sent (JSON bytes); a body that is not a streamed JSON request
    goes as it is."""
    if b'"stream"' not in data:
        return data, True
    try:
        body = json.loads(data)
    except ValueError:
        return data, True  # vLLM answers it
    if not isinstance(body, dict) or body.get("stream") is not True:
        return data, True
    body, shown = asked(body)
    return (data, True) if shown else (json.dumps(body).encode(), False)


def of_event(event: Any) -> dict[str, Any] | None:
    """The usage a streamed event tells, if it is a stream's last word on it: a chunk without
    choices (completions, chat), or the Responses API's `response.completed`."""
    if not isinstance(event, dict):
        return None
    if event.get("type") == "response.completed":
        usage = (event.get("response") or {}).get("usage")
    else:
        usage = event.get("usage") if not event.get("choices") else None
    return usage if isinstance(usage, dict) else None


def counted(chunks: Iterable[bytes], count: Callable[[dict[str, Any]], None], shown: bool) -> Iterator[bytes]:
    """An SSE stream's chunks as they come, its usage counted, and the usage event that was asked
    for dropped unless `shown` (each chunk is one or more whole events, as vLLM writes them)."""
    for chunk in chunks:
        if b'"usage"' not in chunk:
            yield chunk
            continue
        kept = []
        for event in chunk.split(b"\n\n"):
            data = _data_of(event)
            usage = of_event(data)
            if usage is not None:
                count(usage)
                if not shown and "choices" in data:  # the event asked for; a Responses API event stays
                    continue
            kept.append(event)
        if any(kept):
            yield b"\n\n".join(kept)


def _data_of(event: bytes) -> Any:
    """The JSON of an SSE event's data line (after an `event:` line, as the Responses API sends)."""
    line = next((line for line in event.split(b"\n") if line.startswith(b"data: ")), None)
    if line is None or line.startswith(_DONE):
        return None
    try:
        return json.loads(line.removeprefix(b"data: "))
    except ValueError:
        return None
