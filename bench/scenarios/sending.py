"""python -m bench.scenarios.sending: what the deployment's rows budget and the client watch add, in
one process under gevent (as in DRUM's worker), with no server and no upstream: stand-in
`complete` functions that answer at once (not vLLM; our own overhead only), interleaved rounds.

- a batch row through `run_rows` on the shared budget (its file table, lanes), against the same
  rows answered in a plain loop (the floor: the row objects alone);
- a plain chat's watch (`departure.watched` on a client socket, its connection held), per request.

The served paths' figures (bench.relay --plain, the stand-in ceiling) move by more than this from
run to run on a 2-core host; this isolates the cost to put beside them.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # as DRUM's gevent worker runs: its locks, events and threads

import argparse  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import flask  # noqa: E402

from vllm_dropin.drum import batch, departure  # noqa: E402
from vllm_dropin.drum.rows_budget import RowsBudget  # noqa: E402


def answered(prompts: list[str]) -> list[batch.RowResult]:
    return [batch.RowResult(choices=["x"]) for _ in prompts]


def per_row_us(rows: list[str], budget: RowsBudget, through_budget: bool) -> float:
    began = time.perf_counter()
    if through_budget:
        batch.run_rows(rows, answered, budget)
    else:
        for row in rows:
            answered([row])
    return (time.perf_counter() - began) / len(rows) * 1e6


class Held:
    def abort(self) -> None:
        pass


def per_watch_us(requests: int) -> float:
    client, server_side = socket.socketpair()
    held = Held()
    with flask.Flask("sending").test_request_context(environ_base={"gunicorn.socket": server_side}):
        began = time.perf_counter()
        for _ in range(requests):
            with departure.watched(), departure.held(held):
                pass
        spent = time.perf_counter() - began
    client.close()
    server_side.close()
    return spent / requests * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--budget", type=int, default=256, help="rows in flight (max_concurrent_rows)")
    p.add_argument("--requests", type=int, default=20000, help="plain chats watched")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    rows = [f"row {i}" for i in range(args.rows)]
    budget = RowsBudget(args.budget, Path(tempfile.mkdtemp()) / "batch-rows")
    figures: dict[str, list[float]] = {"floor": [], "budget": [], "watch": []}
    for _ in range(args.rounds):
        figures["floor"].append(per_row_us(rows, budget, through_budget=False))
        figures["budget"].append(per_row_us(rows, budget, through_budget=True))
        figures["watch"].append(per_watch_us(args.requests))
    shown = {name: statistics.median(values) for name, values in figures.items()}
    print(f"a batch row, plain loop (floor):      {shown['floor']:.1f} us (min {min(figures['floor']):.1f})")
    print(f"a batch row, run_rows on the budget:  {shown['budget']:.1f} us (min {min(figures['budget']):.1f})")
    print(f"  added by the budget and lanes:      {shown['budget'] - shown['floor']:.1f} us a row")
    print(f"a request watched (plain chat):       {shown['watch']:.1f} us (min {min(figures['watch']):.1f})")


if __name__ == "__main__":
    main()
