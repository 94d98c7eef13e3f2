"""One real environment (vLLM + DRUM, started by environment/start_server.sh) per test session."""

from __future__ import annotations

import pytest
import requests

from demo.running import RunningEnvironment, runtime_param_env
from tests import store_servers
from tests.helpers import counting_custom_py, make_model_folder

MAIN_PARAMS = {"max_tokens": 8, "temperature": 0.0, "max_concurrent_rows": 16, "rows_per_request": 8}
# Known secrets set on the main environment; test_secrets looks for them everywhere.
HF_TOKEN = "hf_MainEnvSecretToken0123456789"
PLATFORM_TOKEN = "dr-platform-MainEnvSecret-9876543210"
ARTIFACT_SECRET = "ArtifactStoreSecretKey-MainEnv-24680"


@pytest.fixture(scope="session")
def main_env(tmp_path_factory, tiny_model):
    """The air-gapped flow: no `model` parameter, no hub (HF_ENDPOINT points nowhere); the model
    comes from an S3-compatible store (moto's server) through artifact_uri, after the model
    folder's load_model (which only counts its calls) ran; DRUM runs two workers. A Hugging Face
    token, the store's keys and the platform's API token are set (the platform endpoint refuses
    connections)."""
    root = tmp_path_factory.mktemp("main-env")
    folder = make_model_folder(root, custom_py=counting_custom_py())
    keys = {"credentialType": "s3", "awsAccessKeyId": "main-env-key-id", "awsSecretAccessKey": ARTIFACT_SECRET}
    store = store_servers.moto_s3(root, open_keys=keys)
    client = store_servers.s3_client(store)
    client.create_bucket(Bucket="models")
    store_servers.upload_folder(lambda key, path: client.upload_file(str(path), "models", key), tiny_model, "tiny/")
    env = RunningEnvironment(
        folder,
        root / "environment.log",
        env={
            **runtime_param_env(
                {
                    **MAIN_PARAMS,
                    "artifact_uri": "s3://models/tiny",
                    "artifact_endpoint_url": store.endpoint,
                    "artifact_credential": keys,
                    "cache_dir": str(root / "cache"),
                    "HuggingFaceToken": {"credentialType": "api_token", "apiToken": HF_TOKEN},
                }
            ),
            "DATAROBOT_API_TOKEN": PLATFORM_TOKEN,
            "DATAROBOT_ENDPOINT": "http://127.0.0.1:9/api/v2",
            "MLOPS_DEPLOYMENT_ID": "dep-under-test",
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
        store.kill()


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
