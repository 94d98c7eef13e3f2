"""stream_weights on real vLLM: the model in moto's S3 server (authentication on), its weights read
by vLLM's Run:ai model streamer straight from the store, the rest fetched into cache_dir; answers
equal to the fetched model's (the main environment serves the same model, float32 greedy)."""

from __future__ import annotations

import openai
import pytest

from tests import store_servers
from tests.helpers import make_model_folder, serving
from vllm_dropin.config import runtime_params
from vllm_dropin.errors import ConfigError
from vllm_dropin.model.artifacts import fetch as artifacts

pytestmark = pytest.mark.integration
PROMPTS = ["Tell me about rivers.", "Name a colour."]


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("streamed-store")
    store = store_servers.moto_s3(root)
    client = store_servers.s3_client(store)
    client.create_bucket(Bucket="models")
    store_servers.upload_folder(lambda key, path: client.upload_file(str(path), "models", key), tiny_model, "tiny/")
    for path in tiny_model.iterdir():
        if path.suffix != ".safetensors":
            client.upload_file(str(path), "models", f"no-safetensors/{path.name}")
    yield store
    store.kill()


def params_of(store, cache) -> dict:
    return {
        "artifact_uri": "s3://models/tiny",
        "artifact_endpoint_url": store.endpoint,
        "artifact_credential": store.credential,
        "stream_weights": True,
        "cache_dir": str(cache),
        "max_tokens": 8,
        "temperature": 0.0,
    }


@pytest.fixture(scope="module")
def streamed_env(tmp_path_factory, store):
    root = tmp_path_factory.mktemp("streamed-env")
    with serving(make_model_folder(root), root, params_of(store, root / "cache")) as env:
        env.root = root
        yield env


def chat(env, prompt: str) -> str:
    client = openai.OpenAI(base_url=f"{env.url}/v1", api_key="unused")
    reply = client.chat.completions.create(
        model="datarobot-deployed-llm", messages=[{"role": "user", "content": prompt}], max_tokens=8, temperature=0.0
    )
    return reply.choices[0].message.content


def test_streamed_weights_answer_as_the_fetched_model_does(streamed_env, main_env):
    for prompt in PROMPTS:
        assert chat(streamed_env, prompt) == chat(main_env, prompt)


def test_the_weights_are_read_from_the_store_and_never_land_in_cache_dir(streamed_env, store):
    log = streamed_env.log()
    assert "vllm serve s3://models/tiny" in log and "--load-format runai_streamer" in log
    assert "Loading safetensors using Runai Model Streamer" in log
    cache = streamed_env.root / "cache"
    assert list(cache.rglob("*.safetensors")) == []
    assert [p.name for p in cache.rglob("config.json") if "artifacts" in p.parts] == ["config.json"]
    assert store.credential["awsSecretAccessKey"] not in log


def test_streaming_needs_an_s3_uri_and_safetensors_in_it(store, tmp_path):
    gcs = runtime_params.parse({"artifact_uri": "gs://models/tiny", "stream_weights": True})
    with pytest.raises(ConfigError, match="'stream_weights' needs an s3:// artifact_uri; gs://models/tiny"):
        artifacts.fetch(gcs, tmp_path)
    bins = runtime_params.parse({**params_of(store, tmp_path), "artifact_uri": "s3://models/no-safetensors"})
    with pytest.raises(ConfigError, match=r"holds no \.safetensors files, the only weights the streamer reads"):
        artifacts.fetch(bins, tmp_path)
