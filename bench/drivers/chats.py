"""The chat driver of every scenario: raw aiohttp clients, cheaper than what they measure.

- `streamed_chats` / `plain_chats`: a closed loop, `concurrency` chats at a time, each worker on a
  keep-alive connection of its own opened before the clock starts (deployments);
- `streams_at_once` / `plain_at_once`: a burst of chats sent together after a warm-up burst, with
  the CPU a server process used meanwhile (the relay's ceiling).

Streams are read by `drivers.sse` (time to the first event, gaps between events); percentiles by
`metrics.percentiles`.
"""

from __future__ import annotations

import asyncio
import collections
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import psutil

from bench import servers
from bench.drivers import sse
from bench.metrics.memory import cpu_seconds
from bench.metrics.percentiles import ms, percentile
from bench.workload import prompts

MODEL = "datarobot-deployed-llm"  # every deployment serves this alias; the stand-in answers any name
MESSAGES = [{"role": "user", "content": "one two three four five six seven eight"}]


def streamed_chats(endpoint: servers.Endpoint, lengths: list[int], concurrency: int) -> dict:
    """A streamed chat per entry of `lengths` (its max_tokens), `concurrency` at a time: throughput,
    time to first token (TTFT) and inter-token latency (ITL: the gaps between a stream's content
    events) percentiles, read by bench.sse's raw reader."""
    return asyncio.run(_streamed_chats(endpoint, lengths, concurrency))


def plain_chats(endpoint: servers.Endpoint, lengths: list[int], concurrency: int) -> dict:
    """A chat per entry of `lengths` (its max_tokens) without streaming, `concurrency` at a time:
    throughput and latency percentiles."""
    return asyncio.run(_plain_chats(endpoint, lengths, concurrency))


Send = Callable[[aiohttp.ClientSession, str, dict, dict[str, str]], Awaitable[bool]]


async def _connected(
    endpoint: servers.Endpoint, count: int, timeout: aiohttp.ClientTimeout
) -> list[aiohttp.ClientSession]:
    """`count` sessions of one keep-alive connection each, opened one after another (a GET of
    /models) before the clock starts, so connection setup stays out of the figures. Which process
    accepts each is the server's affair: DRUM's workers each have a socket of their own, vLLM's API
    servers share one and may split these lopsided; the split is
    reported per load."""
    headers = {"Authorization": f"Bearer {endpoint.api_key}"}
    sessions: list[aiohttp.ClientSession] = []
    try:
        for _ in range(count):
            sessions.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=timeout))
            async with sessions[-1].get(f"{endpoint.base_url}/models", headers=headers) as response:
                await response.read()
    except BaseException:
        await asyncio.gather(*(session.close() for session in sessions))
        raise
    return sessions


async def _closed_loop(endpoint: servers.Endpoint, lengths: list[int], concurrency: int, send: Send) -> dict:
    """One chat per entry of `lengths` (its max_tokens), `concurrency` at a time, each worker on a
    connection of its own and each chat sent by `send` (True: answered); throughput and failures
    (counted: the figures say how many failed)."""
    count = len(lengths)
    asked = prompts(count)
    url = f"{endpoint.base_url}/chat/completions"
    headers = {"Authorization": f"Bearer {endpoint.api_key}"}
    pending = iter(range(count))
    answered, failures = 0, []

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal answered
        for i in pending:
            body = {"model": "datarobot-deployed-llm", "messages": [{"role": "user", "content": asked[i]}],
                    "max_tokens": lengths[i], "temperature": 0.0}  # fmt: skip
            try:
                done = await send(session, url, body, headers)  # `answered += await ...` would read it before
            except (TimeoutError, aiohttp.ClientError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}"[:200])
            else:
                answered += done

    sessions = await _connected(endpoint, concurrency, aiohttp.ClientTimeout(total=900))
    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for session in sessions))
        seconds = time.perf_counter() - started
        held = connections_per_process(endpoint, os.getpid())  # before the sessions close their connections
    finally:
        await asyncio.gather(*(session.close() for session in sessions))
    return {
        "requests": count,
        "answered": answered,
        "failed": len(failures),
        "first_failures": sorted(set(failures))[:3],
        "requests_per_s": round(count / seconds, 1),
        "client_connections_per_process": held,
    }


async def _plain_chats(endpoint: servers.Endpoint, lengths: list[int], concurrency: int) -> dict:
    latencies: list[float] = []

    async def send(session: aiohttp.ClientSession, url: str, body: dict, headers: dict[str, str]) -> bool:
        sent = time.perf_counter()
        async with session.post(url, json=body, headers=headers) as response:
            response.raise_for_status()
            await response.read()
        latencies.append(time.perf_counter() - sent)
        return True

    figures = await _closed_loop(endpoint, lengths, concurrency, send)
    return figures | {
        "latency_mean_s": round(statistics.fmean(latencies), 3),
        "latency_p50_s": round(percentile(latencies, 50), 3),
        "latency_p99_s": round(percentile(latencies, 99), 3),
    }


async def _streamed_chats(endpoint: servers.Endpoint, lengths: list[int], concurrency: int) -> dict:
    ttfts: list[float] = []
    gaps: list[float] = []
    events: list[int] = []  # text chunks per stream: fewer than its tokens where vLLM merged them

    async def send(session: aiohttp.ClientSession, url: str, body: dict, headers: dict[str, str]) -> bool:
        times = await sse.timed_stream(session, url, {**body, "stream": True}, headers, sse.content_event)
        if times.first is not None:
            ttfts.append(times.first)
        gaps.extend(times.gaps)
        events.append(times.events)
        return times.events > 0

    figures = await _closed_loop(endpoint, lengths, concurrency, send)
    return figures | {
        "ttft_p50_s": round(percentile(ttfts, 50), 3),
        "ttft_p99_s": round(percentile(ttfts, 99), 3),
        "itl_p50_ms": ms(gaps, 50, 2),
        "itl_p99_ms": ms(gaps, 99, 2),
        "chunks_per_stream": round(statistics.fmean(events), 1),
    }


def connections_per_process(server: servers.Endpoint, client: int | None = None) -> str:
    """Established connections to a server's port, per process that holds them ("9/7": two vLLM API
    servers or DRUM workers); with `client`, only those that process opened (the direct client's,
    not DRUM's pooled ones). A keep-alive connection stays with the process that accepted it; a
    lopsided split loads one more than the others. Read while the connections are still open."""
    port = int(server.base_url.rsplit(":", 1)[1].split("/", 1)[0])
    tcp = psutil.net_connections("tcp")
    ours = {c.laddr.port for c in tcp if c.pid == client and c.raddr and c.raddr.port == port} if client else None
    held = collections.Counter(
        c.pid
        for c in tcp
        if c.laddr and c.laddr.port == port and c.status == "ESTABLISHED" and (ours is None or c.raddr.port in ours)
    )
    return "/".join(str(n) for n in sorted(held.values(), reverse=True)) or "-"


@dataclass
class Streams:
    events: int
    seconds: float
    firsts: list[float]  # seconds to the first event, per stream
    gaps: list[float]  # seconds between events, per event after the first (events read together: 0)
    held: list[float]  # per event the paced stand-in stamped, seconds from its write to the client's read
    worker_cpu_s: list[float]  # CPU seconds each DRUM worker asked for used during the timed streams


async def streams_at_once(
    url: str, streams: int, tokens: int, workers: tuple[int, ...] = (), completions: bool = False
) -> Streams:
    """`streams` streamed chats (or text completions) at once, after a warm-up round of as many
    (the relay lends a client per stream)."""
    body = {"model": MODEL, "stream": True, "max_tokens": tokens}
    body |= {"prompt": MESSAGES[0]["content"]} if completions else {"messages": MESSAGES}
    endpoint = f"{url}/v1/completions" if completions else f"{url}/v1/chat/completions"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        await asyncio.gather(*(sse.timed_stream(session, endpoint, body) for _ in range(streams)))
        cpu = [cpu_seconds(pid) for pid in workers]
        begun = time.perf_counter()
        runs = await asyncio.gather(*(sse.timed_stream(session, endpoint, body) for _ in range(streams)))
        seconds = time.perf_counter() - begun
        cpu = [cpu_seconds(pid) - before for pid, before in zip(workers, cpu, strict=True)]
    firsts = [run.first for run in runs if run.first is not None]
    return Streams(sum(run.events for run in runs), seconds, firsts, [g for run in runs for g in run.gaps],
                   [h for run in runs for h in run.held], cpu)  # fmt: skip


async def plain_at_once(url: str, chats: int, tokens: int, worker: int) -> tuple[float, float, float]:
    """`chats` plain chats at once, after a warm-up round of as many: requests/s, the worker's CPU
    microseconds per chat, and the latency p50 in ms."""
    body = {"model": MODEL, "max_tokens": tokens,
            "messages": MESSAGES}  # fmt: skip
    endpoint = f"{url}/v1/chat/completions"

    async def one(session: aiohttp.ClientSession) -> float:
        started = time.perf_counter()
        async with session.post(endpoint, json=body) as response:
            await response.read()
            response.raise_for_status()
        return time.perf_counter() - started

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        await asyncio.gather(*(one(session) for _ in range(chats)))
        before = cpu_seconds(worker)
        begun = time.perf_counter()
        latencies = await asyncio.gather(*(one(session) for _ in range(chats)))
        seconds = time.perf_counter() - begun
        cpu = cpu_seconds(worker) - before
    return chats / seconds, 1e6 * cpu / chats, ms(list(latencies), 50)
