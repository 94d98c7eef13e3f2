"""The launch as one way through its stages; `serve` and `check` run the same `run`.

    config     runtime parameters + engine_config.json      -> Config
    flags      vLLM's parser checks them, beside anything slow (a hook or a download)
    hook       the model's load_model(code_dir), once
    source     which model: --model in engine_config.json, ${CODE_DIR}/vllm/, artifact_uri, 'model'
    fetch      artifact_uri into cache_dir
    model      the model folder read once                   -> ModelFacts
    preflight  what is knowable of the model before vLLM starts
    plan       Config + ModelFacts + the GPUs               -> LaunchPlan

The steps with side effects go through `Effects`: `serve` runs the hook and fetches, `check`
says what it would do. What follows (vLLM, DRUM, Ray) is `launch.supervisor`'s.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from vllm_dropin import config as config_stage
from vllm_dropin.config import Config
from vllm_dropin.config.settings import Settings
from vllm_dropin.errors import ConfigError
from vllm_dropin.model import facts as model_facts
from vllm_dropin.model import hook as model_hook
from vllm_dropin.model import source
from vllm_dropin.model.artifacts import fetch as artifacts
from vllm_dropin.model.artifacts import streaming
from vllm_dropin.model.facts import ModelFacts
from vllm_dropin.model.source import ModelSource
from vllm_dropin.planning import gpus, plan
from vllm_dropin.planning.plan import LaunchPlan

log = logging.getLogger("vllm_dropin")
Hook = Callable[[str], object]


class Effects(Protocol):
    """The steps that act on the world: `serve` does them, `check` describes them."""

    def check_flags(self, config: Config) -> None:
        """vLLM's parser on the flags, beside a slow step (a bad flag ends it)."""

    def run_hook(self, hook: Hook, config: Config) -> bool:
        """Run load_model; False if asked to stop meanwhile."""

    def no_model(self, error: ConfigError, config: Config) -> ModelSource:
        """Nothing names a model although a hook exists: raise `error`, or what check assumes."""

    def fetch(self, config: Config, model: ModelSource) -> bool:
        """Fetch artifact_uri into the cache; False if asked to stop meanwhile."""

    def preflight(self, facts: ModelFacts, config: Config) -> None:
        """Check the model before vLLM starts."""

    def say(self, stage: str, text: str) -> None:
        """What a stage found or did."""


def source_of(config: Config) -> ModelSource:
    """The model to serve as the model folder is now (after load_model); ConfigError if none."""
    uri = artifacts.uri_of(config.settings)
    streamed = uri is not None and streaming.streams(config.settings, uri)
    artifact = (artifacts.place(uri, config.cache_dir, streamed), uri.shown) if uri else None
    model = source.resolve(config.engine_model, config.code_dir, config.settings.model, artifact)
    return replace(model, weights=uri.text) if streamed and model.artifact is not None else model


def _source(config: Config, hook: Hook | None, effects: Effects) -> ModelSource:
    try:
        return source_of(config)
    except ConfigError as exc:
        if hook is None:
            raise
        return effects.no_model(exc, config)


def run(code_dir: Path, settings: Settings, environ: Mapping[str, str], effects: Effects) -> LaunchPlan | None:
    """The launch plan of a model folder; None if asked to stop before it is known."""
    config = config_stage.load(code_dir, settings)
    hook = model_hook.find(code_dir)
    if hook is not None:
        effects.check_flags(config)
        if not effects.run_hook(hook, config):
            return None
    model = _source(config, hook, effects)
    effects.say("source", f"{model.ref} (from {model.origin}; hub access {'off' if model.local else 'on'})")
    if model.artifact is not None:
        if hook is None and not artifacts.in_cache(Path(model.ref)):  # a download follows
            effects.check_flags(config)
        if not effects.fetch(config, model):
            return None
    facts = model_facts.read(model, code_dir, settings)
    effects.say("model folder", facts.describe())
    effects.preflight(facts, config)
    visible = gpus.visible(environ)
    effects.say("GPUs visible", visible.describe())
    return plan.build(config, facts, visible, len(os.sched_getaffinity(0)))
