"""OpenAI chat completions passed through to vLLM, streaming included."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from .client import Upstream, unreachable
from .openai_errors import openai_error

# Characters that str.splitlines() breaks lines on but JSON leaves unescaped inside strings.
_LINE_BREAKS_JSON_KEEPS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class SseSafeChunk(ChatCompletionChunk):
    """A streamed chunk whose JSON survives DRUM's SSE encoding.

    DRUM writes each chunk as `data:` lines by calling splitlines() on to_json(), which also splits
    on U+0085, U+2028 and U+2029; a token holding one of them reached the client as two data lines
    and broke its JSON ("Invalid control character"). Escaping them keeps the JSON equal and whole.
    """

    def to_json(self, **kwargs: Any) -> str:  # type: ignore[override]
        return super().to_json(**kwargs).translate(_LINE_BREAKS_JSON_KEEPS)


def _fair(stream: openai.Stream[Any], release: Callable[[], None]) -> Iterator[Any]:
    """Yield to other requests after every chunk; release the client when the stream ends or is dropped.

    Under DRUM's gevent worker a socket read only switches greenlets when it would block; vLLM
    streams faster than chunks are re-encoded, so without this one stream would hold the worker
    (and every other request, new ones included) until it ended. Outside gevent it costs nothing.
    """
    try:
        for chunk in stream:
            yield chunk
            time.sleep(0)
    finally:
        stream.close()
        release()


def chat(params: dict[str, Any], upstream: Upstream) -> Any:
    """A ChatCompletion, or a stream of chunks when params ask for stream=true."""
    if not isinstance(params, dict):
        message = "chat request body must be a JSON object"
        raise openai_error(400, message, logged=message)
    stream = bool(params.get("stream"))
    client = upstream.clients.take()
    streaming = False  # once a stream is handed to DRUM, the stream gives the client back
    try:
        # The body goes to vLLM as the caller sent it (vLLM's own fields such as top_k included);
        # vLLM validates it. create() would re-check and re-transform every field for nothing.
        result = client.post(
            "/chat/completions",
            body=params,
            cast_to=ChatCompletion,
            stream=stream,
            stream_cls=openai.Stream[SseSafeChunk],
        )
        streaming = stream
        return _fair(result, lambda: upstream.clients.give_back(client)) if stream else result
    except openai.APIStatusError as exc:
        raise openai_error(exc.status_code, exc.message, exc.body) from None
    except openai.APIConnectionError as exc:
        raise openai_error(503, unreachable(exc), logged=unreachable(exc)) from None
    finally:
        if not streaming:
            upstream.clients.give_back(client)


def models(upstream: Upstream) -> list[Any]:
    try:
        with upstream.clients.client() as client:
            return list(client.models.list())
    except openai.APIConnectionError as exc:
        raise openai_error(503, unreachable(exc), logged=unreachable(exc)) from None
