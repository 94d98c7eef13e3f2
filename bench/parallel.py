"""Deployment benchmark: the same model served by our environment under several configurations
(one GPU, `parallelism=auto`, tensor parallel, LoRA adapters ...), each measured the same way.

Per configuration: start `start_server.sh` (runtime parameters as the platform sets them), read
the plan it logged ("parallelism: ...") and vLLM's own parallel sizes, time batch predictions
through DRUM (rows x output tokens, median of repeats), time streamed chats through DRUM at a
concurrency (time to first token, percentiles), then stop. Servers cannot be interleaved (each
is its own deployment); configurations run in the order given, and a second round may follow.

    python -m bench.parallel --model DIR --config one-gpu='{"CUDA_VISIBLE_DEVICES": "0"}' \\
        --config auto='{}' --config tensor='{"parallelism": "tensor"}' [--rows 2048] [--output-tokens 128]

A config is JSON: keys in upper case are environment variables, others runtime parameters,
"engine_args" a list of extra engine_config.json flags, "adapters" a number of LoRA adapters
(a1, a2, ...; bench/adapters.py) put in the model folder, "row_adapters" the adapter names cycled
through the CSV's `adapter` column (set runtime parameter lora_adapter_column to "adapter"):

    python -m bench.parallel --model DIR --chat-requests 0 --config base='{}' \
        --config lora-base='{"adapters": 2}' \
        --config lora-mixed='{"adapters": 2, "lora_adapter_column": "adapter", "row_adapters": ["a1", "a2"]}'
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

import openai

from bench import clients, servers
from bench.adapters import make_adapter
from bench.workload import prompts
from demo.running import RunningEnvironment, runtime_param_env

BENCH_KEYS = ("engine_args", "adapters", "row_adapters")
SIZES = re.compile(r"(tensor_parallel_size|data_parallel_size|pipeline_parallel_size)['\"]?[:=]\s*(\d+)")


def streamed_ttft(url: str, count: int, concurrency: int, max_tokens: int) -> dict:
    """`count` streamed chats through DRUM, `concurrency` at a time: TTFT percentiles and throughput."""
    ttfts: list[float] = []
    endpoint = servers.Endpoint(f"{url}/v1")
    asked = prompts(count)

    failures: list[str] = []

    async def one(client: openai.AsyncOpenAI, i: int) -> int:
        sent = time.perf_counter()
        chunks = 0
        try:
            stream = await client.chat.completions.create(
                model="datarobot-deployed-llm",
                messages=[{"role": "user", "content": asked[i]}],
                max_tokens=max_tokens,
                temperature=0.0,
                stream=True,
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    if chunks == 0:
                        ttfts.append(time.perf_counter() - sent)
                    chunks += 1
        except openai.OpenAIError as exc:  # counted, not fatal: the figures say how many failed
            failures.append(f"{type(exc).__name__}: {exc.__cause__!r}"[:200])
        return chunks

    started = time.perf_counter()
    answered = clients._run_workers(endpoint, count, concurrency, one)
    seconds = time.perf_counter() - started
    cuts = statistics.quantiles(ttfts, n=100) if len(ttfts) > 1 else ttfts * 99
    return {
        "requests": count,
        "answered": sum(1 for a in answered if a),
        "failed": len(failures),
        "first_failures": sorted(set(failures))[:3],
        "requests_per_s": round(count / seconds, 1),
        "ttft_p50_s": round(cuts[49], 3),
        "ttft_p99_s": round(cuts[98], 3),
    }


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
        runs = [clients.post_batch(name, service.url, rows, extra=extra) for _ in range(args.repeats)]
        best = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
        chat = (
            streamed_ttft(service.url, args.chat_requests, args.chat_concurrency, args.output_tokens)
            if args.chat_requests
            else {"requests_per_s": "-", "ttft_p50_s": "-", "ttft_p99_s": "-"}
        )
        sizes = dict(SIZES.findall(service.log()))
        return {
            "config": name,
            "round": round_no,
            "ready_s": round(ready, 1),
            "batch_rows": args.rows,
            "batch_answered": len(best.texts or []),
            "batch_rows_per_s": round(best.rows_per_s, 1),
            **{f"chat_{k}": v for k, v in chat.items()},
            "vllm_sizes": sizes,
            "plan": plan_line,
        }
    finally:
        service.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--config", action="append", required=True, help="NAME=JSON")
    p.add_argument("--engine-args", default="--max-model-len 2048")
    p.add_argument("--rows", type=int, default=2048)
    p.add_argument("--output-tokens", type=int, default=128)
    p.add_argument("--concurrency", type=int, help="batch rows in flight (default: the environment's, 256 a replica)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chat-requests", type=int, default=1024)
    p.add_argument("--chat-concurrency", type=int, default=256)
    p.add_argument("--rounds", type=int, default=1)
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
    head = ("config", "round", "rows/s", "x first", "chat req/s", "TTFT p50", "TTFT p99")
    print("\n" + " ".join(f"{h:>10}" for h in head) + "  plan")
    for r in results:
        cells = (r["config"], r["round"], r["batch_rows_per_s"], f"{r['batch_rows_per_s'] / base:.2f}")
        cells += (r["chat_requests_per_s"], r["chat_ttft_p50_s"], r["chat_ttft_p99_s"])
        print(" ".join(f"{c:>10}" for c in cells) + f"  {r['plan']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parallel.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
