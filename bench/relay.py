"""python -m bench.relay: our streamed-chat relay's ceiling, chunks/s through one DRUM worker.

The upstream is the streaming stand-in (bench.standin: every chunk of an answer written at
once, so it is never the limit); the client reads raw SSE bytes with aiohttp and counts events
(cheaper than the relay it measures). DRUM runs one gevent worker with our adapter, started as
the entrypoint starts it. `--profile` samples that worker with py-spy during the timed run and
prints where its time goes (own time per function, and the top of the stacks).

`--pace-ms FIRST,GAP` paces the stand-in as an engine would (a first chunk after FIRST ms, then
one every GAP ms) and times the same streams through DRUM and straight to the stand-in,
interleaved: what DRUM adds to the time to the first chunk and between chunks, with no engine
scheduling in the figure.

`--plain` sends plain chats instead, `--streams` at once: a worker's requests/s and its CPU per
chat, which at a closed loop's waves of equal chats is what DRUM adds to each request's start.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from bench import memory, servers, sse
from bench.percentiles import percentile
from vllm_dropin.contract import BatchSettings

MESSAGES = [{"role": "user", "content": "one two three four five six seven eight"}]
BATCH = BatchSettings(prompt_column_name="promptText", max_tokens=16, n=1, temperature=0.0,
                      max_concurrent_rows=16, row_errors="fail")  # fmt: skip


@dataclass
class Streams:
    events: int
    seconds: float
    firsts: list[float]  # seconds to the first event, per stream
    gaps: list[float]  # seconds between events, per event after the first (events read together: 0)
    held: list[float]  # per event the paced stand-in stamped, seconds from its write to the client's read
    worker_cpu_s: list[float]  # CPU seconds each DRUM worker asked for used during the timed streams


async def _streams(url: str, streams: int, tokens: int, workers: tuple[int, ...] = ()) -> Streams:
    """`streams` streamed chats at once, after a warm-up round of as many (the relay lends a client per stream)."""
    body = {"model": "datarobot-deployed-llm", "stream": True, "max_tokens": tokens,
            "messages": MESSAGES}  # fmt: skip
    endpoint = f"{url}/v1/chat/completions"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        await asyncio.gather(*(sse.timed_stream(session, endpoint, body) for _ in range(streams)))
        cpu = [_cpu_s(pid) for pid in workers]
        begun = time.perf_counter()
        runs = await asyncio.gather(*(sse.timed_stream(session, endpoint, body) for _ in range(streams)))
        seconds = time.perf_counter() - begun
        cpu = [_cpu_s(pid) - before for pid, before in zip(workers, cpu, strict=True)]
    firsts = [run.first for run in runs if run.first is not None]
    return Streams(sum(run.events for run in runs), seconds, firsts, [g for run in runs for g in run.gaps],
                   [h for run in runs for h in run.held], cpu)  # fmt: skip


async def _plain(url: str, chats: int, tokens: int, worker: int) -> tuple[float, float, float]:
    """`chats` plain chats at once, after a warm-up round of as many: requests/s, the worker's CPU
    microseconds per chat, and the latency p50 in ms."""
    body = {"model": "datarobot-deployed-llm", "max_tokens": tokens,
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
        before = _cpu_s(worker)
        begun = time.perf_counter()
        latencies = await asyncio.gather(*(one(session) for _ in range(chats)))
        seconds = time.perf_counter() - begun
        cpu = _cpu_s(worker) - before
    return chats / seconds, 1e6 * cpu / chats, _ms(list(latencies), 50)


def _ms(values: list[float], q: float) -> float:
    return round(1000 * percentile(values, q), 1)


def _paced(url: str, direct: str, workers: list[int], args: argparse.Namespace) -> None:
    """Through DRUM and straight to the paced stand-in, interleaved: time to the first chunk and
    between chunks, and each chunk's time from the stand-in's write to the client's read;
    percentiles of every stream of every round pooled, their ratios, and what DRUM holds a chunk
    back (its time from write to read, less the direct path's)."""
    pooled: dict[str, list[Streams]] = {"drum": [], "direct": []}
    for i in range(args.repeats):
        for path in ("drum", "direct") if i % 2 == 0 else ("direct", "drum"):
            target, pids = (url, tuple(workers)) if path == "drum" else (direct, ())
            pooled[path].append(asyncio.run(_streams(target, args.streams, args.tokens, pids)))
    figures = {}
    for path, runs in pooled.items():
        firsts = [f for run in runs for f in run.firsts]
        gaps = [g for run in runs for g in run.gaps]
        held = [h for run in runs for h in run.held]
        figures[path] = {"first_p50_ms": _ms(firsts, 50), "first_p99_ms": _ms(firsts, 99),
                         "gap_p50_ms": _ms(gaps, 50), "gap_p99_ms": _ms(gaps, 99),
                         "held_p50_ms": _ms(held, 50), "held_p99_ms": _ms(held, 99), "held_max_ms": _ms(held, 100),
                         "chunks_per_s": round(statistics.median_high(r.events / r.seconds for r in runs))}  # fmt: skip
    ratios = {key: round(figures["drum"][key] / max(figures["direct"][key], 1e-9), 2) for key in figures["drum"]}
    cpu = [sum(per) for per in zip(*(run.worker_cpu_s for run in pooled["drum"]), strict=True)]
    added = {key: round(figures["drum"][key] - figures["direct"][key], 2) for key in figures["drum"] if "held" in key}
    print(json.dumps({"streams": args.streams, "pace_ms": args.pace_ms, "workers": args.workers, **figures,
                      "drum_over_direct": ratios, "drum_holds_a_chunk_ms": added,
                      "worker_cpu_shares": [round(c / max(sum(cpu), 1e-9), 2) for c in cpu]}))  # fmt: skip


def _stream_ceiling(url: str, worker: int, args: argparse.Namespace) -> dict:
    rates, firsts_ms, cpu_us = [], [], []
    for _ in range(args.repeats):
        run = asyncio.run(_streams(url, args.streams, args.tokens, (worker,)))
        cpu_us.append(1e6 * sum(run.worker_cpu_s) / run.events)
        rates.append(run.events / run.seconds)
        firsts_ms.append(_ms(run.firsts, 50))
    return {"streams": args.streams, "chunks_per_stream": args.tokens + 3,
            "chunks_per_s_per_worker": round(statistics.median_high(rates)), "runs": sorted(round(r) for r in rates),
            "worker_cpu_us_per_chunk": round(statistics.median_high(cpu_us)),
            "first_event_p50_ms": round(statistics.median_high(firsts_ms), 1)}  # fmt: skip


def _plain_ceiling(url: str, worker: int, args: argparse.Namespace) -> dict:
    runs = sorted(asyncio.run(_plain(url, args.streams, args.tokens, worker)) for _ in range(args.repeats))
    rate, cpu, latency = map(statistics.median_high, zip(*runs, strict=True))
    return {"chats": args.streams, "requests_per_s_per_worker": round(rate), "runs": [round(r[0]) for r in runs],
            "worker_cpu_us_per_chat": round(cpu), "latency_p50_ms": latency}  # fmt: skip


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _profile(pid: int, seconds: float, out: Path) -> subprocess.Popen:
    py_spy = Path(sys.executable).parent / "py-spy"
    argv = [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250",
            "--format", "raw", "--output", str(out), "--nonblocking"]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summary(raws: list[Path], top: int = 15) -> str:
    """Own samples per function and per source file (the last frame of each stack) from py-spy's
    collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    files: collections.Counter[str] = collections.Counter()
    total = 0
    for line in (line for raw in raws if raw.exists() for line in raw.read_text().splitlines()):
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue  # a frame's text broke the line (py-spy prints some values with newlines)
        leaf = stack.split(";")[-1]
        total += int(count)
        name, _, where = leaf.partition(" (")
        path = where.rsplit(":", 1)[0]
        own[f"{name} ({path.rsplit('/', 1)[-1]})"] += int(count)
        files["/".join(path.split("/site-packages/")[-1].split("/")[:2])] += int(count)
    total = total or 1
    by_function = "\n".join(f"{100 * n / total:5.1f} %  {name}" for name, n in own.most_common(top))
    by_file = "\n".join(f"{100 * n / total:5.1f} %  {name}" for name, n in files.most_common(top))
    return f"{total} samples; own time per function:\n{by_function}\nper package/module:\n{by_file}"


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__)
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--tokens", type=int, default=256, help="chunks per stream")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--pace-ms", help="FIRST,GAP: a stand-in at an engine's pace; compare DRUM with direct")
    p.add_argument("--workers", type=int, default=1, help="DRUM workers (the ceiling is per worker)")
    p.add_argument("--plain", action="store_true", help="plain chats instead of streams: requests/s per worker")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    upstream_service, upstream = servers.standin(work, args.pace_ms)
    os.environ["MAX_WORKERS"] = str(args.workers)
    try:
        upstream_service.wait_http(f"{upstream.base_url}/models", 60)
        service, url = servers.adapter_only(upstream, BATCH, work)
        try:
            service.wait_http(f"{url}/v1/models", 120)
            workers = memory.drum_workers(service.proc.pid)
            if args.pace_ms:
                profilers = [_profile(pid, 10, work / f"profile-{pid}.txt") for pid in workers] if args.profile else []
                _paced(url, upstream.base_url.removesuffix("/v1"), workers, args)
                for profiler in profilers:
                    profiler.wait(60)
                if profilers:
                    print(summary(sorted(work.glob("profile-*.txt"))))
                return
            [worker] = workers
            profiler = _profile(worker, 10, work / "profile.txt") if args.profile else None
            print(json.dumps((_plain_ceiling if args.plain else _stream_ceiling)(url, worker, args)))
            if profiler is not None:
                profiler.wait(60)
                print(summary([work / "profile.txt"]))
        finally:
            service.stop(sweep=True)
    finally:
        upstream_service.stop(sweep=True)


if __name__ == "__main__":
    main()
