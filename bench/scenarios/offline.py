"""The engine's own limit: `vllm.LLM.chat` on the same prompts, in its own process; the median
of the benchmark's repeats (runs of the same engine vary: bench/README.md).

Run by the benchmark as `python -m bench.scenarios.offline SPEC.json OUT.json`, so the engine's memory
and threads are gone before the servers are measured.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

from bench.workload import messages, prompts


def engine_kwargs(model: str, engine_args: list[str]) -> dict:
    """The same `vllm serve` flags, as keyword arguments for LLM (parsed by vLLM's own EngineArgs)."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parsed = EngineArgs.add_cli_args(FlexibleArgumentParser()).parse_args(["--model", model, *engine_args])
    engine = EngineArgs.from_cli_args(parsed)
    defaults = EngineArgs(model=model)
    return {
        f.name: getattr(engine, f.name)
        for f in dataclasses.fields(EngineArgs)
        if getattr(engine, f.name) != getattr(defaults, f.name) or f.name == "model"
    }


def main(spec_path: str, out_path: str) -> None:
    from vllm import LLM, SamplingParams

    with open(spec_path) as f:
        spec = json.load(f)
    llm = LLM(**engine_kwargs(spec["model"], spec["engine_args"]))
    params = SamplingParams(temperature=0.0, max_tokens=spec["max_tokens"])
    llm.chat([messages(p) for p in prompts(8)], params, use_tqdm=False)  # warm-up
    runs: dict[int, list[dict]] = {size: [] for size in spec["sizes"]}
    for _ in range(spec["repeats"]):  # sizes interleaved, as the served paths' runs are
        for size, done in runs.items():
            done.append(timed_chat(llm, params, size))
    with open(out_path, "w") as out:
        json.dump([sorted(done, key=lambda r: r["seconds"])[len(done) // 2] for done in runs.values()], out)


def timed_chat(llm, params, size: int) -> dict:
    """One LLM.chat over `size` rows: its seconds, answers and completion tokens."""
    batch = [messages(p) for p in prompts(size)]
    start = time.perf_counter()
    outputs = llm.chat(batch, params, use_tqdm=False)
    seconds = time.perf_counter() - start
    return {
        "size": size,
        "seconds": seconds,
        "texts": [o.outputs[0].text for o in outputs],
        "completion_tokens": sum(len(o.outputs[0].token_ids) for o in outputs),
    }


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
