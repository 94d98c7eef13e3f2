"""python -m bench.scenarios.streaming: a model in an S3-compatible store, fetched into cache_dir then
loaded, against its weights streamed by vLLM from the store (stream_weights, the Run:ai model
streamer): our entrypoint's time to ready, and its own account of the phases.

The store is nanio or moto's server on loopback (`--server`; it is the limit of either path's
rate: compare the two, not with another store; moto serves ranged reads badly, bench/README #47).
One untimed start of each first (vLLM's compile cache warm for both: the model's path differs
between them; with `--enforce-eager` there is none, and `--warm-up fetched` warms the host with one);
then ROUNDS rounds of both in turn, the order swapped each round, each with the fetched files
removed from cache_dir, so every fetch is whole.

    python -m bench.scenarios.streaming --model DIR [--rounds 2] [--server moto] [--engine-args "..."]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

from bench import servers, stores
from demo.running import RunningEnvironment, runtime_param_env


def model_folder(work: Path, engine_args: str) -> Path:
    """A custom-model folder holding only the engine flags: the model comes from artifact_uri."""
    folder = work / "model-folder"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "engine_config.json").write_text(json.dumps({"args": engine_args.split()}))
    return folder


def started(folder: Path, params: dict, env: list[str], work: Path, name: str) -> dict:
    variables = runtime_param_env(params) | dict(item.split("=", 1) for item in env)
    service = RunningEnvironment(folder, work / f"{name}.log", env=variables)
    try:
        ready = service.wait_ready(900)
        return {"path": name, "ready_s": round(ready, 1), "timings": servers.timings_line(service)}
    finally:
        service.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--engine-args", default="--max-model-len 2048")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--server", choices=sorted(stores.SERVERS), default="nanio", help="the S3-compatible store")
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for the deployment")
    p.add_argument("--warm-up", choices=("both", "fetched"), default="both", help="the untimed starts first")
    p.add_argument("--out", type=Path, default=Path(".build/bench-streaming"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    folder, cache = model_folder(args.out, args.engine_args), args.out / "cache"
    with stores.s3_server(args.out, "models", args.server) as (endpoint, client):
        sent = stores.upload(client, args.model, "models", "model")
        print(f"{sent / 1e9:.2f} GB in {args.server}'s S3 server", flush=True)
        store = {"artifact_uri": "s3://models/model", "artifact_endpoint_url": endpoint,
                 "artifact_credential": stores.KEYS, "cache_dir": str(cache)}  # fmt: skip
        ways = {
            "fetched then loaded": {**store, "stream_weights": False},
            "streamed": {**store, "stream_weights": True},
        }
        for name in list(ways) if args.warm_up == "both" else ["fetched then loaded"]:
            print(json.dumps({"warm-up": started(folder, ways[name], args.env, args.out, name)}), flush=True)
        runs: dict[str, list[dict]] = {name: [] for name in ways}
        for round_no in range(args.rounds):
            for name in list(ways) if round_no % 2 == 0 else list(ways)[::-1]:
                shutil.rmtree(cache / "artifacts", ignore_errors=True)
                runs[name].append(started(folder, ways[name], args.env, args.out, name))
                print(json.dumps({"round": round_no, **runs[name][-1]}), flush=True)
    medians = {name: statistics.median(r["ready_s"] for r in done) for name, done in runs.items()}
    ratios = [s["ready_s"] / f["ready_s"] for s, f in zip(runs["streamed"], runs["fetched then loaded"], strict=True)]
    figures = {"ready_s": medians, "streamed_over_fetched": statistics.median(ratios), "rounds": ratios, "runs": runs}
    print(f"\ntime to ready (median of {args.rounds}): {json.dumps(medians)}")
    print(f"streamed / fetched then loaded: {figures['streamed_over_fetched']:.3f} (rounds {json.dumps(ratios)})")
    (args.out / "streaming.json").write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
