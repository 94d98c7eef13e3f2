"""Deployment benchmark: the same model served by our environment under several configurations
(one GPU, `parallelism=auto`, tensor parallel, LoRA adapters ...), each measured the same way.

Per configuration: start `start_server.sh` (runtime parameters as the platform sets them), read
the plan it logged ("parallelism: ...") and vLLM's own parallel sizes, time batch predictions
through DRUM (rows x output tokens, median of repeats), time streamed chats through DRUM at a
concurrency (time to first token, percentiles), then stop. Servers cannot be interleaved (each
is its own deployment); configurations run in the order given, and with `--rounds N` the whole
list again on fresh deployments, each config's figures then also printed as medians over rounds.

    python -m bench.scenarios.deployments --model DIR --config one-gpu='{"CUDA_VISIBLE_DEVICES": "0"}' \\
        --config auto='{}' --config tensor='{"parallelism": "tensor"}' [--rows 2048] [--output-tokens 128]

A config is JSON: keys in upper case are environment variables, others runtime parameters,
"engine_args" a list of extra engine_config.json flags, "adapters" a number of LoRA adapters
(a1, a2, ...; bench/adapters.py) put in the model folder, "row_adapters" the adapter names cycled
through the CSV's `adapter` column (set runtime parameter lora_adapter_column to "adapter"):

    python -m bench.scenarios.deployments --model DIR --chat-loads '' --config base='{}' \
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
import collections
import itertools
import json
import re
import statistics
from pathlib import Path

from bench import servers
from bench.adapters import make_adapter
from bench.drivers import chats
from bench.drivers.predictions import post_batch
from bench.metrics import engine_metrics, memory, profiles
from bench.workload import output_lengths, prompts
from demo.running import RunningEnvironment, runtime_param_env

BENCH_KEYS = ("engine_args", "adapters", "row_adapters")
SIZES = re.compile(r"(tensor_parallel_size|data_parallel_size|pipeline_parallel_size)['\"]?[:=]\s*(\d+)")
# vLLM's access log line per chat request, most naming the API server process that answered it
ANSWERED_BY = re.compile(r'(?:\((ApiServer_\d+|APIServer) pid=\d+\) )?INFO: +\S+ - "POST /v1/chat/completions')


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


def loads(text: str) -> list[tuple[int, int]]:
    """'1x32,256x1024' -> [(1, 32), (256, 1024)]: streams in flight x requests."""
    return [(int(a), int(b)) for a, b in (item.split("x") for item in text.split(",") if item)]


def chat_compared(service: RunningEnvironment, vllm: servers.Endpoint, args: argparse.Namespace) -> list[dict]:
    """Per load, streamed chats through DRUM and direct to `vllm` (the environment's own),
    interleaved `--chat-rounds` times; per path the median of each figure, and through DRUM / direct."""
    paths = {"drum": servers.Endpoint(f"{service.url}/v1")}
    if args.chat_direct:
        paths["direct"] = vllm
    kinds = {"streamed": chats.streamed_chats, **({"plain": chats.plain_chats} if args.chat_plain else {})}
    rows = []
    for (in_flight, count), (kind, run) in itertools.product(args.chat_loads, kinds.items()):
        runs: dict[str, list[dict]] = {name: [] for name in paths}
        for round_no in range(args.chat_rounds):
            for name, endpoint in paths.items():
                profile = args.profile_drum and name == "drum" and round_no == 0 and in_flight == args.chat_loads[-1][0]
                workers = memory.drum_workers(service.proc.pid) if profile else []
                profilers = profiles.record(dict.fromkeys(workers, "drum"), args.profile_drum, args.out)
                before, logged = engine_metrics.scraped(vllm), service.log_path.stat().st_size
                figures = run(endpoint, output_lengths(count, args.output_tokens, args.chat_length_spread), in_flight)
                with service.log_path.open("rb") as log:  # what this run added, not the whole log again
                    log.seek(logged)
                    figures["requests_per_api_server"] = requests_per_api_server(log.read().decode(errors="replace"))
                if name == "drum":  # the direct client's session closes its connections
                    figures["connections_per_api_server"] = chats.connections_per_process(vllm)
                runs[name].append({"kind": kind} | figures | engine_metrics.means(before, engine_metrics.scraped(vllm)))
                for profiler in profilers:
                    profiler.wait(120)
                if profile:
                    samples = profiles.summary(sorted(args.out.glob("drum-*.txt")))
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
        post_batch("warm-up", service.url, rows[:32], extra={k: v[:32] for k, v in (extra or {}).items()})
        vllm = servers.vllm_endpoint_of(service)
        before = engine_metrics.scraped(vllm)
        profiled = work / "profile-batch"
        roles = memory.vllm_processes(service.proc.pid) if args.profile_vllm else {}
        profilers = profiles.record(roles, args.profile_vllm, profiled)
        runs = [post_batch(name, service.url, rows, extra=extra) for _ in range(args.repeats)]
        for profiler in profilers:
            profiler.wait(args.profile_vllm + 120)
        if profilers:
            print(f"vLLM's processes during {name}'s batch runs:\n{profiles.by_role(profiled)}", flush=True)
        # a row's time in vLLM against the batch's
        batch_engine = engine_metrics.means(before, engine_metrics.scraped(vllm))
        best = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
        chat = chat_compared(service, vllm, args)
        sizes = dict(SIZES.findall(service.log()))
        return {
            "config": name,
            "round": round_no,
            "ready_s": round(ready, 1),
            "timings": servers.timings_line(service),
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
