"""LoRA adapters in the model folder: found, checked against the base model, and served by vLLM.

`${CODE_DIR}/adapters/<name>/` (shipped, or placed by load_model) holds a PEFT adapter:
adapter_config.json and adapter_model.safetensors (or .bin). Each is served under its folder
name. Checked before launch from files only (the safetensors headers, never the weights): a
missing file, a rank above vLLM's largest, target modules the base model lacks, and shapes that
cannot match the base model's are errors; a different base model name with matching shapes is a
warning.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from vllm_dropin.errors import ConfigError
from vllm_dropin.model import footprint
from vllm_dropin.model.footprint import Tensors

ADAPTERS_DIR = "adapters"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's --max-lora-rank choices
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<part>[AB])(?:\.\w+)?\.weight$")


class AdapterProblem(ConfigError):
    """Why an adapter cannot be served: `where` names it, `reason` says why without naming it."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Adapter:
    name: str
    path: str
    rank: int
    target_modules: tuple[str, ...] | str  # a str is PEFT's regex form
    base_model: str | None


def _config(folder: Path, where: str) -> dict:
    path = folder / "adapter_config.json"
    if not path.is_file():
        raise AdapterProblem(where, "no adapter_config.json (a PEFT LoRA adapter folder has it and its weights)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterProblem(where, f"adapter_config.json is not valid JSON ({exc})") from None
    if not isinstance(config, dict) or str(config.get("peft_type", "LORA")).upper() != "LORA":
        kind = config.get("peft_type") if isinstance(config, dict) else None
        raise AdapterProblem(where, f"adapter_config.json is not a LoRA adapter's (peft_type {kind!r})")
    if not isinstance(config.get("r"), int) or config["r"] < 1:
        raise AdapterProblem(where, "adapter_config.json has no rank 'r' (a whole number >= 1)")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise AdapterProblem(where, f"no weights ({' or '.join(WEIGHT_FILES)})")
    return config


def read(folder: Path, name: str, where: str, max_rank: int = VLLM_RANKS[-1]) -> Adapter:
    """The adapter in `folder`, served as `name`; AdapterProblem (named by `where`) for a malformed
    one or a rank above `max_rank`."""
    config = _config(folder, where)
    if config["r"] > max_rank:
        largest = "vLLM's largest" if max_rank == VLLM_RANKS[-1] else "this deployment's max_lora_rank"
        raise AdapterProblem(where, f"rank {config['r']} is above {largest} ({max_rank})")
    modules = config.get("target_modules") or ()
    modules = modules if isinstance(modules, str) else tuple(modules)
    return Adapter(name, str(folder), config["r"], modules, config.get("base_model_name_or_path"))


def discover(code_dir: Path) -> list[Adapter]:
    """Every adapter folder under ${CODE_DIR}/adapters/, by name; ConfigError for a malformed one."""
    root = code_dir / ADAPTERS_DIR
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not NAME.fullmatch(folder.name):
            raise ConfigError(f"LoRA adapter folder {folder}: name it with letters, digits, '.', '_' and '-' only")
        found.append(read(folder, folder.name, f"LoRA adapter {folder.name} ({folder})"))
    return found


def _shapes(path: Path) -> dict[str, list[int]]:
    try:
        return {name: shape for name, (_, shape) in footprint.read_header(path).items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def check(adapters: list[Adapter], base_tensors: Tensors | None, model_name: str) -> list[str]:
    """Adapters against the base model's tensors (when a local folder has them); warnings to log.

    ConfigError where an adapter cannot load on this model."""
    warnings = []
    base = {name: shape for name, (_, shape) in (base_tensors or {}).items()}
    for adapter in adapters:
        where = f"LoRA adapter {adapter.name}"
        if base and isinstance(adapter.target_modules, tuple):
            missing = [m for m in adapter.target_modules if not any(f".{m}." in f".{key}" for key in base)]
            if missing:
                raise AdapterProblem(
                    where, f"target modules {', '.join(missing)} are not in the base model {model_name}"
                )
        weights = Path(adapter.path) / WEIGHT_FILES[0]
        for key, shape in (_shapes(weights) if base and weights.is_file() else {}).items():
            match = _LORA_KEY.match(key)
            target = base.get(f"{match['module']}.weight") if match else None
            if target is None or len(shape) != 2 or len(target) != 2:
                continue
            expected = target[1] if match["part"] == "A" else target[0]
            got = shape[1] if match["part"] == "A" else shape[0]
            if got != expected:
                raise AdapterProblem(
                    where,
                    f"{match['module']} has {got} {'inputs' if match['part'] == 'A' else 'outputs'} in the adapter "
                    f"but {expected} in the base model {model_name}: it was trained for another model",
                )
        if adapter.base_model and Path(adapter.base_model).name != Path(model_name).name:
            warnings.append(
                f"{where} was trained on {adapter.base_model!r}, served on {model_name!r}; its shapes match"
                + ("" if base else " (not checked: the base model is not a local folder)")
            )
    return warnings


def rank_for(adapters: list[Adapter]) -> int:
    """vLLM's --max-lora-rank: the smallest of its choices that holds every adapter's rank."""
    largest = max(a.rank for a in adapters)
    return next(r for r in VLLM_RANKS if r >= largest)
