"""The vLLM process: turn the supervisor's plan into vLLM's argv and parallel layout with vLLM's
own parser, report the layout, then run `vllm serve` in-process.

Building the argv here, where vLLM is imported anyway, keeps the parser's import (seconds) off
the supervisor's path: bad flags are still rejected before vLLM loads anything, with the same
one-line error. It is also the only place that imports vLLM, so vLLM may live in another Python
than DRUM (the CUDA image: the base image's Python vs the environment's venv). Run by the
supervisor as `<vLLM's python> -m vllm_dropin.launch.vllm_entry MODE` with its input as JSON in
DROPIN_LAUNCH_PLAN (no secrets):

- `--port N`: serve on 127.0.0.1:N; the layout is written to DROPIN_LAYOUT_FILE first;
- `--check`: print the plan, launch nothing;
- `--check-flags`: check the flags and batch settings of a config whose model is not known yet.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

from vllm_dropin import logs
from vllm_dropin.contract import BatchSettings
from vllm_dropin.errors import ConfigError, ExitCode
from vllm_dropin.launch import process_env, vllm_command
from vllm_dropin.planning.plan import LaunchPlan

PLAN_VAR = "DROPIN_LAUNCH_PLAN"
LAYOUT_VAR = "DROPIN_LAYOUT_FILE"
CONFIG_ERROR = "vllm_dropin config error: "  # the supervisor turns this line into its own error
PLAN_LINE = "vllm_dropin plan: "  # `--check` marks its lines: vLLM's imports print lines of their own

log = logging.getLogger("vllm_dropin")


def flags_json(engine_args: list[str], param_flags: dict[str, list[str]], batch: BatchSettings) -> str:
    """The input of `--check-flags`."""
    return json.dumps({"engine_args": engine_args, "param_flags": param_flags, "batch": asdict(batch)})


def _check_flags(text: str) -> list[str]:
    data = json.loads(text)
    vllm_command.check_flags(data["engine_args"], data["param_flags"], BatchSettings(**data["batch"]))
    return ["flags: accepted by vLLM's parser"]


def planned(plan: LaunchPlan, port: int | str) -> tuple[vllm_command.VllmCommand, list[str]]:
    """vLLM's command and the human-readable plan (secrets masked); ConfigError on a bad flag or
    batch sampling settings that vLLM would reject on every row."""
    command = vllm_command.build(plan)
    vllm_command.check_batch_sampling(plan.batch)
    added = process_env.vllm_env_additions(plan, os.environ, "<deployment key>")
    return command, vllm_command.describe(plan, command, added, port)


def main() -> None:
    logs.configure()
    parser = argparse.ArgumentParser(prog="vllm_entry", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--port", type=int, help="serve on 127.0.0.1:PORT")
    mode.add_argument("--check", action="store_true", help="print the plan and exit")
    mode.add_argument("--check-flags", action="store_true", help="check the flags of a config and exit")
    args = parser.parse_args()
    text = os.environ.pop(PLAN_VAR)
    try:
        if args.check_flags:
            lines = _check_flags(text)
        else:
            command, lines = planned(LaunchPlan.from_json(text), "<free port>" if args.check else args.port)
    except ConfigError as exc:
        print(CONFIG_ERROR + str(exc), flush=True)
        sys.exit(ExitCode.CONFIG)
    if args.check or args.check_flags:
        print("\n".join(PLAN_LINE + line for line in lines), flush=True)
        sys.exit(ExitCode.OK)
    for line in lines:
        log.info(line)
    command.layout.write(Path(os.environ.pop(LAYOUT_VAR)))
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = command.bound_to(args.port)
    vllm_main()


if __name__ == "__main__":
    main()
