"""python -m bench.scenarios.sharing: concurrent batch requests on the deployment's one budget of
rows in flight, and what an abandoned batch costs.

One deployment. Per round, in turn (the order swapped each round): the same ROWS prompts as one
request, and split into SPLIT requests sent at once (the platform's batch jobs send a dataset's
chunks several at once). Printed: rows/s of each (the median over rounds and each round's
ratio, split against whole: target >= 0.97), when the first and last of the split requests were
answered (as a share of the split run's time: the first should not wait for the others), and
the most requests vLLM's engine held at once (its own metrics, sampled; at most the budget).
Then ABANDON times: the whole batch sent, its connection closed once vLLM generates for it, and
the seconds until vLLM's last generated token (target <= 1 s).

    python -m bench.scenarios.sharing --model DIR [--rows 8192] [--split 8] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import servers, workload
from bench.drivers.predictions import post_batch
from bench.metrics import engine_metrics
from demo.running import RunningEnvironment

TARGETS = {"split_over_whole": 0.97, "idle_s": 1.0}
QUIET_S = 3.0  # an engine whose token counter has not moved for this long is idle


def whole(url: str, rows: list[str]) -> dict:
    result = post_batch("whole", url, rows)
    return {"rows_per_s": result.rows_per_s, "seconds": result.seconds}


def split(url: str, rows: list[str], parts: int) -> dict:
    """The rows in `parts` requests sent at once: rows/s over all, and when each was answered."""
    chunks = [rows[i::parts] for i in range(parts)]
    began = time.perf_counter()

    def send(chunk: list[str]) -> float:
        post_batch("part", url, chunk)
        return time.perf_counter() - began

    with ThreadPoolExecutor(parts) as senders:
        ended = sorted(senders.map(send, chunks))
    seconds = ended[-1]
    return {"rows_per_s": len(rows) / seconds, "seconds": seconds, "first_done_share": ended[0] / seconds}


def abandoned(service: RunningEnvironment, vllm: servers.Endpoint, rows: list[str]) -> float:
    """Seconds from closing a batch's connection (once vLLM generates for it) to the last token
    vLLM generated, seen as its token counter not moving for QUIET_S (its gauges can stay stale
    with several API servers)."""
    before = engine_metrics.generated(vllm)
    url = urllib.parse.urlsplit(service.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    connection.request("POST", "/predictions/", workload.csv_of(rows), {"Content-Type": "text/csv"})
    while engine_metrics.generated(vllm) <= before:
        time.sleep(0.01)
    closed = time.perf_counter()
    connection.close()
    last, moved = engine_metrics.generated(vllm), closed
    while time.perf_counter() - moved < QUIET_S:
        now = engine_metrics.generated(vllm)
        if now != last:
            last, moved = now, time.perf_counter()
        time.sleep(0.01)
    return moved - closed


def measured(service: RunningEnvironment, args: argparse.Namespace) -> dict:
    vllm = servers.vllm_endpoint_of(service)
    rows = workload.prompts(args.rows)
    post_batch("warm-up", service.url, rows)  # the engine at its pace before the clock runs
    runs: dict[str, list[dict]] = {"whole": [], "split": []}
    for round_no in range(args.rounds):
        order = ["whole", "split"] if round_no % 2 == 0 else ["split", "whole"]
        for name in order:
            peak = engine_metrics.Peak(vllm)
            figures = whole(service.url, rows) if name == "whole" else split(service.url, rows, args.split)
            figures["engine_peak"] = peak.stop()
            print(json.dumps({"round": round_no, "run": name} | figures), flush=True)
            runs[name].append(figures)
    idle = [abandoned(service, vllm, rows) for _ in range(args.abandon)]
    print(json.dumps({"abandoned_idle_s": idle}), flush=True)
    ratios = [s["rows_per_s"] / w["rows_per_s"] for s, w in zip(runs["split"], runs["whole"], strict=True)]
    return {
        "whole_rows_per_s": statistics.median(r["rows_per_s"] for r in runs["whole"]),
        "split_rows_per_s": statistics.median(r["rows_per_s"] for r in runs["split"]),
        "split_over_whole": statistics.median(ratios),
        "split_over_whole_rounds": ratios,
        "first_done_share": statistics.median(r["first_done_share"] for r in runs["split"]),
        "engine_peak": max(r["engine_peak"] for r in runs["whole"] + runs["split"]),
        "idle_s": max(idle) if idle else float("nan"),
        "idle_s_each": idle,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--engine-args", default="--max-model-len 2048")
    p.add_argument("--rows", type=int, default=8192)
    p.add_argument("--split", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--abandon", type=int, default=2, help="abandoned batches timed")
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for the deployment (e.g. MAX_WORKERS=4)")
    p.add_argument("--out", type=Path, default=Path(".build/bench-sharing"))
    args = p.parse_args()
    with servers.deployment(
        args.model, args.engine_args, args.out, {"max_tokens": args.max_tokens}, args.env
    ) as service:
        figures = measured(service, args)
    print(f"\n{args.split} x {args.rows // args.split} rows against 1 x {args.rows}, {args.max_tokens} tokens at most")
    for key, value in figures.items():
        shown = json.dumps([round(v, 3) for v in value]) if isinstance(value, list) else f"{value:.3f}"
        verdict = ""
        if key in TARGETS:
            good = value >= TARGETS[key] if key == "split_over_whole" else value <= TARGETS[key]
            verdict = " met" if good else " MISSED"
        print(f"{key:>24} {shown}{verdict}")
    (args.out / "sharing.json").write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
