"""python -m bench.scenarios.hooked: the time to ready of a deployment with a `load_model` hook (one
that does nothing: the model comes from artifact_uri, a local tar fetched into cache_dir), and
our entrypoint's own account of the phases, START times in a row; what a start with a hook spends
before vLLM launches ("load_model", "checks and planning").

    python -m bench.scenarios.hooked --model DIR [--starts 2] [--engine-args "..."]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

from bench.scenarios.streaming import model_folder, started

NO_OP_HOOK = "def load_model(code_dir):\n    pass\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--engine-args", default="--max-model-len 2048")
    p.add_argument("--starts", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path(".build/bench-hooked"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    folder = model_folder(args.out, args.engine_args)
    (folder / "custom.py").write_text(NO_OP_HOOK)
    archive = shutil.make_archive(str(args.out / "model"), "tar", args.model)
    params = {"artifact_uri": archive, "cache_dir": str(args.out / "cache")}
    runs = [started(folder, params, [], args.out, "hooked") for _ in range(args.starts)]
    for run in runs:
        print(json.dumps(run), flush=True)
    print(f"\ntime to ready (median of {args.starts}): {statistics.median(r['ready_s'] for r in runs)} s")


if __name__ == "__main__":
    main()
