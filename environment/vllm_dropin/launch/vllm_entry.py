"""The vLLM process: check vLLM's arguments with its own parser, then run `vllm serve` in-process.

Building the argv here, where vLLM is imported anyway, keeps the parser's import (seconds)
off the supervisor's path: bad flags are still rejected before vLLM loads anything, with the
same one-line error. It is also the only place that imports vLLM, so vLLM may live in another
Python than DRUM (the CUDA image: the base image's Python vs the environment's venv). Run by the
supervisor as `<vLLM's python> -m vllm_dropin.launch.vllm_entry --port N` (or `--check`: print
the plan, launch nothing) with DROPIN_VLLM_SPEC (JSON, no secrets) in the environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .. import logs
from .. import plan as plan_mod
from ..errors import ConfigError

SPEC_VAR = "DROPIN_VLLM_SPEC"
CONFIG_ERROR = "vllm_dropin config error: "  # the supervisor turns this line into its own error
CONFIG_ERROR_EXIT = 2

log = logging.getLogger("vllm_dropin")


def spec_json(
    values: dict[str, Any],
    engine_args: list[str],
    code_dir: Path,
    visible_gpus: int = 0,
    assume_hook_fills: bool = False,
) -> str:
    """What the vLLM process needs to rebuild the plan; the Hugging Face token travels as HF_TOKEN only."""
    public = {k: v for k, v in values.items() if k != "HuggingFaceToken"}
    spec = {
        "values": public,
        "engine_args": engine_args,
        "code_dir": str(code_dir),
        "visible_gpus": visible_gpus,
        "assume_hook_fills": assume_hook_fills,
    }
    return json.dumps(spec)


def plan_lines(spec: dict[str, Any], port: int | str) -> tuple[list[str], list[str]]:
    """vLLM's argv and the human-readable plan (secrets masked); ConfigError on a bad flag."""
    values = {**spec["values"], "HuggingFaceToken": None}
    code_dir = Path(spec["code_dir"])
    plan = plan_mod.build(values, spec["engine_args"], code_dir, spec["assume_hook_fills"])
    vargs = plan_mod.vllm_arguments(plan, values, spec["engine_args"], spec["visible_gpus"])
    argv = plan_mod.vllm_command(plan, vargs, ["vllm"], port)
    added = plan_mod.vllm_env_additions(plan, os.environ, "<per-launch key>")
    return argv, plan_mod.describe(plan, vargs, argv, added)


def command(spec: dict[str, Any], port: int) -> list[str]:
    argv, lines = plan_lines(spec, port)
    for line in lines:
        log.info(line)
    return argv


def main() -> None:
    logs.configure()
    parser = argparse.ArgumentParser(prog="vllm_entry", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--port", type=int, help="serve on 127.0.0.1:PORT")
    mode.add_argument("--check", action="store_true", help="print the plan and exit")
    args = parser.parse_args()
    try:
        spec = json.loads(os.environ.pop(SPEC_VAR))
        if args.check:
            print("\n".join(plan_lines(spec, "<free port>")[1]), flush=True)
            sys.exit(0)
        argv = command(spec, args.port)
    except ConfigError as exc:
        print(CONFIG_ERROR + str(exc), flush=True)
        sys.exit(CONFIG_ERROR_EXIT)
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = argv
    vllm_main()


if __name__ == "__main__":
    main()
