"""The vLLM process: turn the supervisor's plan into vLLM's argv with its own parser, then run
`vllm serve` in-process.

Building the argv here, where vLLM is imported anyway, keeps the parser's import (seconds)
off the supervisor's path: bad flags are still rejected before vLLM loads anything, with the
same one-line error. It is also the only place that imports vLLM, so vLLM may live in another
Python than DRUM (the CUDA image: the base image's Python vs the environment's venv). Run by the
supervisor as `<vLLM's python> -m vllm_dropin.launch.vllm_entry --port N` (or `--check`: print
the plan, launch nothing) with the plan as JSON in DROPIN_LAUNCH_PLAN (no secrets).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .. import logs, process_env, vllm_command
from ..errors import ConfigError, ExitCode
from ..plan import LaunchPlan

PLAN_VAR = "DROPIN_LAUNCH_PLAN"
CONFIG_ERROR = "vllm_dropin config error: "  # the supervisor turns this line into its own error
PLAN_LINE = "vllm_dropin plan: "  # `--check` marks its lines: vLLM's imports print lines of their own

log = logging.getLogger("vllm_dropin")


def plan_lines(plan: LaunchPlan, port: int | str) -> tuple[list[str], list[str]]:
    """vLLM's argv and the human-readable plan (secrets masked); ConfigError on a bad flag or
    batch sampling settings that vLLM would reject on every row."""
    command = vllm_command.build(plan)
    vllm_command.check_batch_sampling(plan.batch)
    added = process_env.vllm_env_additions(plan, os.environ, "<per-launch key>")
    return command.bound_to(port), vllm_command.describe(plan, command, added, port)


def main() -> None:
    logs.configure()
    parser = argparse.ArgumentParser(prog="vllm_entry", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--port", type=int, help="serve on 127.0.0.1:PORT")
    mode.add_argument("--check", action="store_true", help="print the plan and exit")
    args = parser.parse_args()
    try:
        plan = LaunchPlan.from_json(os.environ.pop(PLAN_VAR))
        argv, lines = plan_lines(plan, "<free port>" if args.check else args.port)
    except ConfigError as exc:
        print(CONFIG_ERROR + str(exc), flush=True)
        sys.exit(ExitCode.CONFIG)
    if args.check:
        print("\n".join(PLAN_LINE + line for line in lines), flush=True)
        sys.exit(ExitCode.OK)
    for line in lines:
        log.info(line)
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = argv
    vllm_main()


if __name__ == "__main__":
    main()
