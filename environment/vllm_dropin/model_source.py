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


def _non_empty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def resolve(
    engine_model: str | None, code_dir: Path, param_model: str | None, assume_hook_fills: bool = False
) -> ModelSource:
    """--model in engine_config, then a non-empty ${CODE_DIR}/vllm/, then the `model` parameter.

    `assume_hook_fills`: `check` does not run load_model, so it may assume the hook fills the folder.
    """
    if engine_model:
        return ModelSource(engine_model, Path(engine_model).is_dir(), "--model in engine_config.json")
    hook_dir = code_dir / HOOK_MODEL_DIR
    if assume_hook_fills and not _non_empty_dir(hook_dir):
        return ModelSource(str(hook_dir), True, f"{hook_dir}, if load_model fills it (check does not run the hook)")
    if _non_empty_dir(hook_dir):
        return ModelSource(str(hook_dir), True, f"{hook_dir} (filled by load_model or shipped)")
    if param_model:
        return ModelSource(param_model, _non_empty_dir(Path(param_model)), "runtime parameter 'model'")
    raise ConfigError(
        "no model to serve: set runtime parameter 'model' (a Hugging Face id or folder), put "
        f"--model in engine_config.json, or have load_model fill {hook_dir}/"
    )
