"""The model's own `load_model(code_dir)` hook (custom.py in the model folder), run once before launch.

DRUM would call load_model in every worker; the environment calls the user's hook itself, once
per container, and gives DRUM its own adapter instead. Other hooks in the user's custom.py
(score, chat, ...) are not used: the environment provides them.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from vllm_dropin.errors import HookError

log = logging.getLogger(__name__)

CUSTOM_FILE = "custom.py"
IGNORED_HOOKS = ("score", "chat", "score_unstructured", "transform", "post_process")


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("user_custom_model", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def find(code_dir: Path) -> Callable[[str], object] | None:
    """The user's load_model, or None when there is no custom.py or it defines none."""
    path = code_dir / CUSTOM_FILE
    if not path.is_file():
        return None
    try:
        module = _import(path)
    except Exception as exc:
        raise HookError(f"importing {path} failed: {exc!r}") from exc
    ignored = [name for name in IGNORED_HOOKS if callable(getattr(module, name, None))]
    if ignored:
        log.warning("%s defines %s; the environment provides these and ignores them", path, ", ".join(ignored))
    hook = getattr(module, "load_model", None)
    return hook if callable(hook) else None


def run(hook: Callable[[str], object], code_dir: Path) -> None:
    try:
        hook(str(code_dir))
    except Exception as exc:
        raise HookError(f"load_model in {code_dir / CUSTOM_FILE} raised {exc!r}") from exc
