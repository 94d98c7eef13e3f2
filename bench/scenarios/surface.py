"""python -m bench.scenarios.surface: vLLM's OpenAI surface through the deployment against vLLM
itself, driven by vLLM's own `vllm bench serve` (streamed /v1/completions by default).

One deployment; per load (IN_FLIGHTxREQUESTS), `--rounds` interleaved rounds of the same random
prompts through DRUM bare, through /directAccess/ and straight to the deployment's vLLM (the order
turned each round). Printed: each path's medians over rounds, and bare and /directAccess/ over
direct, output throughput and time to first token p50 against the targets (>= 0.97, <= 1.1):
the ratio of the medians, and the median of each round's ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from bench import servers
from bench.drivers import vllm_bench
from bench.scenarios.deployments import loads
from demo.running import RunningEnvironment

TARGETS = {"output_throughput": (0.97, "higher"), "median_ttft_ms": (1.1, "lower")}


def compared(service: RunningEnvironment, args: argparse.Namespace) -> list[dict]:
    every = {
        "bare": servers.Endpoint(f"{service.url}/v1"),
        "directAccess": servers.Endpoint(f"{service.url}/directAccess/v1"),
        "direct": servers.vllm_endpoint_of(service),
    }
    paths = {name: every[name] for name in args.paths}
    rows = []
    for in_flight, count in args.loads:
        runs: dict[str, list[dict]] = {name: [] for name in paths}
        for round_no in range(args.rounds):
            names = list(paths)[round_no % len(paths) :] + list(paths)[: round_no % len(paths)]
            for name in names:
                out = args.out / f"{in_flight}x{count}-{name}-{round_no}"
                figures = vllm_bench.serve(
                    paths[name], args.model, in_flight, count, args.input_len, args.output_len, out, route=args.route
                )
                print(json.dumps({"in_flight": in_flight, "path": name, "round": round_no} | figures), flush=True)
                runs[name].append(figures)
        medians = {
            name: {k: statistics.median(r[k] for r in results) for k in vllm_bench.FIGURES}
            for name, results in runs.items()
        }
        for name, figures in medians.items():
            rows.append({"in_flight": in_flight, "requests": count, "path": name} | figures)
        for name in [name for name in paths if name != "direct"]:
            ratios = {k: medians[name][k] / medians["direct"][k] for k in TARGETS if medians["direct"][k]}
            rows.append({"in_flight": in_flight, "requests": count, "path": f"{name}/direct"} | ratios)
            # each round's pair ran back to back: the engine moved less within a round than across
            pairs = list(zip(runs[name], runs["direct"], strict=True))
            paired = {k: statistics.median(mine[k] / theirs[k] for mine, theirs in pairs) for k in TARGETS}
            rows.append({"in_flight": in_flight, "requests": count, "path": f"{name}/direct by round"} | paired)
    return rows


def met(key: str, value: float) -> str:
    target, better = TARGETS[key]
    return "met" if (value >= target if better == "higher" else value <= target) else "MISSED"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--engine-args", default="--max-model-len 2048")
    p.add_argument("--loads", type=loads, default=loads("64x256,256x1024"), help="IN_FLIGHTxREQUESTS, comma-separated")
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--route", default="/v1/completions", help="vllm bench serve's --endpoint")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--paths",
        type=lambda text: ["direct", *(name for name in text.split(",") if name != "direct")],
        default=["direct", "bare", "directAccess"],
        help="through the deployment: bare, directAccess (direct is always run)",
    )
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for the deployment (e.g. MAX_WORKERS=4)")
    p.add_argument("--out", type=Path, default=Path(".build/bench-surface"))
    args = p.parse_args()
    with servers.deployment(args.model, args.engine_args, args.out, {}, args.env) as service:
        rows = compared(service, args)
    keys = ("completed", "failed", "request_throughput", "output_throughput", "median_ttft_ms", "p99_ttft_ms",
            "median_itl_ms")  # fmt: skip
    print(f"\n{'in flight':>9} {'path':>20} " + " ".join(f"{k:>18}" for k in keys))
    for row in rows:
        cells = []
        for k in keys:
            value = row.get(k)
            shown = "" if value is None else f"{value:.3f}" if "/" in row["path"] else f"{value:.1f}"
            cells.append(f"{shown + (' ' + met(k, value) if '/' in row['path'] and value is not None else ''):>18}")
        print(f"{row['in_flight']:>9} {row['path']:>20} " + " ".join(cells))
    (args.out / "surface.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
