"""One real environment (vLLM + DRUM, started by environment/start_server.sh) per test session."""

from __future__ import annotations

import pytest
import requests

from demo.running import RunningEnvironment, runtime_param_env
from tests.helpers import counting_custom_py, make_model_folder

MAIN_PARAMS = {"max_tokens": 8, "temperature": 0.0, "max_concurrent_rows": 16}


@pytest.fixture(scope="session")
def main_env(tmp_path_factory, tiny_model):
    """The air-gapped flow: no `model` parameter, no hub (HF_ENDPOINT points nowhere); the model
    folder's load_model copies the model into ${CODE_DIR}/vllm/; DRUM runs two workers."""
    root = tmp_path_factory.mktemp("main-env")
    folder = make_model_folder(root, custom_py=counting_custom_py())
    env = RunningEnvironment(
        folder,
        root / "environment.log",
        env={
            **runtime_param_env({**MAIN_PARAMS, "artifact_uri": str(tiny_model)}),
            "HOOK_MARKER": str(root / "hook-calls.txt"),
            "HF_ENDPOINT": "http://127.0.0.1:9",
            "MAX_WORKERS": "2",
        },
    )
    try:
        env.wait_ready()
        env.root = root
        yield env
    finally:
        env.stop()


def post_csv(env: RunningEnvironment, csv: str) -> requests.Response:
    return requests.post(
        f"{env.url}/predictions/", data=csv.encode(), headers={"Content-Type": "text/csv"}, timeout=300
    )


def csv_of(prompts: list[str], column: str = "promptText") -> str:
    import io

    import pandas as pd

    buffer = io.StringIO()
    pd.DataFrame({column: prompts}).to_csv(buffer, index=False)
    return buffer.getvalue()
