"""An instant stand-in for vLLM's OpenAI server, to isolate the adapter's own overhead.

A benchmark part only (named as such in its output): it answers every chat completion at once
with the last user message echoed back, so the rows/s measured through DRUM are our ceiling
and echoes make misaligned rows visible (several rows to a request too, as vLLM's batch chat
endpoint answers them). A streamed request (a chat, or a text completion at /v1/completions) gets
max_tokens chunks shaped as vLLM's (one word each, then a finish chunk and [DONE]), all written at once: the chunks/s
measured through DRUM are our relay's ceiling. With --pace-ms the chunks come at an engine's pace
instead: what DRUM adds to the time to the first chunk and between chunks, vLLM's scheduling
aside. With --hold-ms a plain answer waits that long (an engine decoding), and GET /arrivals
lists when each chat request came in since the last call: how fast a client put them on the wire.
Run: python -m bench.standin --port N [--pace-ms FIRST,GAP] [--hold-ms MS]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiohttp import web

MODEL = "standin"
PACE = web.AppKey("pace", object)  # (seconds to the first chunk, seconds between chunks) or None: all at once
HOLD = web.AppKey("hold", float)  # seconds before a plain answer
ARRIVALS = web.AppKey("arrivals", list)  # (CLOCK_MONOTONIC, rows) per chat request since the last GET /arrivals


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


def batch_completion(body: dict) -> dict:
    """vLLM's /v1/chat/completions/batch: one choice per conversation, each the echo of its last
    user message."""
    answers = [completion({**body, "messages": conversation, "n": 1}) for conversation in body["messages"]]
    choices = [{**answer["choices"][0], "index": i} for i, answer in enumerate(answers)]
    return {**answers[0], "choices": choices}


def _chunk(created: int, model: str, delta: dict, finish: str | None, completion: bool = False) -> bytes:
    """A chat chunk, or with `completion` a text completion's chunk of the same text."""
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    if completion:
        choice = {"index": 0, "text": delta.get("content", ""), "logprobs": None, "finish_reason": finish}
    body = {
        "id": "chatcmpl-standin",
        "object": "text_completion" if completion else "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [choice],
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def stream_events(body: dict) -> list[bytes]:
    """The SSE events of a streamed answer: role, max_tokens words, finish, [DONE] (a chat's, or a
    text completion's for a body with a prompt)."""
    created, model = int(time.time()), body.get("model", MODEL)
    completion = "prompt" in body
    words = (body["prompt"] if completion else body["messages"][-1]["content"]).split() or ["x"]
    count = int(body.get("max_tokens") or 16)
    parts = [_chunk(created, model, {"role": "assistant", "content": ""}, None, completion)]
    parts += [_chunk(created, model, {"content": f" {words[i % len(words)]}"}, None, completion) for i in range(count)]
    return [*parts, _chunk(created, model, {}, "length", completion), b"data: [DONE]\n\n"]


def stream_body(body: dict) -> bytes:
    """The whole SSE body of a streamed answer."""
    return b"".join(stream_events(body))


def _stamped(event: bytes) -> bytes:
    """An event carrying the time it is written (CLOCK_MONOTONIC: one clock for every process of a
    host), so a client can tell how long a relay held it back."""
    if not event.endswith(b"}"):
        return event + b"\n\n"  # [DONE]
    return event[:-1] + b',"sent_at":%.6f}\n\n' % time.monotonic()


async def paced(request: web.Request, body: dict, first_s: float, gap_s: float) -> web.StreamResponse:
    """The same chunks at an engine's pace: headers at once, the role and first word after `first_s`
    (a prefill), then one chunk every `gap_s` (decode steps); each stamped with its write time."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    chunks = stream_body(body).split(b"\n\n")[:-1]
    await asyncio.sleep(first_s)
    await response.write(_stamped(chunks[0]) + _stamped(chunks[1]))
    for chunk in chunks[2:]:
        await asyncio.sleep(gap_s)
        await response.write(_stamped(chunk))
    await response.write_eof()
    return response


async def _arrived(request: web.Request) -> dict:
    """The request's body, its arrival noted (the time its handler starts: headers read)."""
    came = time.monotonic()
    body = await request.json()
    rows = len(body["messages"]) if request.path.endswith("/batch") else 1
    request.app[ARRIVALS].append((came, rows))
    return body


async def chat(request: web.Request) -> web.StreamResponse:
    body = await _arrived(request)
    if body.get("stream"):
        pace = request.app[PACE]
        if pace is not None:
            return await paced(request, body, *pace)
        return web.Response(body=stream_body(body), content_type="text/event-stream")
    if request.app[HOLD]:
        await asyncio.sleep(request.app[HOLD])
    return web.json_response(completion(body), dumps=json.dumps)


async def completions(request: web.Request) -> web.StreamResponse:
    """A streamed text completion, every event written at once but each its own HTTP chunk, as
    vLLM's server writes them (a relay of raw bytes sees vLLM's chunks)."""
    body = await request.json()
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for event in stream_events(body):
        await response.write(event)
    await response.write_eof()
    return response


async def chat_batch(request: web.Request) -> web.Response:
    body = await _arrived(request)
    if request.app[HOLD]:
        await asyncio.sleep(request.app[HOLD])
    return web.json_response(batch_completion(body), dumps=json.dumps)


async def arrivals(request: web.Request) -> web.Response:
    """[[CLOCK_MONOTONIC, rows], ...] of the chat requests since the last call; then forgets them."""
    came = request.app[ARRIVALS][:]
    request.app[ARRIVALS].clear()
    return web.json_response(came)


async def models(_request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]})


async def health(_request: web.Request) -> web.Response:
    return web.Response()


def app(pace: tuple[float, float] | None = None, hold_s: float = 0.0) -> web.Application:
    application = web.Application()
    application[PACE] = pace
    application[HOLD] = hold_s
    application[ARRIVALS] = []
    application.add_routes(
        [
            web.post("/v1/chat/completions", chat),
            web.post("/v1/chat/completions/batch", chat_batch),
            web.post("/v1/completions", completions),
            web.get("/v1/models", models),
            web.get("/health", health),
            web.get("/arrivals", arrivals),
        ]
    )
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pace-ms", help="FIRST,GAP: stream at an engine's pace (ms to the first chunk, ms between)")
    parser.add_argument("--hold-ms", type=float, default=0.0, help="hold each plain answer this long (default 0)")
    args = parser.parse_args()
    pace = tuple(float(ms) / 1000 for ms in args.pace_ms.split(",")) if args.pace_ms else None
    # uvicorn's (vLLM's) listen backlog, not aiohttp's 128: a burst of connections must not be dropped and retried
    web.run_app(
        app(pace, args.hold_ms / 1000), host="127.0.0.1", port=args.port, print=None, access_log=None, backlog=2048
    )


if __name__ == "__main__":
    main()
