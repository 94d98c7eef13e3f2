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
    assumed: bool = False  # a folder assumed filled by a load_model or a fetch that has not run yet
    artifact: str | None = None  # artifact_uri (as shown): fetched (or found whole in the cache) before launch


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


def resolve(
    engine_model: str | None,
    code_dir: Path,
    param_model: str | None,
    hook_pending: bool = False,
    artifact: tuple[Path, str] | None = None,
) -> ModelSource:
    """--model in engine_config, then a non-empty ${CODE_DIR}/vllm/, then artifact_uri, then the
    `model` parameter.

    `hook_pending`: load_model has not run yet (it may fill the folder), so the folder is assumed.
    `artifact`: where artifact_uri's model is (or will be) and the URI as shown.
    """
    if engine_model:
        return ModelSource(
            engine_model, is_local(engine_model), "--model in engine_config.json", _default_name(engine_model)
        )
    hook_dir = code_dir / HOOK_MODEL_DIR
    if _non_empty_dir(hook_dir) or hook_pending:
        assumed = not _non_empty_dir(hook_dir)
        origin = f"{hook_dir}, if load_model fills it" if assumed else f"{hook_dir} (filled by load_model or shipped)"
        name = _default_name(param_model) if param_model else HOOK_MODEL_DIR
        return ModelSource(str(hook_dir), True, origin, name, assumed)
    if artifact is not None:
        folder, shown = artifact
        name = _default_name(param_model) if param_model else folder.name
        origin = f"runtime parameter 'artifact_uri' ({shown})"
        return ModelSource(str(folder), True, origin, name, not _non_empty_dir(folder), shown)
    if param_model:
        return ModelSource(param_model, is_local(param_model), "runtime parameter 'model'", _default_name(param_model))
    raise ConfigError(
        "no model to serve: set runtime parameter 'model' (a Hugging Face id or folder) or 'artifact_uri', put "
        f"--model in engine_config.json, or have load_model fill {hook_dir}/"
    )
