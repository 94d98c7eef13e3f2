"""From a model folder and the process environment to a launch plan: what `serve` and `check` share.

Both call `prepare()`, so `check` cannot pass a configuration that `serve` rejects.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import engine_config, gpus, user_hook
from . import plan as plan_mod
from .plan import LaunchPlan
from .settings import Settings


@dataclass(frozen=True)
class Prepared:
    code_dir: Path
    settings: Settings
    load_model: Callable[[str], object] | None  # the model's own hook, not yet run
    plan: LaunchPlan  # with a hook, assumes it fills ${CODE_DIR}/vllm/ until `settled()`

    def settled(self) -> LaunchPlan:
        """The plan after load_model ran (or artifact_uri was fetched): the model source as it now is."""
        if self.load_model is None and not self.plan.model.assumed:
            return self.plan  # built with nothing pending: reading the folder again would change nothing
        return plan_mod.settle_model(self.plan, self.settings, self.code_dir)


def prepare(code_dir: Path, settings: Settings, environ: Mapping[str, str]) -> Prepared:
    """engine_config.json, the model's hook and the plan; ConfigError / HookError on any problem."""
    engine_args = engine_config.load(code_dir)
    load_model = user_hook.find(code_dir)
    plan = plan_mod.build(
        settings, engine_args, code_dir, gpus.visible(environ), load_model is not None, len(os.sched_getaffinity(0))
    )
    return Prepared(code_dir, settings, load_model, plan)
