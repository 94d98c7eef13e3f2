"""vLLM's own routes through the deployment, answered as vLLM itself answers them: the openai client
and raw HTTP through the deployment (bare and under /directAccess/) and straight to the
environment's vLLM, float32 greedy, so answers are equal."""

from __future__ import annotations

import json

import openai
import pytest
import requests

from bench import servers
from tests.helpers import CPU_ENGINE_ARGS, make_model_folder, serving

pytestmark = pytest.mark.integration
MODEL = "datarobot-deployed-llm"
PASSTHROUGH = "/directAccess"


def prefixes(env) -> dict[str, str]:
    """Each way to vLLM's routes: through the deployment bare and under /directAccess/, and direct."""
    direct = servers.vllm_endpoint_of(env)
    return {"bare": env.url, "directAccess": env.url + PASSTHROUGH, "direct": direct.base_url.removesuffix("/v1")}


def clients(env) -> dict[str, openai.OpenAI]:
    key = servers.vllm_endpoint_of(env).api_key
    return {
        name: openai.OpenAI(base_url=f"{root}/v1", api_key=key if name == "direct" else "any", max_retries=0)
        for name, root in prefixes(env).items()
    }


def post_each(env, path: str, body: dict) -> dict[str, requests.Response]:
    key = servers.vllm_endpoint_of(env).api_key
    headers = {"Authorization": f"Bearer {key}"}
    return {
        name: requests.post(root + path, json=body, headers=headers, timeout=120)
        for name, root in prefixes(env).items()
    }


def without_ids(answer: dict) -> dict:
    """An answer without what differs from one request to the next (its id and time)."""
    return {k: v for k, v in answer.items() if k not in ("id", "created", "created_at")} | {
        "output": [{k: v for k, v in item.items() if k != "id"} for item in answer.get("output", [])]
    }


def test_completions_equal_vllms(main_env):
    answers = {
        name: client.completions.create(model=MODEL, prompt="The rivers of", max_tokens=8, temperature=0)
        for name, client in clients(main_env).items()
    }
    assert answers["direct"].choices[0].text
    for name in ("bare", "directAccess"):
        assert answers[name].choices == answers["direct"].choices, name
        assert answers[name].usage == answers["direct"].usage, name


def test_streamed_completions_equal_vllms_events(main_env):
    """The client's chunks, and the SSE framing itself: vLLM's events, each whole, then [DONE]."""
    texts = {}
    for name, client in clients(main_env).items():
        stream = client.completions.create(model=MODEL, prompt="Once", max_tokens=8, temperature=0, stream=True)
        texts[name] = [chunk.choices[0].text for chunk in stream if chunk.choices]
    assert len(texts["direct"]) > 2
    assert texts["bare"] == texts["directAccess"] == texts["direct"]

    body = {"model": MODEL, "prompt": "Once", "max_tokens": 4, "temperature": 0, "stream": True}
    framed = {}
    for name, response in post_each(main_env, "/v1/completions", body).items():
        assert response.headers["content-type"].startswith("text/event-stream"), name
        events = response.text.split("\n\n")
        assert events[-2:] == ["data: [DONE]", ""], name
        framed[name] = [json.loads(e.removeprefix("data: "))["choices"] for e in events[:-2]]
    assert framed["bare"] == framed["directAccess"] == framed["direct"]


def test_responses_equal_vllms(main_env):
    answers = {
        name: client.responses.create(model=MODEL, input="Name a colour.", max_output_tokens=6, temperature=0)
        for name, client in clients(main_env).items()
    }
    assert answers["direct"].output_text
    for name in ("bare", "directAccess"):
        assert without_ids(answers[name].model_dump()) == without_ids(answers["direct"].model_dump()), name


def test_tokenize_round_trip(main_env):
    tokenized = post_each(main_env, "/tokenize", {"model": MODEL, "prompt": "hello there, rivers"})
    assert {r.status_code for r in tokenized.values()} == {200}
    assert tokenized["bare"].json() == tokenized["directAccess"].json() == tokenized["direct"].json()
    tokens = tokenized["bare"].json()["tokens"]
    text = post_each(main_env, "/detokenize", {"model": MODEL, "tokens": tokens})
    assert text["bare"].json() == text["direct"].json()
    assert "rivers" in text["bare"].json()["prompt"]


def test_get_routes_and_vllms_health(main_env):
    roots = prefixes(main_env)
    versions = {name: requests.get(f"{root}/version", timeout=30) for name, root in roots.items()}
    assert versions["bare"].json() == versions["directAccess"].json() == versions["direct"].json()
    assert requests.get(f"{main_env.url}/health", timeout=30, allow_redirects=False).status_code == 200
    assert requests.get(f"{main_env.url}/health/", timeout=30).json() == {"message": "OK"}  # DRUM's, as before


def test_vllms_own_errors_come_back_as_vllm_sent_them(main_env):
    for body in (
        {"model": "no-such-model", "prompt": "x", "max_tokens": 2},
        {"model": MODEL, "prompt": "x", "max_tokens": -1},
    ):
        answers = post_each(main_env, "/v1/completions", body)
        assert answers["direct"].status_code in (400, 404)
        for name in ("bare", "directAccess"):
            assert answers[name].status_code == answers["direct"].status_code, name
            assert answers[name].json() == answers["direct"].json(), name
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        clients(main_env)["bare"].completions.create(model="no-such-model", prompt="x", max_tokens=2)


@pytest.mark.parametrize("prefix", ["", PASSTHROUGH, "/nim"])
@pytest.mark.parametrize(
    ("method", "path", "status", "named"),
    [
        ("GET", "/v1/no-such-route", 404, "/v1/no-such-route"),
        ("POST", "/v1/embeddings", 404, "/v1/embeddings"),  # a route a generative model lacks
        ("DELETE", "/version", 405, "DELETE"),
    ],
)
def test_unknown_paths_and_methods_are_json_errors_naming_them(main_env, prefix, method, path, status, named):
    response = requests.request(method, f"{main_env.url}{prefix}{path}", json={}, timeout=30)
    assert response.status_code == status
    error = response.json()["error"]
    assert named in error["message"] and error["code"] == status


def test_drums_routing_errors_are_json_too(main_env):
    response = requests.post(f"{main_env.url}/", timeout=30)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == 405


def test_the_callers_credentials_stay_with_the_deployment(main_env):
    """vLLM gets its deployment key whatever the caller sends (a wrong key straight to vLLM is 401)."""
    body = {"model": MODEL, "prompt": "x", "max_tokens": 2}
    for root in (main_env.url, main_env.url + PASSTHROUGH):
        response = requests.post(
            f"{root}/v1/completions", json=body, headers={"Authorization": "Bearer wrong"}, timeout=60
        )
        assert response.status_code == 200
    direct = prefixes(main_env)["direct"]
    assert (
        requests.post(
            f"{direct}/v1/completions", json=body, headers={"Authorization": "Bearer wrong"}, timeout=60
        ).status_code
        == 401
    )


def test_chat_keeps_drums_view(main_env):
    """Chat stays DRUM's route (its association id); under /directAccess/ it is vLLM's own answer."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "temperature": 0}
    answers = post_each(main_env, "/v1/chat/completions", body)
    assert "datarobot_association_id" in answers["bare"].json()
    assert "datarobot_association_id" not in answers["directAccess"].json()
    assert (
        answers["bare"].json()["choices"][0]["message"]["content"]
        == answers["direct"].json()["choices"][0]["message"]["content"]
    )


# Pooling models: the tiny model served as an embedding model.


@pytest.fixture(scope="module")
def pooling_env(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("pooling-env")
    folder = make_model_folder(root, engine_args=[*CPU_ENGINE_ARGS, "--runner", "pooling", "--convert", "embed"])
    params = {"model": str(tiny_model), "prompt_template": "Topic: {topic}", "rows_per_request": 2}
    with serving(folder, root, params) as env:
        yield env


def test_embeddings_equal_vllms(pooling_env):
    answers = {
        name: client.embeddings.create(model=MODEL, input=["rivers", "a longer text about colours"])
        for name, client in clients(pooling_env).items()
    }
    vectors = {name: [item.embedding for item in answer.data] for name, answer in answers.items()}
    assert len(vectors["direct"]) == 2 and len(vectors["direct"][0]) > 8
    assert vectors["bare"] == vectors["directAccess"] == vectors["direct"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/pooling", {"model": MODEL, "input": "rivers"}),
        ("/score", {"model": MODEL, "text_1": "rivers", "text_2": ["streams", "colours"]}),
        ("/rerank", {"model": MODEL, "query": "rivers", "documents": ["streams", "colours"]}),
    ],
)
def test_pooling_routes_equal_vllms(pooling_env, path, body):
    answers = post_each(pooling_env, path, body)
    assert answers["direct"].status_code == 200, answers["direct"].text
    expected = without_ids(answers["direct"].json())
    for name in ("bare", "directAccess"):
        assert answers[name].status_code == 200, name
        assert without_ids(answers[name].json()) == expected, name


def test_batch_rows_of_an_embedding_model_get_their_embeddings(pooling_env):
    """The target column holds each row's embedding as a JSON list, the prompt_template applied,
    equal to vLLM's embedding of that prompt; an empty cell is named."""
    csv = "topic\nrivers\ncolours\nmountains\n"
    response = requests.post(
        f"{pooling_env.url}/predictions/", data=csv, headers={"Content-Type": "text/csv"}, timeout=300
    )
    assert response.status_code == 200, response.text
    cells = [json.loads(cell) for cell in response.json()["predictions"]]
    direct = clients(pooling_env)["direct"].embeddings.create(
        model=MODEL, input=["Topic: rivers", "Topic: colours", "Topic: mountains"]
    )
    # equal but for the last bits: rows were embedded in other batches than these three
    assert cells == [pytest.approx(item.embedding, rel=1e-4, abs=1e-6) for item in direct.data]

    empty = requests.post(
        f"{pooling_env.url}/predictions/", data='topic\nrivers\n""\n', headers={"Content-Type": "text/csv"}, timeout=300
    )
    assert empty.status_code == 422 and "row 1" in empty.json()["message"]


def test_chat_on_an_embedding_model_names_the_route_it_lacks(pooling_env):
    with pytest.raises(openai.NotFoundError, match="/v1/chat/completions"):
        clients(pooling_env)["bare"].chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
