"""The paths compared (`python -m bench`): every path on the same model and prompts, figures and
ratios side by side.

Paths: our batch path (CSV -> DRUM /predictions -> our adapter -> vLLM); a direct concurrent
openai client on the same vLLM; DRUM's built-in `--gpu-predictor vllm` (the platform's stock
path); offline `vllm.LLM.chat` (the engine's limit); our adapter in front of an instant
stand-in upstream (our own ceiling, labelled as such); 64 concurrent chats through DRUM vs
direct; time to ready of our entrypoint vs bare `vllm serve`, cold and with a warm cache.
Every path decodes greedily with the same max_tokens; rows are checked against the direct
client's answers. Writes OUT/results.json and OUT/results.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import report, servers
from bench.drivers import openai_client
from bench.drivers.predictions import post_batch
from bench.metrics import engine_metrics, memory
from bench.workload import Result, first_difference, mismatches, prompts
from demo.running import REPO
from vllm_dropin.contract import BatchSettings

PARTS = ("startup", "batch", "chat", "stock", "offline", "standin")
CPU_ENGINE_ARGS = "--dtype float32 --max-model-len 1024"
MODEL_NAME = "datarobot-deployed-llm"  # the alias our environment always serves


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--model", type=Path, help="model folder (default: the offline demo model, built if missing)")
    p.add_argument(
        "--engine-args", default=CPU_ENGINE_ARGS, help=f"vLLM flags for every path (default: {CPU_ENGINE_ARGS!r})"
    )
    p.add_argument(
        "--server-args",
        default="",
        help="vLLM flags for the served paths only, such as --api-server-count (offline LLM takes no front end)",
    )
    p.add_argument("--sizes", type=ints, default=[256, 1024], help="batch sizes in rows (default: 256,1024)")
    p.add_argument("--output-tokens", type=int, default=32, help="max_tokens per row, greedy (default: 32)")
    p.add_argument("--concurrency", type=int, default=256, help="rows in flight, ours and direct (default: 256)")
    p.add_argument(
        "--rows-per-request", type=int, help="our batch path's rows_per_request (default: unset, the environment's)"
    )
    p.add_argument(
        "--chat-requests", type=ints, default=[64], help="concurrent chat requests, one run per number (default: 64)"
    )
    p.add_argument("--repeats", type=int, default=5, help="runs per figure; the median is reported (default: 5)")
    p.add_argument(
        "--launches",
        type=int,
        default=1,
        help="batch, chat and offline parts this many times, each on a fresh server and a fresh LLM, in turn;\n"
        "ratios are the median over launches of each launch's own ratio (an engine's speed moves from one\n"
        "launch to the next more than the paths differ). Launches after the first start with a warm cache,\n"
        "as does the first when the startup part is not run and an earlier run left one in --out.",
    )
    p.add_argument(
        "--stock-max-rows", type=int, default=1024, help="largest size sent to the stock path (default: 1024)"
    )
    p.add_argument("--standin-sizes", type=ints, default=[1000, 10000], help="rows for the stand-in ceiling")
    p.add_argument("--memory-rows", type=ints, default=[1000, 100000], help="small,large CSV for adapter peak RSS")
    p.add_argument(
        "--tabular", action="store_true", help="stand-in runs with a prompt template, labels and row details on"
    )
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    p.add_argument("--out", type=Path, default=REPO / ".build" / "bench", help="results folder (default: .build/bench)")
    args = p.parse_args(argv)
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        p.error(f"unknown part(s) {','.join(sorted(unknown))}; choose from {','.join(PARTS)}")
    return args


def median_runs(runs: list[Callable[[], Result]], repeats: int) -> list[Result]:
    """Each run `repeats` times, interleaved (a, b, a, b ...) so drift on a busy host hits all
    alike; the median of each."""
    results: list[list[Result]] = [[] for _ in runs]
    for _ in range(repeats):
        for mine, run in zip(results, runs, strict=True):
            mine.append(run())
    return [sorted(mine, key=lambda r: r.seconds)[len(mine) // 2] for mine in results]


def fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.parts = set(args.parts.split(","))
        self.work = args.out
        self.engine_args = shlex.split(args.engine_args)
        self.server_args = shlex.split(args.server_args)
        self.model = args.model or self._demo_model()
        self.folder = servers.model_folder(self.model, [*self.engine_args, *self.server_args], self.work)
        self.results: dict = {
            "meta": {
                "model": str(self.model),
                "engine_args": self.engine_args,
                "server_args": self.server_args,
                "output_tokens": args.output_tokens,
                "concurrency": args.concurrency,
                "rows_per_request": args.rows_per_request,
                "repeats": args.repeats,
                "launches": args.launches,
                "host": f"{os.cpu_count()} CPUs",
            },
            "startup": {},
            "startup_phases": {},
            "batch": [],
            "chat": [],
            "standin": [],
            "memory": {},
        }
        self.reference: dict[int, Result] = {}  # direct client's answers per size, this launch's
        self.launch = 1

    def _demo_model(self) -> Path:
        from demo.tiny_model import build_model

        model = REPO / ".build" / "demo" / "tiny-model"
        if not (model / "config.json").exists():
            build_model(model)
        return model

    def params(self, **extra: object) -> dict:
        return {"max_tokens": self.args.output_tokens, "temperature": 0.0, **extra}

    def say(self, text: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)

    # --- time to ready -------------------------------------------------------------------
    def bare_ready(self, cache: Path) -> float:
        service, endpoint = servers.bare_vllm(self.model, [*self.engine_args, *self.server_args], self.work, cache)
        try:
            return service.wait_http(f"{endpoint.base_url}/models")
        finally:
            service.stop(sweep=True)

    def startup_bare(self) -> None:
        cache = fresh(self.work / "cache-bare")
        for state in ("cold", "warm"):
            self.say(f"bare vllm serve, {state} cache ...")
            self.results["startup"][f"bare vllm serve ({state})"] = ready = self.bare_ready(cache)
            self.say(f"bare vllm serve ready in {ready:.1f} s")

    # --- our environment, the direct client on the same vLLM ---------------------------------
    def with_our_environment(self) -> None:
        cold = self.launch == 1 and "startup" in self.parts  # else a cache left by an earlier run is kept
        cache = fresh(self.work / "cache-ours") if cold else self.work / "cache-ours"
        given = {"rows_per_request": self.args.rows_per_request} if self.args.rows_per_request else {}
        params = self.params(max_concurrent_rows=self.args.concurrency, **given)
        self.say(f"our environment, launch {self.launch}, {'cold' if cold else 'warm'} cache ...")
        env = servers.our_environment(self.folder, params, self.work, cache)
        try:
            ready = env.wait_ready()
            if cold:
                self.results["startup"]["our entrypoint (cold)"] = ready
                self.results["startup_phases"]["our entrypoint (cold)"] = line = servers.timings_line(env)
                self.say(line)
            direct = servers.vllm_endpoint_of(env)
            if "batch" in self.parts:
                self.batch(env, direct)
            if "chat" in self.parts:
                self.chat(env, direct)
        finally:
            env.stop()
        if "startup" in self.parts and cold:
            self.say("our environment, warm cache ...")
            env = servers.our_environment(self.folder, params, self.work, cache)
            try:
                self.results["startup"]["our entrypoint (warm)"] = env.wait_ready()
                self.results["startup_phases"]["our entrypoint (warm)"] = line = servers.timings_line(env)
                self.say(line)
            finally:
                env.stop()

    def direct(self, endpoint: servers.Endpoint, rows: list[str]) -> Result:
        a = self.args
        return openai_client.direct_batch("direct client", endpoint, MODEL_NAME, rows, a.output_tokens, a.concurrency)

    def batch(self, env, direct: servers.Endpoint) -> None:
        warm = prompts(32)
        post_batch("warm-up", env.url, warm)
        self.direct(direct, warm)
        for size in self.args.sizes:
            rows = prompts(size)
            self.say(f"batch {size} rows: direct client and our batch path, {self.args.repeats} runs each ...")
            reference, ours = median_runs(
                [
                    engine_metrics.observed(lambda rows=rows: self.direct(direct, rows), direct),
                    engine_metrics.observed(lambda rows=rows: post_batch("our batch path", env.url, rows), direct),
                ],
                self.args.repeats,
            )
            self.reference[size] = reference
            self.add_batch(reference)
            self.add_batch(ours)

    def add_batch(self, result: Result) -> None:
        reference = self.reference.get(result.size)
        if reference is not None and result is not reference:
            result.extra["rows_differing_from_direct"] = mismatches(result, reference)
            difference = first_difference(result, reference)
            if difference:
                self.results.setdefault("differences", {})[f"{result.name}, {result.size} rows"] = difference
        self.results["batch"].append({**result.summary(), "launch": self.launch})
        self.say(json.dumps(self.results["batch"][-1]))  # what a run cut short by a time limit still tells

    def chat(self, env, direct: servers.Endpoint) -> None:
        through_drum = servers.Endpoint(f"{env.url}/v1", "unused")
        for count, stream in ((count, stream) for count in self.args.chat_requests for stream in (False, True)):
            chats = prompts(count)
            kind = "streamed" if stream else "plain"
            self.say(f"{count} concurrent {kind} chats: direct and through DRUM ...")
            runs = [
                lambda n=name, e=endpoint, s=stream, c=chats: openai_client.chat_burst(
                    n, e, MODEL_NAME, c, self.args.output_tokens, s
                )
                for name, endpoint in ((f"chat {kind}, direct", direct), (f"chat {kind}, through DRUM", through_drum))
            ]
            done = [{**r.summary(), "launch": self.launch} for r in median_runs(runs, self.args.repeats)]
            self.results["chat"] += done
            self.say(json.dumps(done))

    # --- the platform's stock path --------------------------------------------------------------
    def stock(self) -> None:
        # DRUM's predictor turns temperature 0 into "unset" (vLLM's default, 1.0); 1e-6 is greedy for vLLM.
        params = self.params(temperature=1e-6)
        self.say("stock DRUM --gpu-predictor vllm ...")
        service, url = servers.stock_drum(self.folder, params, self.work, self.work / "cache-bare")
        try:
            self.results["startup"]["stock DRUM vllm (warm)"] = service.wait_http(f"{url}/v1/models")
            post_batch("warm-up", url, prompts(8))
            for size in self.args.sizes:
                if size > self.args.stock_max_rows:
                    continue
                self.say(f"stock path, {size} rows (one at a time) ...")
                self.add_batch(post_batch("stock DRUM vllm", url, prompts(size)))
        finally:
            service.stop(sweep=True)

    # --- the engine's limit -----------------------------------------------------------------------
    def offline(self) -> None:
        self.say(f"offline LLM.chat, launch {self.launch} ...")
        spec = self.work / "offline-spec.json"
        out = self.work / "offline-out.json"
        spec.write_text(
            json.dumps(
                {
                    "model": str(self.model),
                    "engine_args": self.engine_args,
                    "max_tokens": self.args.output_tokens,
                    "sizes": self.args.sizes,
                    "repeats": self.args.repeats,
                }
            )
        )
        env = servers.cpu_env(self.work / "cache-bare")
        with open(self.work / "offline.log", "w") as log:
            subprocess.run(
                [sys.executable, "-m", "bench.scenarios.offline", str(spec), str(out)],
                env=env,
                stdout=log,
                stderr=log,
                check=True,
            )
        for run in json.loads(out.read_text()):
            self.add_batch(
                Result("offline LLM.chat", run["size"], run["seconds"], run["texts"], run["completion_tokens"])
            )

    # --- our adapter's own ceiling ----------------------------------------------------------------
    def standin(self) -> None:
        upstream_service, upstream = servers.standin(self.work)
        try:
            upstream_service.wait_http(f"{upstream.base_url}/models", 60)
            self.say("our adapter in front of the instant stand-in upstream ...")
            for size in self.args.standin_sizes:
                self.standin_run(upstream, size, keep=True)
            small, large = self.args.memory_rows
            self.results["memory"] = {
                f"{rows} rows": self.standin_run(upstream, rows, keep=False) for rows in (small, large)
            }
        finally:
            upstream_service.stop(sweep=True)

    def standin_run(self, upstream: servers.Endpoint, size: int, keep: bool) -> dict:
        """A fresh adapter per run, so its peak RSS belongs to this run alone."""
        batch = BatchSettings(
            prompt_column_name="promptText",
            # --tabular: every batch feature on (the stand-in echoes the rendered prompt, ignores the labels)
            prompt_template="{promptText}" if self.args.tabular else None,
            response_choices=["a", "b"] if self.args.tabular else None,
            row_details=self.args.tabular,
            max_tokens=self.args.output_tokens,
            n=1,
            temperature=0.0,
            max_concurrent_rows=self.args.concurrency,
            row_errors="fail",
            rows_per_request=self.args.rows_per_request,
        )
        service, url = servers.adapter_only(upstream, batch, self.work)
        try:
            service.wait_http(f"{url}/v1/models", 120)
            [worker] = memory.drum_workers(service.proc.pid)
            before = memory.peak_rss_mib(worker)
            rows = prompts(size)
            post_batch("warm-up", url, rows[:32])
            result = post_batch("our adapter, instant stand-in upstream", url, rows)
            echoed = sum(text != row for text, row in zip(result.texts, rows, strict=True))
            result.extra["rows_not_echoed"] = echoed
            figures = {
                "peak_rss_mib": round(memory.peak_rss_mib(worker), 1),
                "rss_before_mib": round(before, 1),
                "csv_mib": round(len("\n".join(rows)) / 2**20, 2),
                "rows_not_echoed": echoed,
            }
            if keep:
                self.results["standin"].append(result.summary())
            return figures
        finally:
            service.stop(sweep=True)

    def run(self) -> dict:
        self.work.mkdir(parents=True, exist_ok=True)
        if "startup" in self.parts:
            self.startup_bare()
        for launch in range(1, self.args.launches + 1):
            self.launch = launch
            if self.parts & {"startup", "batch", "chat"}:
                self.with_our_environment()
            if "offline" in self.parts:
                self.offline()
            if launch < self.args.launches:  # what a run cut short by a time limit still tells
                so_far = {**self.results, "ratios": report.ratios(self.results)}
                self.say(f"so far, {launch} launch(es):\n{report.text(so_far)}")
        if "stock" in self.parts:
            self.stock()
        if "standin" in self.parts:
            self.standin()
        return self.results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = Bench(args).run()
    results["ratios"] = report.ratios(results)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(report.text(results))
    chart = report.chart(results, args.out / "results.png")
    print(f"\nwrote {args.out / 'results.json'}" + (f" and {chart}" if chart else " (no chart: matplotlib missing)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
