"""What a model folder's weights are: parameters and bytes from the safetensors headers (a few KB
read per file, never the weights), else estimated from config.json's shapes.

`Weights` is what the folder says; `Weights.served(dtype)` is what they take at the dtype vLLM
serves, which the vLLM process knows once its parser has read --dtype (`--dtype auto`: the
config's dtype, float32 served as bfloat16). A quantized checkpoint takes what its files take.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2, "fp8": 1}
SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
                     "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}  # fmt: skip
_HEADER_LIMIT = 100 << 20
Tensors = dict[str, tuple[str, list[int]]]  # name -> (safetensors dtype, shape)


@dataclass(frozen=True)
class ModelFootprint:
    """The weights at the dtype vLLM serves them."""

    weight_bytes: int
    parameters: int | None
    dtype: str  # as served
    attention_heads: int | None
    source: str  # how it was measured

    @property
    def weight_gib(self) -> float:
        return self.weight_bytes / (1 << 30)

    def describe(self) -> str:
        params = f"{self.parameters / 1e9:.2f}B params, " if self.parameters else ""
        return f"{params}{self.dtype} = {self.weight_bytes / 1e9:.1f} GB of weights ({self.source})"


@dataclass(frozen=True)
class Weights:
    """What the model folder says of its weights."""

    parameters: int | None  # None: quantized (only the stored size means anything)
    stored_bytes: int | None  # bytes the safetensors tensors hold on disk
    config_dtype: str  # config.json's torch_dtype (bfloat16 when it names none)
    attention_heads: int | None
    source: str  # how they were counted

    def describe(self) -> str:
        """What the folder says, before a dtype is chosen."""
        if self.parameters is None:
            return f"quantized, {(self.stored_bytes or 0) / 1e9:.1f} GB of weights ({self.source})"
        return f"{self.parameters / 1e9:.2f}B params, {self.config_dtype} in config.json ({self.source})"

    def served(self, dtype_flag: str | None) -> ModelFootprint:
        """The footprint at the dtype vLLM serves: --dtype if given (not auto), else the config's
        with float32 served as bfloat16."""
        if self.parameters is None:
            return ModelFootprint(self.stored_bytes or 0, None, "quantized", self.attention_heads, self.source)
        if dtype_flag and dtype_flag != "auto":
            dtype = {"float": "float32", "half": "float16"}.get(dtype_flag, dtype_flag)
        else:
            dtype = "bfloat16" if self.config_dtype in ("float32", "float") else self.config_dtype
        size = self.parameters * BYTES.get(dtype, 2)
        return ModelFootprint(size, self.parameters, dtype, self.attention_heads, self.source)


def read_config(folder: Path) -> dict[str, Any] | None:
    """config.json (a multimodal model's text_config merged in), None when absent or not an object."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    text = config.get("text_config")
    return {**config, **text} if isinstance(text, dict) else config


def read_header(path: Path) -> Tensors:
    """A safetensors file's tensors from its header alone."""
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        if size > _HEADER_LIMIT:
            raise ValueError(f"{path.name}: header of {size} bytes")
        header = json.loads(f.read(size))
    return {name: (t["dtype"], list(t["shape"])) for name, t in header.items() if name != "__metadata__"}


def read_tensors(folder: Path) -> Tensors | None:
    """Every tensor of the folder's safetensors files; None when there are none or a header is unreadable."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    tensors: Tensors = {}
    try:
        for path in files:
            tensors.update(read_header(path))
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None
    return tensors


def _count(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def _estimate_parameters(config: dict[str, Any]) -> int | None:
    """Decoder-only transformer from config.json's shapes: embeddings, attention, MLP (MoE: every expert)."""
    try:
        hidden, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
        heads = config["num_attention_heads"]
        kv_heads = config.get("num_key_value_heads") or heads
        head_dim = config.get("head_dim") or hidden // heads
        inter = config.get("intermediate_size") or 4 * hidden
        experts = config.get("num_local_experts") or config.get("num_experts") or 1
        attention = hidden * head_dim * (2 * heads + 2 * kv_heads)
        mlp = 3 * hidden * (config.get("moe_intermediate_size") or inter) * experts
        tied = config.get("tie_word_embeddings", False)
        return int(layers * (attention + mlp) + vocab * hidden * (1 if tied else 2))
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def weights(config: dict[str, Any] | None, tensors: Tensors | None) -> Weights | None:
    """The weights as the folder's config and safetensors headers tell; None when neither does."""
    config = config or {}
    heads = config.get("num_attention_heads") if isinstance(config.get("num_attention_heads"), int) else None
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    if tensors:
        parameters = sum(_count(shape) for _, shape in tensors.values())
        stored = sum(_count(shape) * SAFETENSORS_BYTES.get(kind, 2) for kind, shape in tensors.values())
        if config.get("quantization_config"):
            return Weights(None, stored, dtype, heads, "safetensors sizes")
        return Weights(parameters, stored, dtype, heads, "safetensors headers")
    estimated = _estimate_parameters(config)
    if estimated is None:
        return None
    return Weights(estimated, None, dtype, heads, "estimated from config.json")
