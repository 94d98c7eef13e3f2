"""Decide which model vLLM serves, in the documented order of precedence."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

HOOK_MODEL_DIR = "vllm"  # load_model hooks put artifacts into ${CODE_DIR}/vllm/


@dataclass(frozen=True)
class ModelSource:
    ref: str  # what vLLM gets as its model argument
    local: bool  # a folder on disk: vLLM runs with hub access off
    origin: str  # where the choice came from, for logs and `check`
    name: str  # the served model name unless engine_config.json sets --served-model-name


def _non_empty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _default_name(ref: str) -> str:
    """A hub id names itself; a local folder is named by its last path component."""
    return Path(ref).name if Path(ref).is_dir() else ref


def resolve(
    engine_model: str | None, code_dir: Path, param_model: str | None, hook_pending: bool = False
) -> ModelSource:
    """--model in engine_config, then a non-empty ${CODE_DIR}/vllm/, then the `model` parameter.

    `hook_pending`: load_model has not run yet (it may fill the folder), so the folder is assumed.
    """
    if engine_model:
        return ModelSource(
            engine_model, Path(engine_model).is_dir(), "--model in engine_config.json", _default_name(engine_model)
        )
    hook_dir = code_dir / HOOK_MODEL_DIR
    if _non_empty_dir(hook_dir) or hook_pending:
        origin = (
            f"{hook_dir} (filled by load_model or shipped)"
            if _non_empty_dir(hook_dir)
            else f"{hook_dir}, if load_model fills it (check does not run the hook)"
        )
        return ModelSource(str(hook_dir), True, origin, _default_name(param_model) if param_model else HOOK_MODEL_DIR)
    if param_model:
        return ModelSource(
            param_model, _non_empty_dir(Path(param_model)), "runtime parameter 'model'", _default_name(param_model)
        )
    raise ConfigError(
        "no model to serve: set runtime parameter 'model' (a Hugging Face id or folder), put "
        f"--model in engine_config.json, or have load_model fill {hook_dir}/"
    )
