"""python -m bench.scenarios.store_adapters: LoRA adapters from lora_adapters_uri against shipped ones.

One deployment with 2 adapters shipped in the model folder (a1, a2) and STORE adapters (s1, ...)
in an S3-compatible store (moto's server on loopback when moto is installed, else a local folder:
then no fetch is measured), all rank RANK on q_proj/v_proj (bench/adapters.py). Printed:

- first use: a chat naming a store adapter no request named before (fetch, check, load into vLLM,
  answer), the same chat again, and the same chat to a shipped adapter; and the loader's own split
  (fetched and checked / in vLLM) from its event line;
- steady state: ROUNDS rounds of a ROWS-row batch whose adapter column cycles over two store
  adapters, and over the two shipped ones, the order swapped each round; rows/s and each round's
  ratio store / shipped (target: the same within spread).

    python -m bench.scenarios.store_adapters --model DIR [--rows 512] [--max-tokens 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import statistics
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import openai

from bench import servers, stores, workload
from bench.adapters import make_adapter
from bench.drivers.predictions import post_batch
from demo.running import RunningEnvironment, runtime_param_env

LOADED = re.compile(
    r"LoRA adapter loaded: (\S+) \(rank \d+\) from .*: fetched and checked in ([\d.]+) s, in vLLM after ([\d.]+) s"
)


@contextmanager
def adapter_store(folder: Path, work: Path):
    """The adapters under `folder` as a store: {runtime parameters}. moto's S3 server when moto is
    installed (a fetch like any S3 store's), else the folder itself (served in place)."""
    if importlib.util.find_spec("moto") is None:
        yield {"lora_adapters_uri": str(folder)}
        return
    with stores.s3_server(work, "adapters") as (endpoint, client):
        stores.upload(client, folder, "adapters", "team")
        yield {"lora_adapters_uri": "s3://adapters/team", "artifact_endpoint_url": endpoint,
               "artifact_credential": stores.KEYS}  # fmt: skip


def timed_chat(client: openai.OpenAI, model: str, prompt: str, max_tokens: int) -> float:
    began = time.perf_counter()
    client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0.0
    )
    return time.perf_counter() - began


def first_use(service: RunningEnvironment, names: list[str], args: argparse.Namespace) -> dict:
    client = openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0, timeout=600)
    prompt = workload.prompts(1)[0]
    timed_chat(client, "a1", prompt, args.max_tokens)  # the engine warm before the clock runs
    runs = []
    for name in names:
        runs.append(
            {
                "adapter": name,
                "first_s": timed_chat(client, name, prompt, args.max_tokens),
                "again_s": timed_chat(client, name, prompt, args.max_tokens),
                "shipped_s": timed_chat(client, "a1", prompt, args.max_tokens),
            }
        )
    split = {m[1]: (float(m[2]), float(m[3])) for m in LOADED.finditer(service.log())}
    for run in runs:
        run["fetched_and_checked_s"], run["loaded_s"] = split.get(run["adapter"], (None, None))
        print(json.dumps(run), flush=True)
    return {key: statistics.median(r[key] for r in runs) for key in ("first_s", "again_s", "shipped_s")} | {
        "loader_fetched_and_checked_s": [r["fetched_and_checked_s"] for r in runs],
        "loader_in_vllm_s": [r["loaded_s"] for r in runs],
    }


def steady(service: RunningEnvironment, args: argparse.Namespace) -> dict:
    rows = workload.prompts(args.rows)
    cycles = {"store": ["s1", "s2"], "shipped": ["a1", "a2"]}

    def run(kind: str) -> float:
        column = {"adapter": [cycles[kind][i % 2] for i in range(len(rows))]}
        return post_batch(kind, service.url, rows, extra=column).rows_per_s

    run("store"), run("shipped")  # warm-up: every adapter loaded, the engine at its pace
    runs: dict[str, list[float]] = {"store": [], "shipped": []}
    for round_no in range(args.rounds):
        for kind in ("store", "shipped") if round_no % 2 == 0 else ("shipped", "store"):
            runs[kind].append(run(kind))
            print(json.dumps({"round": round_no, "kind": kind, "rows_per_s": runs[kind][-1]}), flush=True)
    ratios = [s / h for s, h in zip(runs["store"], runs["shipped"], strict=True)]
    return {
        "store_rows_per_s": statistics.median(runs["store"]),
        "shipped_rows_per_s": statistics.median(runs["shipped"]),
        "store_over_shipped": statistics.median(ratios),
        "store_over_shipped_rounds": ratios,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--engine-args", default="--max-model-len 2048")
    p.add_argument("--store", type=int, default=4, help="adapters in the store (s1, s2, ...)")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--rows", type=int, default=512)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for the deployment (e.g. MAX_WORKERS=4)")
    p.add_argument("--out", type=Path, default=Path(".build/bench-store-adapters"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    folder = servers.model_folder(args.model, args.engine_args.split(), args.out)
    for i in (1, 2):
        make_adapter(args.model, folder / "adapters" / f"a{i}", rank=args.rank, seed=i)
    store_folder = args.out / "store"
    names = [f"s{i}" for i in range(1, args.store + 1)]
    for i, name in enumerate(names):
        make_adapter(args.model, store_folder / name, rank=args.rank, seed=100 + i)
    with ExitStack() as stack:
        store = stack.enter_context(adapter_store(store_folder, args.out))
        params = {"max_tokens": args.max_tokens, "temperature": 0.0, "lora_adapter_column": "adapter", **store}
        env = runtime_param_env({**params, "cache_dir": str(args.out / "cache")})
        env |= dict(item.split("=", 1) for item in args.env)
        service = RunningEnvironment(folder, args.out / "environment.log", env=env)
        stack.callback(service.stop)
        service.wait_ready(900)
        # s1 and s2 are the steady state's: their first use is measured on s3, s4, ...
        figures = {"store": store["lora_adapters_uri"]} | first_use(service, names[2:] or names, args)
        figures |= steady(service, args)
    print(f"\nrank-{args.rank} adapters, {args.max_tokens} tokens at most")
    for key, value in figures.items():
        shown = json.dumps([v if v is None else round(v, 3) for v in value]) if isinstance(value, list) else value
        print(f"{key:>30} {shown if isinstance(shown, str) else f'{shown:.3f}'}")
    (args.out / "store_adapters.json").write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
