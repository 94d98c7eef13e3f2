"""The vLLM process: check vLLM's arguments with its own parser, then run `vllm serve` in-process.

Building the argv here, where vLLM is imported anyway, keeps the parser's import (seconds)
off the supervisor's path: bad flags are still rejected before vLLM loads anything, with the
same one-line error. Run by the supervisor as `python -m vllm_dropin.launch.vllm_entry --port N`
with DROPIN_VLLM_SPEC (JSON, no secrets) in the environment.
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


def spec_json(values: dict[str, Any], engine_args: list[str], code_dir: Path, visible_gpus: int = 0) -> str:
    """What the vLLM process needs to rebuild the plan; the Hugging Face token travels as HF_TOKEN only."""
    public = {k: v for k, v in values.items() if k != "HuggingFaceToken"}
    spec = {"values": public, "engine_args": engine_args, "code_dir": str(code_dir), "visible_gpus": visible_gpus}
    return json.dumps(spec)


def command(spec: dict[str, Any], port: int) -> list[str]:
    values = {**spec["values"], "HuggingFaceToken": None}
    code_dir = Path(spec["code_dir"])
    plan = plan_mod.build(values, spec["engine_args"], code_dir)
    vargs = plan_mod.vllm_arguments(plan, values, spec["engine_args"], spec["visible_gpus"])
    argv = plan_mod.vllm_command(plan, vargs, ["vllm"], port)
    for line in plan_mod.describe(plan, vargs, argv, plan_mod.vllm_env_additions(plan, {}, "<per-launch key>")):
        log.info(line)
    return argv


def main() -> None:
    logs.configure()
    parser = argparse.ArgumentParser(prog="vllm_entry", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    try:
        argv = command(json.loads(os.environ.pop(SPEC_VAR)), port)
    except ConfigError as exc:
        print(CONFIG_ERROR + str(exc), flush=True)
        sys.exit(CONFIG_ERROR_EXIT)
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = argv
    vllm_main()


if __name__ == "__main__":
    main()
