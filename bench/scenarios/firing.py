"""How fast one DRUM worker puts a batch's rows on the wire: the firing window.

Our adapter in front of `bench.standin` (**not vLLM**) that holds every answer `--hold-ms` (an
engine decoding), so no answer comes back while rows are still going out, and records when each
request arrived. The window from the first arrival to the last is the time the adapter takes to
send a batch's rows; vLLM's engine cannot start a row before it arrives, so on a GPU this window
adds to a batch's time. Per `--rows-per-request` K (vLLM's batch endpoint carries K rows to a request; "unset":
the environment's default, which sends a batch that fits in flight in a few requests):

    python -m bench.scenarios.firing --rows 512 --hold-ms 1000 --rows-per-request 1,8,unset --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import requests

from bench import servers
from bench.drivers.predictions import post_batch
from bench.workload import prompts
from vllm_dropin.contract import BatchSettings


def window(arrivals: list[list[float]]) -> tuple[float, int, int]:
    """Seconds from the first request's arrival to the last one's, requests, rows."""
    times = [came for came, _ in arrivals]
    return max(times) - min(times), len(arrivals), sum(rows for _, rows in arrivals)


def measure(upstream: servers.Endpoint, rows: int, per_request: int | None, repeats: int, work: Path) -> dict:
    """A fresh adapter with every row in flight at once; a warm-up batch first (it opens the
    connections), then `repeats` batches, each with the window its rows took to arrive."""
    batch = BatchSettings(
        prompt_column_name="promptText",
        max_tokens=8,
        n=1,
        max_concurrent_rows=rows,
        row_errors="fail",
        temperature=0.0,
        rows_per_request=per_request,
    )
    service, url = servers.adapter_only(upstream, batch, work)
    arrivals_url = upstream.base_url.removesuffix("/v1") + "/arrivals"
    try:
        service.wait_http(f"{url}/v1/models", 120)
        asked = prompts(rows)
        post_batch("warm-up", url, asked)
        windows, batches = [], []
        for _ in range(repeats):
            requests.get(arrivals_url, timeout=30)  # forget what came before
            result = post_batch("batch", url, asked)
            if result.texts != asked:
                raise RuntimeError("the stand-in's echoes came back misaligned")
            seconds, sent, arrived = window(requests.get(arrivals_url, timeout=30).json())
            if arrived != rows:
                raise RuntimeError(f"{arrived} of {rows} rows reached the stand-in")
            windows.append(seconds)
            batches.append(result.seconds)
        spread = statistics.median(windows)
        return {
            "rows_per_request": per_request or f"unset: {batch.rows_to_a_request(rows)}",
            "requests": sent,
            "window_s": round(spread, 3),
            "rows_on_the_wire_per_s": round(rows / spread) if spread else float("inf"),
            "batch_s": round(statistics.median(batches), 3),
        }
    finally:
        service.stop()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scenarios.firing", description=__doc__)
    p.add_argument("--rows", type=int, default=512)
    p.add_argument("--hold-ms", type=float, default=1000, help="the stand-in holds each answer this long")
    p.add_argument("--rows-per-request", default="1,8,unset", help="comma-separated K values, or unset")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path(".build/bench-firing"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    upstream_service, upstream = servers.standin(args.out, hold_ms=args.hold_ms)
    try:
        upstream_service.wait_http(f"{upstream.base_url}/models", 60)
        results = [
            measure(upstream, args.rows, None if k == "unset" else int(k), args.repeats, args.out)
            for k in args.rows_per_request.split(",")
        ]
    finally:
        upstream_service.stop(sweep=True)
    print(f"{args.rows} rows, all in flight, stand-in holding each answer {args.hold_ms:g} ms (not vLLM); medians")
    print(f"{'rows/request':>12} {'requests':>8} {'window s':>9} {'rows/s sent':>11} {'batch s':>8}")
    for r in results:
        print(
            f"{r['rows_per_request']:>12} {r['requests']:>8} {r['window_s']:>9} "
            f"{r['rows_on_the_wire_per_s']:>11} {r['batch_s']:>8}"
        )


if __name__ == "__main__":
    main()
