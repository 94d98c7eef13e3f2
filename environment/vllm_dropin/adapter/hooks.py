"""The hooks DRUM calls: load_model builds the vLLM client; score, chat and models use it."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from . import batch, csv_input
from . import chat as chat_mod
from .client import Upstream, from_environ, wait_until_healthy


def load_model(code_dir: str) -> Upstream:
    """Per DRUM worker: wait for the vLLM the entrypoint started (the user's hook already ran)."""
    upstream = from_environ()
    wait_until_healthy(os.environ["DROPIN_UPSTREAM_URL"], float(os.environ["DROPIN_STARTUP_TIMEOUT"]))
    return upstream


def read_input_data(input_binary_data: bytes) -> pd.DataFrame:
    return csv_input.read_csv(input_binary_data)


def score(data: pd.DataFrame, model: Upstream, **kwargs: Any) -> pd.DataFrame:
    return batch.score(data, model, os.environ.get("TARGET_NAME", "resultText"))


def chat(completion_create_params: dict[str, Any], model: Upstream, **kwargs: Any) -> Any:
    return chat_mod.chat(completion_create_params, model)


def get_supported_llm_models(model: Upstream) -> list[Any]:
    return chat_mod.models(model)
