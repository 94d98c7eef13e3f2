"""Deployment benchmark: the same model served by our environment under several configurations
(one GPU, `parallelism=auto`, tensor parallel, LoRA adapters ...), each measured the same way.

Per configuration: start `start_server.sh` (runtime parameters as the platform sets them), read
the plan it logged ("parallelism: ...") and vLLM's own parallel sizes, time batch predictions
through DRUM (rows x output tokens, median of repeats), time streamed chats through DRUM at a
concurrency (time to first token, percentiles), then stop. Servers cannot be interleaved (each
is its own deployment); configurations run in the order given, and with `--rounds N` the whole
list again on fresh deployments, each config's figures then also printed as medians over rounds.

    python -m bench.parallel --model DIR --config one-gpu='{"CUDA_VISIBLE_DEVICES": "0"}' \\
        --config auto='{}' --config tensor='{"parallelism": "tensor"}' [--rows 2048] [--output-tokens 128]

A config is JSON: keys in upper case are environment variables, others runtime parameters,
"engine_args" a list of extra engine_config.json flags, "adapters" a number of LoRA adapters
(a1, a2, ...; bench/adapters.py) put in the model folder, "row_adapters" the adapter names cycled
through the CSV's `adapter` column (set runtime parameter lora_adapter_column to "adapter"):

    python -m bench.parallel --model DIR --chat-loads '' --config base='{}' \
        --config lora-base='{"adapters": 2}' \
        --config lora-mixed='{"adapters": 2, "lora_adapter_column": "adapter", "row_adapters": ["a1", "a2"]}'

Chats (`--chat-loads IN_FLIGHTxREQUESTS,...`): through DRUM and, with --chat-direct, straight to the
same vLLM, interleaved; --chat-plain without streaming too. Each in-flight chat has a connection of
its own, opened before the clock starts; --chat-length-spread varies their max_tokens alike on
every path. Each run also reads vLLM's own /metrics
before and after: its mean time from a request's arrival to the first token, and in its queue.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import psutil

from bench import clients, engine_metrics, memory, relay, servers, sse
from bench.adapters import make_adapter
from bench.percentiles import percentile
from bench.workload import output_lengths, prompts
from demo.running import RunningEnvironment, runtime_param_env

BENCH_KEYS = ("engine_args", "adapters", "row_adapters")
SIZES = re.compile(r"(tensor_parallel_size|data_parallel_size|pipeline_parallel_size)['\"]?[:=]\s*(\d+)")
# vLLM's access log line per chat request, most naming the API server process that answered it
ANSWERED_BY = re.compile(r'(?:\((ApiServer_\d+|APIServer) pid=\d+\) )?INFO: +\S+ - "POST /v1/chat/completions')


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
    servers share one and still split these lopsided (62/2, 245/11 on an H100 host); the split is
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
        "itl_p50_ms": round(1000 * percentile(gaps, 50), 2),
        "itl_p99_ms": round(1000 * percentile(gaps, 99), 2),
        "chunks_per_stream": round(statistics.fmean(events), 1),
    }


def requests_per_api_server(log: str) -> str:
    """Chat requests each vLLM API server answered ("263/249"), from vLLM's access log lines in
    `log`: what the split of connections means for the work. vLLM's API servers share one listening
    socket, so a burst of new connections can land on one of them (as on DRUM's workers before each
    had its own)."""
    answered = collections.Counter(ANSWERED_BY.findall(log))
    unnamed = answered.pop("", 0)  # no process prefix: one API server, or a line printed without it
    split = "/".join(str(n) for n in sorted(answered.values(), reverse=True))
    if not split:
        return str(unnamed) if unnamed else "-"
    return f"{split} +{unnamed} unnamed" if unnamed else split


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


def _py_spy(roles: dict[int, str], seconds: int, out: Path) -> list[subprocess.Popen]:
    """py-spy on each process for `seconds`: raw stacks into out/ROLE-PID.txt."""
    if roles:
        out.mkdir(parents=True, exist_ok=True)
    record = [shutil.which("py-spy") or "py-spy", "record", "--duration", str(seconds), "--rate", "100"]
    return [
        subprocess.Popen(
            [
                *record,
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--output",
                str(out / f"{role}-{pid}.txt"),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, role in roles.items()
    ]


def profiled_roles(out: Path) -> str:
    """relay.summary of the raw stacks in `out`, one per role (API servers together, ...)."""
    kinds: dict[str, list[Path]] = collections.defaultdict(list)
    for raw in sorted(out.glob("*.txt")):
        kinds[re.sub(r"[_-]?\d+$", "", raw.stem.rsplit("-", 1)[0])].append(raw)
    return "\n".join(f"{kind} ({len(raws)} processes): {relay.summary(raws)}" for kind, raws in kinds.items())


def loads(text: str) -> list[tuple[int, int]]:
    """'1x32,256x1024' -> [(1, 32), (256, 1024)]: streams in flight x requests."""
    return [(int(a), int(b)) for a, b in (item.split("x") for item in text.split(",") if item)]


def chat_compared(service: RunningEnvironment, vllm: servers.Endpoint, args: argparse.Namespace) -> list[dict]:
    """Per load, streamed chats through DRUM and direct to `vllm` (the environment's own),
    interleaved `--chat-rounds` times; per path the median of each figure, and through DRUM / direct."""
    paths = {"drum": servers.Endpoint(f"{service.url}/v1")}
    if args.chat_direct:
        paths["direct"] = vllm
    kinds = {"streamed": streamed_chats, **({"plain": plain_chats} if args.chat_plain else {})}
    rows = []
    for (in_flight, count), (kind, run) in itertools.product(args.chat_loads, kinds.items()):
        runs: dict[str, list[dict]] = {name: [] for name in paths}
        for round_no in range(args.chat_rounds):
            for name, endpoint in paths.items():
                profile = args.profile_drum and name == "drum" and round_no == 0 and in_flight == args.chat_loads[-1][0]
                workers = memory.drum_workers(service.proc.pid) if profile else []
                profilers = _py_spy(dict.fromkeys(workers, "drum"), args.profile_drum, args.out)
                before, logged = engine_metrics.scraped(vllm), service.log_path.stat().st_size
                figures = run(endpoint, output_lengths(count, args.output_tokens, args.chat_length_spread), in_flight)
                with service.log_path.open("rb") as log:  # what this run added, not the whole log again
                    log.seek(logged)
                    figures["requests_per_api_server"] = requests_per_api_server(log.read().decode(errors="replace"))
                if name == "drum":  # the direct client's session closes its connections
                    figures["connections_per_api_server"] = connections_per_process(vllm)
                runs[name].append({"kind": kind} | figures | engine_metrics.means(before, engine_metrics.scraped(vllm)))
                for profiler in profilers:
                    profiler.wait(120)
                if profile:
                    samples = relay.summary(sorted(args.out.glob("drum-*.txt")))
                    print(f"DRUM workers at {in_flight} streams in flight, {samples}")
        for name, results in runs.items():
            row: dict = {"in_flight": in_flight, "kind": kind, "path": name}
            for key in results[0]:
                values = [r[key] for r in results]
                numeric = all(isinstance(v, int | float) for v in values)
                row[key] = statistics.median(values) if numeric else values[0]
            rows.append(row)
        if args.chat_direct:
            drum, direct = rows[-2], rows[-1]
            keys = [
                k
                for k, v in drum.items()
                if isinstance(v, float) and k not in ("in_flight", "requests", "answered", "failed")
            ]
            rows.append(
                {"in_flight": in_flight, "kind": kind, "path": "DRUM/direct"}
                | {k: round(drum[k] / direct[k], 2) if direct[k] else "-" for k in keys}
            )
    return rows


def run_config(name: str, config: dict, args: argparse.Namespace, round_no: int) -> dict:
    work = args.out / f"{name}-{round_no}"
    work.mkdir(parents=True, exist_ok=True)
    engine = [*args.engine_args.split(), *config.get("engine_args", [])]
    folder = servers.model_folder(args.model, engine, work)
    for i in range(config.get("adapters", 0)):
        make_adapter(args.model, folder / "adapters" / f"a{i + 1}", seed=i)
    params = {"max_tokens": args.output_tokens, "temperature": 0.0}
    if args.concurrency:
        params["max_concurrent_rows"] = args.concurrency
    params |= {k: v for k, v in config.items() if not k.isupper() and k not in BENCH_KEYS}
    env = {
        **runtime_param_env({**params, "cache_dir": str(args.out / "cache")}),
        **{k: v for k, v in config.items() if k.isupper()},
    }
    service = RunningEnvironment(folder, work / "environment.log", env=env)
    try:
        ready = service.wait_ready(900)
        log = service.log()
        plan_line = next(
            (line.split("parallelism: ", 1)[1] for line in log.splitlines() if "parallelism: " in line), ""
        )
        rows = prompts(args.rows)
        cycle = config.get("row_adapters")
        extra = {"adapter": [cycle[i % len(cycle)] for i in range(len(rows))]} if cycle else None
        clients.post_batch("warm-up", service.url, rows[:32], extra={k: v[:32] for k, v in (extra or {}).items()})
        vllm = servers.vllm_endpoint_of(service)
        before = engine_metrics.scraped(vllm)
        profiles = work / "profile-batch"
        roles = memory.vllm_processes(service.proc.pid) if args.profile_vllm else {}
        profilers = _py_spy(roles, args.profile_vllm, profiles)
        runs = [clients.post_batch(name, service.url, rows, extra=extra) for _ in range(args.repeats)]
        for profiler in profilers:
            profiler.wait(args.profile_vllm + 120)
        if profilers:
            print(f"vLLM's processes during {name}'s batch runs:\n{profiled_roles(profiles)}", flush=True)
        # a row's time in vLLM against the batch's
        batch_engine = engine_metrics.means(before, engine_metrics.scraped(vllm))
        best = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
        chat = chat_compared(service, vllm, args)
        sizes = dict(SIZES.findall(service.log()))
        return {
            "config": name,
            "round": round_no,
            "ready_s": round(ready, 1),
            "batch_rows": args.rows,
            "chat_length_spread": args.chat_length_spread,
            "batch_answered": len(best.texts or []),
            "batch_rows_per_s": round(best.rows_per_s, 1),
            "batch_output_tokens_per_s": best.completion_tokens and round(best.completion_tokens / best.seconds),
            "batch_seconds": round(best.seconds, 3),
            "batch_vllm": batch_engine,
            "chat": chat,
            "vllm_sizes": sizes,
            "plan": plan_line,
        }
    finally:
        service.stop()


def over_rounds(results: list[dict]) -> list[dict]:
    """Per config, its batch rows/s and each load's DRUM / direct ratios, the median over rounds:
    each round is a fresh deployment, and launches of one engine differ more than the paths do."""
    groups: dict[tuple, list[dict]] = collections.defaultdict(list)
    for r in results:
        groups[(r["config"], "", "batch")].append({"batch_rows_per_s": r["batch_rows_per_s"]})
        for row in r["chat"]:
            if row["path"] == "DRUM/direct":
                groups[(r["config"], row["in_flight"], row["kind"])].append(row)
    out = []
    for (config, in_flight, kind), rows in groups.items():
        numbers = [{k: v for k, v in r.items() if isinstance(v, int | float) and k != "in_flight"} for r in rows]
        keys = dict.fromkeys(k for r in numbers for k in r)
        medians = {k: round(statistics.median(r[k] for r in numbers if k in r), 3) for k in keys}
        out.append({"config": config, "in_flight": in_flight, "kind": kind, "rounds": len(rows), **medians})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--config", action="append", required=True, help="NAME=JSON")
    p.add_argument("--engine-args", default="--max-model-len 2048")
    p.add_argument("--rows", type=int, default=2048)
    p.add_argument("--output-tokens", type=int, default=128)
    p.add_argument("--concurrency", type=int, help="batch rows in flight (default: the environment's)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--chat-loads",
        type=loads,
        default=loads("256x1024"),
        help="streamed chats, IN_FLIGHTxREQUESTS, comma-separated; '' for none (default: 256x1024)",
    )
    p.add_argument("--chat-direct", action="store_true", help="also stream the same chats direct to vLLM")
    p.add_argument("--chat-rounds", type=int, default=1, help="interleaved rounds of streamed chats (medians)")
    p.add_argument("--chat-plain", action="store_true", help="the chat loads without streaming too")
    p.add_argument(
        "--chat-length-spread",
        type=float,
        default=0.0,
        help="chats' max_tokens uniform in output-tokens x (1 +- SPREAD), the same per path and round (default 0)",
    )
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument(
        "--profile-drum", type=int, default=0, help="py-spy the DRUM workers for N s during the largest load"
    )
    p.add_argument(
        "--profile-vllm",
        type=int,
        default=0,
        help="py-spy vLLM's processes (API servers, engine core, workers) for N s from the first batch run",
    )
    p.add_argument("--out", type=Path, default=Path(".build/bench-parallel"))
    args = p.parse_args()
    configs = [(c.split("=", 1)[0], json.loads(c.split("=", 1)[1])) for c in args.config]
    results = []
    for round_no in range(1, args.rounds + 1):
        for name, config in configs:
            result = run_config(name, config, args, round_no)
            results.append(result)
            print(json.dumps(result), flush=True)
    base = results[0]["batch_rows_per_s"]
    print(f"\n{'config':>12} {'round':>5} {'rows/s':>8} {'x first':>7} {'tok/s':>8}  plan")
    for r in results:
        ratio = r["batch_rows_per_s"] / base
        tokens = r["batch_output_tokens_per_s"] or "-"
        print(f"{r['config']:>12} {r['round']:>5} {r['batch_rows_per_s']:>8} {ratio:>7.2f} {tokens:>8}  {r['plan']}")
    keys = ("requests_per_s", "ttft_p50_s", "ttft_p99_s", "itl_p50_ms", "latency_p50_s", "vllm_ttft_mean_s", "failed")
    print(f"\n{'config':>12} {'in flight':>9} {'kind':>8} {'path':>12} " + " ".join(f"{k:>16}" for k in keys))
    for r in results:
        for row in r["chat"]:
            cells = " ".join(f"{row.get(k, ''):>16}" for k in keys)
            print(f"{r['config']:>12} {row['in_flight']:>9} {row['kind']:>8} {row['path']:>12} {cells}")
    if args.rounds > 1:
        print("\nmedians over rounds (batch rows/s; chats DRUM / direct)")
        for row in over_rounds(results):
            print("  " + ", ".join(f"{k} {v}" for k, v in row.items() if v != ""))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parallel.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
