"""How much GPU memory a model's weights take as vLLM serves them, read from the model folder.

Parameters are counted from the safetensors headers (a few KB read per file, never the weights);
without safetensors, estimated from config.json's shapes. The served dtype is what vLLM's
`--dtype auto` picks (the config's dtype, float32 served as bfloat16) unless --dtype says
otherwise; a quantized checkpoint takes what its files take.
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


@dataclass(frozen=True)
class ModelFootprint:
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


def _config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(config, dict):
        return {}
    text = config.get("text_config")
    return {**config, **text} if isinstance(text, dict) else config


def read_header(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        if size > _HEADER_LIMIT:
            raise ValueError(f"{path.name}: header of {size} bytes")
        return json.loads(f.read(size))


def _safetensors(folder: Path) -> tuple[int, int] | None:
    """(parameters, bytes on disk of the tensors) of the folder's safetensors files."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    parameters = stored = 0
    try:
        for path in files:
            for name, tensor in read_header(path).items():
                if name == "__metadata__":
                    continue
                count = 1
                for dim in tensor["shape"]:
                    count *= dim
                parameters += count
                stored += count * SAFETENSORS_BYTES.get(tensor["dtype"], 2)
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None
    return parameters, stored


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


def served_dtype(config: dict[str, Any], dtype_flag: str | None) -> str:
    """vLLM's choice: --dtype if given (not auto), else the config's dtype with float32 served as bfloat16."""
    if dtype_flag and dtype_flag != "auto":
        return {"float": "float32", "half": "float16"}.get(dtype_flag, dtype_flag)
    configured = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    return "bfloat16" if configured in ("float32", "float") else configured


def of_folder(folder: Path, dtype_flag: str | None = None) -> ModelFootprint | None:
    """The footprint of a local model folder, or None when neither safetensors nor config.json tell."""
    config = _config(folder)
    heads = config.get("num_attention_heads") if isinstance(config.get("num_attention_heads"), int) else None
    dtype = served_dtype(config, dtype_flag)
    counted = _safetensors(folder)
    if counted and config.get("quantization_config"):
        return ModelFootprint(counted[1], None, "quantized", heads, "safetensors sizes")
    if counted:
        return ModelFootprint(counted[0] * BYTES.get(dtype, 2), counted[0], dtype, heads, "safetensors headers")
    estimated = _estimate_parameters(config)
    if estimated is None:
        return None
    return ModelFootprint(estimated * BYTES.get(dtype, 2), estimated, dtype, heads, "estimated from config.json")
