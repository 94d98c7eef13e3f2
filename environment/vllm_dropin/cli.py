"""Command line: `serve` (the image's entrypoint) and `check` (validate, print, launch nothing)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from . import logs, preflight, runtime_params
from .artifacts import fetch as artifacts
from .errors import ConfigError, DropinError, ExitCode
from .launch import ray_cluster, vllm_server
from .launch.supervisor import report_failure, serve
from .prepare import prepare

log = logging.getLogger("vllm_dropin")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vllm_dropin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser(
        "ray-worker", help="join a deployment's Ray cluster as a worker node (runtime parameter ray_nodes)"
    )
    worker.add_argument("--head", required=True, help="HOST:PORT of the serving container's Ray head")
    worker.add_argument("--node-ip", help="this node's address as the others reach it (default: Ray's guess)")
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
    """What `serve` would launch, from the same `prepare()` and checks; the model's hook is not run
    and artifact_uri is listed, not fetched, so where the outcome depends on them, that is said."""
    prepared = prepare(code_dir, runtime_params.read(), os.environ)
    plan = prepared.plan
    if not plan.model.assumed:
        preflight.check(plan, prepared.settings, os.environ)
    lines = vllm_server.check(plan)
    print(f"code dir: {code_dir}")
    print(f"load_model hook: {'runs once before launch (check does not run it)' if prepared.load_model else 'none'}")
    print(f"GPUs visible: {plan.parallel.gpus.describe()}")
    if plan.model.artifact is not None:
        print(artifacts.describe(prepared.settings, plan.cache_dir))
    print("\n".join(lines))
    if not plan.model.assumed:
        print("OK: ready to launch")
        return ExitCode.OK
    if prepared.load_model is None:
        print(f"OK: ready to launch once artifact_uri is fetched into {plan.model.ref}")
        return ExitCode.OK
    try:
        fallback = prepared.settled()
        if fallback.model.artifact is not None:
            print(
                f"if load_model leaves {plan.model.ref} empty: {artifacts.describe(prepared.settings, plan.cache_dir)}"
            )
        else:
            preflight.check(fallback, prepared.settings, os.environ)
    except DropinError as exc:
        print(f"if load_model leaves {plan.model.ref} empty: serve stops with exit code {exc.exit_code}: {exc}")
    else:
        print(
            f"if load_model leaves {plan.model.ref} empty: serve runs the same command on {fallback.model.ref} "
            f"(from {fallback.model.origin}; hub access {'off' if fallback.model.local else 'on'})"
        )
    print(f"OK: ready to launch if load_model fills {plan.model.ref}")
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    logs.configure()
    args = _parser().parse_args(argv)
    if args.command == "ray-worker":
        return ray_cluster.run_worker(args.head, args.node_ip)
    code_dir = args.code_dir.resolve()
    try:
        if not code_dir.is_dir():
            raise ConfigError(f"code dir {code_dir} is not a folder (set CODE_DIR or --code-dir)")
        unknown = []
        if args.runtime_params_file:
            unknown += runtime_params.load_params_file(args.runtime_params_file, code_dir)
        unknown += runtime_params.undeclared(runtime_params.env_names(os.environ), code_dir)
        for line in unknown:
            log.warning("%s", line)
        if args.command == "check":
            if unknown:  # check is where a typo should stop you; serve only warns
                raise ConfigError(unknown[0] + (f" (and {len(unknown) - 1} more above)" if len(unknown) > 1 else ""))
            return check(code_dir)
    except DropinError as exc:
        return report_failure(exc)
    return serve(code_dir, args.address)
