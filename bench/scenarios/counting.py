"""python -m bench.scenarios.counting: what the deployment's counting (drum.observe's hooks, the
tokens counted into the series and the request's record) and its request log line add to one
request through Flask, in one process, with no server and no upstream: a view that answers at
once (not vLLM; our own overhead only), interleaved rounds, CPU time per request.

The served paths' figures (bench.relay, the stand-in ceiling) move by more than this from run to
run on a 2-core host; this isolates the hooks' cost to put beside them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def client(counted: bool, log: bool):
    import flask

    from vllm_dropin.contract import BatchSettings
    from vllm_dropin.drum import observe, telemetry
    from vllm_dropin.drum.client import ClientPool, Upstream
    from vllm_dropin.drum.model_names import ModelNames

    app = flask.Flask("counting")

    @app.route("/v1/chat/completions", methods=["POST"])
    def chat() -> dict:
        telemetry.count_usage("/v1/chat/completions", "m", {"prompt_tokens": 5, "completion_tokens": 7})
        return {"ok": 1}

    if counted:
        batch = BatchSettings(prompt_column_name="p", max_tokens=1, n=1, max_concurrent_rows=1, row_errors="fail")
        upstream = Upstream(ClientPool(list), ClientPool(list), "m", batch, "resultText", ModelNames(), request_log=log)
        observe.init_app(app, lambda: upstream)
    return app.test_client()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scenarios.counting", description=__doc__)
    p.add_argument("--requests", type=int, default=1500, help="per round and variant")
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bench-counting-"))  # as in DRUM
    log_lines = open(os.devnull, "w")  # noqa: SIM115 (the request lines go nowhere, as fast as a pipe)
    sys.stdout, printed = log_lines, sys.stdout
    variants = {"bare": client(False, False), "counted": client(True, False), "counted + log line": client(True, True)}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, variant in variants.items():
            began = time.process_time()
            for _ in range(args.requests):
                variant.post("/v1/chat/completions", json={})
            seconds[name].append(1e6 * (time.process_time() - began) / args.requests)
    sys.stdout = printed
    base = min(seconds["bare"])
    for name, values in seconds.items():
        print(f"{name:>20}: min {min(values):.1f} us, median {statistics.median(values):.1f} us per request; "
              f"added (min) {min(values) - base:+.1f} us")  # fmt: skip


if __name__ == "__main__":
    main()
