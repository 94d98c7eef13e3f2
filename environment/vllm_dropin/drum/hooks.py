"""The hooks DRUM calls: load_model connects to vLLM; score, chat and models use that connection."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from vllm_dropin import health
from vllm_dropin.contract import Layout, WorkerContract
from vllm_dropin.drum import batch, batch_input
from vllm_dropin.drum import chat as chat_mod
from vllm_dropin.drum.client import Upstream, connect

_loaded: list[Upstream] = []  # this worker's, for the routes DRUM's hooks do not cover (drum.relay)


def loaded() -> Upstream:
    """The connection load_model made (DRUM loads the model before it serves a request)."""
    return _loaded[0]


def load_model(code_dir: str) -> Upstream:
    """Per DRUM worker: wait for the vLLM the supervisor started (the model's own hook already ran),
    then size batches by the layout that vLLM's process wrote before it started.

    A worker that has not loaded takes no requests, so the deployment is not ready before vLLM."""
    contract = WorkerContract.from_env(os.environ)
    try:
        health.wait(contract.vllm.health_url, contract.startup_timeout_s)
    except TimeoutError:
        raise RuntimeError(
            f"vLLM was not healthy after {contract.startup_timeout_s:g} s (see the [vllm] log lines)"
        ) from None
    upstream = connect(contract, Layout.read(contract.layout_file))
    _loaded[:] = [upstream]
    return upstream


def read_input_data(input_binary_data: bytes) -> pd.DataFrame:
    return batch_input.read_body(input_binary_data)


def score(data: pd.DataFrame, model: Upstream, **kwargs: Any) -> pd.DataFrame:
    return batch.score(data, model)


def chat(completion_create_params: dict[str, Any], model: Upstream, **kwargs: Any) -> Any:
    return chat_mod.chat(completion_create_params, model)


def get_supported_llm_models(model: Upstream) -> list[Any]:
    return chat_mod.models(model)
