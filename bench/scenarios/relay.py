"""python -m bench.scenarios.relay: our streamed-chat relay's ceiling, chunks/s through one DRUM worker.

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
import json
import os
import statistics
import tempfile
from pathlib import Path

from bench import servers
from bench.drivers.chats import Streams, plain_at_once, streams_at_once
from bench.metrics import memory, profiles
from bench.metrics.percentiles import ms
from vllm_dropin.contract import BatchSettings

BATCH = BatchSettings(prompt_column_name="promptText", max_tokens=16, n=1, temperature=0.0,
                      max_concurrent_rows=16, row_errors="fail")  # fmt: skip


def _paced(url: str, direct: str, workers: list[int], args: argparse.Namespace) -> None:
    """Through DRUM and straight to the paced stand-in, interleaved: time to the first chunk and
    between chunks, and each chunk's time from the stand-in's write to the client's read;
    percentiles of every stream of every round pooled, their ratios, and what DRUM holds a chunk
    back (its time from write to read, less the direct path's)."""
    pooled: dict[str, list[Streams]] = {"drum": [], "direct": []}
    for i in range(args.repeats):
        for path in ("drum", "direct") if i % 2 == 0 else ("direct", "drum"):
            target, pids = (url, tuple(workers)) if path == "drum" else (direct, ())
            pooled[path].append(asyncio.run(streams_at_once(target, args.streams, args.tokens, pids)))
    figures = {}
    for path, runs in pooled.items():
        firsts = [f for run in runs for f in run.firsts]
        gaps = [g for run in runs for g in run.gaps]
        held = [h for run in runs for h in run.held]
        figures[path] = {"first_p50_ms": ms(firsts, 50), "first_p99_ms": ms(firsts, 99),
                         "gap_p50_ms": ms(gaps, 50), "gap_p99_ms": ms(gaps, 99),
                         "held_p50_ms": ms(held, 50), "held_p99_ms": ms(held, 99), "held_max_ms": ms(held, 100),
                         "chunks_per_s": round(statistics.median_high(r.events / r.seconds for r in runs))}  # fmt: skip
    ratios = {key: round(figures["drum"][key] / max(figures["direct"][key], 1e-9), 2) for key in figures["drum"]}
    cpu = [sum(per) for per in zip(*(run.worker_cpu_s for run in pooled["drum"]), strict=True)]
    added = {key: round(figures["drum"][key] - figures["direct"][key], 2) for key in figures["drum"] if "held" in key}
    print(json.dumps({"streams": args.streams, "pace_ms": args.pace_ms, "workers": args.workers, **figures,
                      "drum_over_direct": ratios, "drum_holds_a_chunk_ms": added,
                      "worker_cpu_shares": [round(c / max(sum(cpu), 1e-9), 2) for c in cpu]}))  # fmt: skip


def _stream_ceiling(url: str, worker: int, args: argparse.Namespace) -> list[dict]:
    """Per route, its figures over the repeats, the routes interleaved within each repeat."""
    runs: dict[str, list] = {route: [] for route in args.routes}
    for _ in range(args.repeats):
        for route in args.routes:
            runs[route].append(
                asyncio.run(streams_at_once(url, args.streams, args.tokens, (worker,), route == "completions"))
            )
    out = []
    for route, done in runs.items():
        rates = [run.events / run.seconds for run in done]
        cpu_us = [1e6 * sum(run.worker_cpu_s) / run.events for run in done]
        first_ms = statistics.median_high(ms(run.firsts, 50) for run in done)
        out.append({"route": route, "streams": args.streams, "chunks_per_stream": args.tokens + 3,
                    "chunks_per_s_per_worker": round(statistics.median_high(rates)),
                    "runs": sorted(round(r) for r in rates),
                    "worker_cpu_us_per_chunk": round(statistics.median_high(cpu_us)),
                    "first_event_p50_ms": round(first_ms, 1)})  # fmt: skip
    return out


def _plain_ceiling(url: str, worker: int, args: argparse.Namespace) -> dict:
    runs = sorted(asyncio.run(plain_at_once(url, args.streams, args.tokens, worker)) for _ in range(args.repeats))
    rate, cpu, latency = map(statistics.median_high, zip(*runs, strict=True))
    return {"chats": args.streams, "requests_per_s_per_worker": round(rate), "runs": [round(r[0]) for r in runs],
            "worker_cpu_us_per_chat": round(cpu), "latency_p50_ms": latency}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scenarios.relay", description=__doc__)
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--tokens", type=int, default=256, help="chunks per stream")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--pace-ms", help="FIRST,GAP: a stand-in at an engine's pace; compare DRUM with direct")
    p.add_argument("--workers", type=int, default=1, help="DRUM workers (the ceiling is per worker)")
    p.add_argument("--plain", action="store_true", help="plain chats instead of streams: requests/s per worker")
    p.add_argument(
        "--routes",
        type=lambda text: text.split(","),
        default=["chat"],
        help="streamed routes, interleaved: chat (DRUM's chat hook), completions (the relay of vLLM's routes)",
    )
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
                profilers = profiles.record(dict.fromkeys(workers, "profile"), 10, work, 250) if args.profile else []
                _paced(url, upstream.base_url.removesuffix("/v1"), workers, args)
                for profiler in profilers:
                    profiler.wait(60)
                if profilers:
                    print(profiles.summary(sorted(work.glob("profile-*.txt"))))
                return
            [worker] = workers
            profilers = profiles.record({worker: "profile"}, 10, work, 250) if args.profile else []
            if args.plain:
                print(json.dumps(_plain_ceiling(url, worker, args)))
            else:
                for row in _stream_ceiling(url, worker, args):
                    print(json.dumps(row))
            for profiler in profilers:
                profiler.wait(60)
            if profilers:
                print(profiles.summary(sorted(work.glob("profile-*.txt"))))
        finally:
            service.stop(sweep=True)
    finally:
        upstream_service.stop(sweep=True)


if __name__ == "__main__":
    main()
