"""The openai client as a user's program drives vLLM or the deployment: a direct concurrent batch
(the baseline for our batch path) and a burst of chats from one process."""

from __future__ import annotations

import asyncio
import ssl
import time

import httpx2
import openai

from bench.servers import Endpoint
from bench.workload import Result, messages

# One event loop for the whole run, so clients (and their keep-alive connections) outlive a run:
# a direct caller tuned for throughput would not reconnect for every batch.
_RUNNER = asyncio.Runner()
_CLIENTS: dict[tuple[str, str], list[openai.AsyncOpenAI]] = {}
_TLS = ssl.create_default_context()


def _clients(endpoint: Endpoint, count: int) -> list[openai.AsyncOpenAI]:
    """`count` single-connection clients for `endpoint`: each worker owns one connection."""
    pool = _CLIENTS.setdefault((endpoint.base_url, endpoint.api_key), [])
    while len(pool) < count:
        pool.append(
            openai.AsyncOpenAI(
                base_url=endpoint.base_url,
                api_key=endpoint.api_key,
                max_retries=0,
                timeout=httpx2.Timeout(None, connect=10.0),
                http_client=openai.DefaultAsyncHttpxClient(verify=_TLS, limits=httpx2.Limits(max_connections=1)),
            )
        )
    return pool[:count]


def _run_workers(endpoint: Endpoint, count: int, concurrency: int, one) -> list:
    """Call `one(client, i)` for i in range(count) with `concurrency` workers; results in order."""
    results: list = [None] * count

    async def run() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(count):
            queue.put_nowait(i)

        async def worker(client: openai.AsyncOpenAI) -> None:
            while not queue.empty():
                i = queue.get_nowait()
                results[i] = await one(client, i)

        await asyncio.gather(*(worker(c) for c in _clients(endpoint, min(concurrency, count))))

    _RUNNER.run(run())
    return results


def direct_batch(
    name: str, endpoint: Endpoint, model: str, rows: list[str], max_tokens: int, concurrency: int
) -> Result:
    """Each row as a chat completion straight to vLLM, `concurrency` in flight: the baseline for our batch path."""

    async def one(client: openai.AsyncOpenAI, i: int) -> tuple[str, int]:
        reply = await client.chat.completions.create(
            model=model, messages=messages(rows[i]), max_tokens=max_tokens, temperature=0.0, n=1
        )
        return reply.choices[0].message.content or "", reply.usage.completion_tokens

    start = time.perf_counter()
    answers = _run_workers(endpoint, len(rows), concurrency, one)
    seconds = time.perf_counter() - start
    return Result(name, len(rows), seconds, texts=[a[0] for a in answers], completion_tokens=sum(a[1] for a in answers))


def chat_burst(name: str, endpoint: Endpoint, model: str, prompts: list[str], max_tokens: int, stream: bool) -> Result:
    """All prompts as chat requests at once (plain or streamed), through the openai client. Also
    the client's own CPU seconds (one process parses every event: near the wall time, the client
    is what a burst measures) and, streamed, the chunks it read (vLLM merges a stream's tokens into
    fewer chunks when its front end falls behind)."""

    async def one(client: openai.AsyncOpenAI, i: int) -> tuple[str, int]:
        kwargs = {"model": model, "messages": messages(prompts[i]), "max_tokens": max_tokens, "temperature": 0.0}
        if not stream:
            reply = await client.chat.completions.create(**kwargs)
            return reply.choices[0].message.content or "", 1
        parts, chunks = [], 0
        async for chunk in await client.chat.completions.create(**kwargs, stream=True):
            chunks += 1
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        return "".join(parts), chunks

    start, cpu = time.perf_counter(), time.process_time()
    answers = _run_workers(endpoint, len(prompts), len(prompts), one)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    extra = {"client_cpu_s": round(cpu, 3), **({"chunks": sum(a[1] for a in answers)} if stream else {})}
    return Result(name, len(prompts), seconds, texts=[a[0] for a in answers], extra=extra)
