"""Command line: `serve` (the image's entrypoint) and `check` (validate, print, launch nothing)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import logs, runtime_params
from .errors import ConfigError, DropinError, ExitCode
from .launch import vllm_server
from .launch.supervisor import report_failure, serve
from .prepare import prepare


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vllm_dropin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "start vLLM and DRUM and supervise them"),
        ("check", "validate a model folder and parameters; print the vLLM command"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument(
            "--code-dir",
            type=Path,
            default=Path(os.environ.get("CODE_DIR", ".")),
            help="the custom model folder (default: $CODE_DIR)",
        )
        cmd.add_argument(
            "--runtime-params-file",
            help="YAML of runtime parameter values for local "
            "runs, as `drum --runtime-params-file` (needs model-metadata.yaml)",
        )
        if name == "serve":
            cmd.add_argument(
                "--address",
                default=os.environ.get("ADDRESS", "0.0.0.0:8080"),
                help="DRUM's listen address (default: $ADDRESS or 0.0.0.0:8080)",
            )
    return parser


def check(code_dir: Path) -> ExitCode:
    """What `serve` would launch, from the same `prepare()`; the model's hook is not run."""
    prepared = prepare(code_dir, runtime_params.read(), os.environ)
    lines = vllm_server.check(prepared.plan)
    print(f"code dir: {code_dir}")
    print(f"load_model hook: {'runs once before launch' if prepared.load_model else 'none'}")
    print(f"GPUs visible: {prepared.plan.visible_gpus}")
    print("\n".join(lines))
    print("OK: ready to launch")
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    logs.configure()
    args = _parser().parse_args(argv)
    code_dir = args.code_dir.resolve()
    try:
        if not code_dir.is_dir():
            raise ConfigError(f"code dir {code_dir} is not a folder (set CODE_DIR or --code-dir)")
        if args.runtime_params_file:
            runtime_params.load_params_file(args.runtime_params_file, str(code_dir))
        if args.command == "check":
            return check(code_dir)
    except DropinError as exc:
        return report_failure(exc)
    return serve(code_dir, args.address)
