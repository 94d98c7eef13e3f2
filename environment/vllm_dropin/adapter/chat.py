"""OpenAI chat completions passed through to vLLM, streaming included."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import openai
from datarobot_drum.drum.exceptions import CustomHTTPError

from .client import UPSTREAM_UNREACHABLE, Upstream


@cache
def _named_params() -> frozenset[str]:
    return frozenset(inspect.signature(openai.resources.chat.Completions.create).parameters) - {"self"}


def split_params(params: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for the openai client: fields it does not name (vLLM's extensions such as
    top_k or min_tokens) travel in extra_body unchanged."""
    named = _named_params()
    kwargs = {k: v for k, v in params.items() if k in named}
    extra = {k: v for k, v in params.items() if k not in named}
    if extra:
        kwargs["extra_body"] = {**extra, **kwargs.get("extra_body", {})}
    return kwargs


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
        raise CustomHTTPError("chat request body must be a JSON object", status_code=400)
    client = upstream.clients.take()
    streaming = False
    try:
        result = client.chat.completions.create(**split_params(params))
        streaming = bool(params.get("stream"))
        return _fair(result, lambda: upstream.clients.give_back(client)) if streaming else result
    except openai.APIStatusError as exc:
        raise CustomHTTPError(f"vLLM: {exc.message}", status_code=exc.status_code) from None
    except openai.APIConnectionError:
        raise CustomHTTPError(UPSTREAM_UNREACHABLE, status_code=503) from None
    finally:
        if not streaming:
            upstream.clients.give_back(client)


def models(upstream: Upstream) -> list[Any]:
    try:
        with upstream.clients.client() as client:
            return list(client.models.list())
    except openai.APIConnectionError:
        raise CustomHTTPError(UPSTREAM_UNREACHABLE, status_code=503) from None
