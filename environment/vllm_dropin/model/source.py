"""Decide which model vLLM serves, in the documented order of precedence."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vllm_dropin.errors import ConfigError

HOOK_MODEL_DIR = "vllm"  # load_model hooks put artifacts into ${CODE_DIR}/vllm/


@dataclass(frozen=True)
class ModelSource:
    ref: str  # what vLLM gets as its model argument
    local: bool  # a folder on disk: vLLM runs with hub access off
    origin: str  # where the choice came from, for logs and `check`
    name: str  # the served model name unless engine_config.json sets --served-model-name
    artifact: str | None = None  # artifact_uri (as shown): fetched (or found whole in the cache) into `ref`
    weights: str | None = None  # the store vLLM streams the weights from (stream_weights); `ref` has the rest


def _non_empty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def looks_like_path(ref: str) -> bool:
    """A hub id is 'name' or 'org/name'; a leading / . ~, a backslash or more parts make it a folder."""
    return ref.startswith(("/", ".", "~")) or "\\" in ref or ref.count("/") > 1


def is_local(ref: str) -> bool:
    """Served from disk with hub access off: an existing folder, or a path that should be one."""
    return Path(ref).is_dir() or looks_like_path(ref)


def _default_name(ref: str) -> str:
    """A hub id names itself; a local folder is named by its last path component."""
    return Path(ref).name if Path(ref).is_dir() else ref


def hook_folder(code_dir: Path, param_model: str | None, origin: str) -> ModelSource:
    """${CODE_DIR}/vllm/, which load_model fills (or the folder ships with)."""
    hook_dir = code_dir / HOOK_MODEL_DIR
    return ModelSource(str(hook_dir), True, origin, _default_name(param_model) if param_model else HOOK_MODEL_DIR)


def resolve(
    engine_model: str | None, code_dir: Path, param_model: str | None, artifact: tuple[Path, str] | None = None
) -> ModelSource:
    """The model as the folder is now: --model in engine_config, then a non-empty ${CODE_DIR}/vllm/,
    then artifact_uri, then the `model` parameter. Run after load_model, which may fill the folder.

    `artifact`: where artifact_uri's model is (or will be once fetched) and the URI as shown.
    """
    if engine_model:
        return ModelSource(
            engine_model, is_local(engine_model), "--model in engine_config.json", _default_name(engine_model)
        )
    hook_dir = code_dir / HOOK_MODEL_DIR
    if _non_empty_dir(hook_dir):
        return hook_folder(code_dir, param_model, f"{hook_dir} (filled by load_model or shipped)")
    if artifact is not None:
        folder, shown = artifact
        name = _default_name(param_model) if param_model else folder.name
        origin = f"runtime parameter 'artifact_uri' ({shown})"
        return ModelSource(str(folder), True, origin, name, shown)
    if param_model:
        return ModelSource(param_model, is_local(param_model), "runtime parameter 'model'", _default_name(param_model))
    raise ConfigError(
        "no model to serve: set runtime parameter 'model' (a Hugging Face id or folder) or 'artifact_uri', put "
        f"--model in engine_config.json, or have load_model fill {hook_dir}/"
    )
