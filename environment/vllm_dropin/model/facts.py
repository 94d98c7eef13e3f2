"""The model folder read once, after load_model and the fetch: everything later stages need of it.

One pass over the folder gives its config.json, whether it has tokenizer files, its safetensors
headers (parameters for planning, shapes for the LoRA check), the LoRA adapters of
${CODE_DIR}/adapters/ and the response_schema file. Nothing after this stage reads the folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vllm_dropin.config import batch as batch_config
from vllm_dropin.config.settings import Settings
from vllm_dropin.errors import ConfigError
from vllm_dropin.model import footprint, lora
from vllm_dropin.model.footprint import Tensors, Weights
from vllm_dropin.model.lora import Adapter
from vllm_dropin.model.source import ModelSource

# Files a Hugging Face tokenizer loads from (one of them is enough).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model", "tekken.json")


@dataclass(frozen=True)
class ModelFacts:
    """What the model stage found; a hub model is not read (its folder fields stay empty)."""

    source: ModelSource
    folder: Path | None  # the local model folder as it exists now; None: a hub model, or no such folder
    has_config: bool = False  # config.json is there (readable or not)
    config: dict[str, Any] | None = field(default=None, repr=False)  # config.json; None: absent or unreadable
    has_tokenizer: bool = False
    weights: Weights | None = None  # None: a hub model, or a folder that does not tell
    tensors: Tensors | None = field(default=None, repr=False)  # the safetensors headers, for the LoRA check
    adapters: list[Adapter] = field(default_factory=list)
    schema_text: str | None = field(default=None, repr=False)  # the file response_schema names, as read

    def describe(self) -> str:
        if self.folder is None:
            return f"{self.source.ref}: not read before launch" + (
                "" if not self.source.local else " (no such folder yet)"
            )
        weights = self.weights.describe() if self.weights else "weights not counted"
        adapters = f"; LoRA adapters: {', '.join(a.name for a in self.adapters)}" if self.adapters else ""
        return f"{self.folder}: {weights}{adapters}"


def _schema_file(code_dir: Path, name: str | None) -> str | None:
    """The text of the model folder's schema file that response_schema names."""
    if name is None:
        return None
    path = (code_dir / name).resolve()
    if not path.is_relative_to(code_dir.resolve()) or not path.is_file():
        raise ConfigError(
            f"{batch_config.SCHEMA_PARAMETER}: {name!r} is neither a JSON object nor a file in the model folder"
        )
    return path.read_text(encoding="utf-8")


def read(source: ModelSource, code_dir: Path, settings: Settings) -> ModelFacts:
    """The model folder and ${CODE_DIR} as they are now; ConfigError for a malformed adapter or a
    missing schema file."""
    adapters = lora.discover(code_dir)
    schema = _schema_file(code_dir, batch_config.schema_file(settings))
    folder = Path(source.ref).expanduser()
    if not source.local or not folder.is_dir():
        return ModelFacts(source, None, adapters=adapters, schema_text=schema)
    config = footprint.read_config(folder)
    tokenizer = any((folder / name).is_file() for name in TOKENIZER_FILES) or any(folder.glob("*.tiktoken"))
    tensors = footprint.read_tensors(folder)
    has_config = (folder / "config.json").is_file()
    weights = footprint.weights(config, tensors)
    return ModelFacts(source, folder, has_config, config, tokenizer, weights, tensors, adapters, schema)
