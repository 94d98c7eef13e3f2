"""Request data (prompts, cells, JSON values) never reaches an error, a log line or an event (chat,
batch and vLLM's relayed routes alike); JSON
batches are read as the platform sends them; chat errors come back in OpenAI's shape."""

from __future__ import annotations

import json

import openai
import pytest
import requests

from tests.integration.conftest import post_csv

pytestmark = pytest.mark.integration

MARK = "zqxMARKEDxqz"  # in every prompt and cell sent below; must appear in no response error or log
JSON = {"Content-Type": "application/json"}
CSV = {"Content-Type": "text/csv"}


def client(env) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{env.url}/v1", api_key="unused", max_retries=0)


def test_json_records_are_answered_like_a_csv(main_env):
    records = [{"promptText": "Say one word."}, {"promptText": "Say two words."}]
    as_json = requests.post(f"{main_env.url}/predictions/", json=records, timeout=300)
    as_data = requests.post(f"{main_env.url}/predictions/", json={"data": records}, timeout=300)
    as_csv = post_csv(main_env, "promptText\nSay one word.\nSay two words.\n")
    assert as_json.status_code == as_data.status_code == as_csv.status_code == 200, as_json.text[:300]
    assert as_json.json()["predictions"] == as_data.json()["predictions"] == as_csv.json()["predictions"]


def test_chat_errors_come_in_openais_shape_with_vllms_values(main_env):
    with pytest.raises(openai.NotFoundError) as err:
        client(main_env).chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 404
    body = err.value.body
    assert set(body) >= {"message", "type", "param", "code"}
    assert "no-such-model" in body["message"] and not body["message"].startswith("vLLM")
    assert body["type"] == "NotFoundError"
    with pytest.raises(openai.BadRequestError) as err:
        client(main_env).chat.completions.create(
            model="datarobot-deployed-llm", messages=[{"role": "user", "content": "x"}], max_tokens=-1
        )
    assert err.value.body["message"] and err.value.body["type"] == "BadRequestError"


# Every batch and chat error path, each carrying MARK in its data.
MARKED_BATCHES = [
    (f"promptText\n{MARK} one\n\n".encode(), CSV),  # an empty row: 422 naming row 1
    (f"question\n{MARK}\n".encode(), CSV),  # wrong column
    (f"{MARK} as a header that is far too long to be a column name\nx\n".encode(), CSV),  # no header row
    (f'promptText,b\n"{MARK},1\n'.encode(), CSV),  # broken quoting
    (f"a,b\n{MARK},2,3\n".encode(), CSV),  # extra fields
    (f"promptText\n{MARK} café\n".encode("latin-1"), CSV),  # not UTF-8
    (json.dumps([{"question": MARK}]).encode(), JSON),
    (json.dumps({"promptText": [MARK]}).encode(), JSON),
    (json.dumps([MARK]).encode(), JSON),
    (f'[{{"promptText": "{MARK}"'.encode(), JSON),  # truncated JSON
    (json.dumps([{"promptText": MARK + " " + "x" * (1 << 20)}]).encode(), JSON),  # too long for the model
]
MARKED_CHATS = [
    {"model": "no-such-model", "messages": [{"role": "user", "content": MARK}]},
    {"model": "datarobot-deployed-llm", "messages": [{"role": "user", "content": MARK}], "max_tokens": -1},
    {"model": "datarobot-deployed-llm", "messages": [{"role": "user", "content": MARK}], "temperature": -1},
    {"model": "datarobot-deployed-llm", "messages": MARK},
    {"model": "datarobot-deployed-llm", "messages": [{"role": "user", "content": MARK * 50000}]},
]

# vLLM's other routes, relayed (bare and under /directAccess/): vLLM's errors go to their caller only.
MARKED_RELAYED = [
    ("/v1/completions", {"model": "no-such-model", "prompt": MARK}),
    ("/v1/completions", {"model": "datarobot-deployed-llm", "prompt": MARK, "max_tokens": -1}),
    ("/v1/responses", {"model": "no-such-model", "input": MARK}),
    ("/tokenize", {"model": "no-such-model", "prompt": MARK}),
    ("/v1/embeddings", {"model": "datarobot-deployed-llm", "input": MARK}),  # no such route here
]


def test_marked_request_data_reaches_no_error_and_no_log(main_env):
    before = len(main_env.log())
    errors = []
    for body, headers in MARKED_BATCHES:
        reply = requests.post(f"{main_env.url}/predictions/", data=body, headers=headers, timeout=300)
        assert 400 <= reply.status_code < 500, (reply.status_code, reply.text[:300])
        errors.append(reply.text)
    for body in MARKED_CHATS:
        reply = requests.post(f"{main_env.url}/v1/chat/completions", json=body, timeout=300)
        assert 400 <= reply.status_code < 500, (reply.status_code, reply.text[:300])
        errors.append(json.dumps(reply.json()["error"]["type"]))  # the message is vLLM's answer to its caller
    for prefix in ("", "/directAccess"):
        for path, body in MARKED_RELAYED:
            reply = requests.post(f"{main_env.url}{prefix}{path}", json=body, timeout=300)
            assert 400 <= reply.status_code < 500, (path, reply.status_code, reply.text[:300])
            errors.append(json.dumps(reply.json()["error"]["type"]))
    assert [e for e in errors if MARK in e] == []
    logged = main_env.log()[before:]
    assert MARK not in logged, logged[logged.find(MARK) - 300 : logged.find(MARK) + 100]
