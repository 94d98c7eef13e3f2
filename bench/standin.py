"""An instant stand-in for vLLM's OpenAI server, to isolate the adapter's own overhead.

A benchmark part only (named as such in its output): it answers every chat completion at once
with the last user message echoed back, so the rows/s measured through DRUM are our ceiling
and echoes make misaligned rows visible. A streamed request gets max_tokens chunks shaped as
vLLM's (one word each, then a finish chunk and [DONE]), all written at once: the chunks/s
measured through DRUM are our relay's ceiling. Run: python -m bench.standin --port N
"""

from __future__ import annotations

import argparse
import json
import time

from aiohttp import web

MODEL = "standin"


def completion(body: dict) -> dict:
    prompt = body["messages"][-1]["content"]
    n = int(body.get("n") or 1)
    return {
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", MODEL),
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": prompt}, "finish_reason": "length"}
            for i in range(n)
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _chunk(created: int, model: str, delta: dict, finish: str | None) -> bytes:
    body = {
        "id": "chatcmpl-standin",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def stream_body(body: dict) -> bytes:
    """The whole SSE body of a streamed answer: role, max_tokens words, finish, [DONE]."""
    created, model = int(time.time()), body.get("model", MODEL)
    words = body["messages"][-1]["content"].split() or ["x"]
    count = int(body.get("max_tokens") or 16)
    parts = [_chunk(created, model, {"role": "assistant", "content": ""}, None)]
    parts += [_chunk(created, model, {"content": f" {words[i % len(words)]}"}, None) for i in range(count)]
    parts += [_chunk(created, model, {}, "length"), b"data: [DONE]\n\n"]
    return b"".join(parts)


async def chat(request: web.Request) -> web.Response:
    body = await request.json()
    if body.get("stream"):
        return web.Response(body=stream_body(body), content_type="text/event-stream")
    return web.json_response(completion(body), dumps=json.dumps)


async def models(_request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]})


async def health(_request: web.Request) -> web.Response:
    return web.Response()


def app() -> web.Application:
    application = web.Application()
    application.add_routes(
        [web.post("/v1/chat/completions", chat), web.get("/v1/models", models), web.get("/health", health)]
    )
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    web.run_app(app(), host="127.0.0.1", port=parser.parse_args().port, print=None, access_log=None)


if __name__ == "__main__":
    main()
