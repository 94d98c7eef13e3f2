"""Command line: `serve` (the image's entrypoint) and `check` (validate, print, launch nothing)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from vllm_dropin import logs, pipeline
from vllm_dropin.config import Config, runtime_params
from vllm_dropin.errors import ConfigError, DropinError, ExitCode, report_failure
from vllm_dropin.launch import ray_cluster, startup_timings, vllm_server
from vllm_dropin.launch.supervisor import serve
from vllm_dropin.model import lora_store, preflight, source
from vllm_dropin.model.artifacts import fetch as artifacts
from vllm_dropin.model.facts import ModelFacts
from vllm_dropin.model.source import ModelSource

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


class Checking:
    """The pipeline's effects as `check` has them: nothing runs, each says what `serve` would do."""

    def __init__(self) -> None:
        self.pending: list[str] = []  # what must happen before the plan below holds

    def check_flags(self, config: Config) -> None:
        return None  # vLLM's parser checks them with the whole plan, below

    def run_hook(self, hook: pipeline.Hook, config: Config) -> bool:
        folder = config.code_dir / source.HOOK_MODEL_DIR
        self.say(
            "load_model", f"runs once before launch (check does not run it); if it fills {folder}/, that is served"
        )
        return True

    def no_model(self, error: ConfigError, config: Config) -> ModelSource:
        folder = config.code_dir / source.HOOK_MODEL_DIR
        self.pending.append(f"if load_model fills {folder}")
        return source.hook_folder(config.code_dir, config.settings.model, f"{folder}, if load_model fills it")

    def fetch(self, config: Config, model: ModelSource) -> bool:
        self.say("fetch", artifacts.describe(config.settings, config.cache_dir))
        if not artifacts.in_cache(Path(model.ref)):
            self.pending.append(f"once artifact_uri is fetched into {model.ref}")
        return True

    def preflight(self, facts: ModelFacts, config: Config) -> None:
        if self.pending:  # the folder is load_model's or the fetch's to fill
            self.say("preflight", "runs once the model folder is filled")
            return
        preflight.check(facts, config.settings, config.engine_args, os.environ)
        self.say("preflight", "passed")

    def say(self, stage: str, text: str) -> None:
        print(f"{stage}: {text}")


def check(code_dir: Path) -> ExitCode:
    """What `serve` would launch, through the same pipeline with its side effects described, not done."""
    print(f"code dir: {code_dir}")
    checking = Checking()
    settings = runtime_params.read()
    plan = pipeline.run(code_dir, settings, os.environ, checking)
    assert plan is not None  # check never stops early
    print("\n".join(vllm_server.check(plan)))
    store = lora_store.store_uri(settings)
    if store is not None:
        print(f"LoRA adapters store: {lora_store.describe(store, settings, plan.cache_dir)}")
    print("\n".join(f"cold or warm: {line}" for line in startup_timings.cold_or_warm(plan)))
    print("OK: ready to launch" + "".join(f" {condition}" for condition in checking.pending))
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
