"""Batch predictions for tabular work, on real vLLM: prompts from a template over columns, answers
constrained to labels or a JSON Schema (even the random-weight demo model gives a valid label or
valid JSON on every row), per-row tokens and finish reason.

A deployment with a response schema (a file in its model folder), a template and row details
serves the JSON case end to end; the other cases are our DRUM adapter (started as the entrypoint
starts it) with their own batch settings in front of that deployment's vLLM (reached with its
deployment key: a test's privilege, as in the benchmarks).
"""

from __future__ import annotations

import dataclasses
import io
import json

import jsonschema
import pandas as pd
import pytest
import requests

from bench import servers
from tests.helpers import make_model_folder, serving
from vllm_dropin.contract import LABEL_ROWS_PER_REQUEST, REQUESTS_FOR_A_BATCH_IN_FLIGHT, BatchSettings

pytestmark = pytest.mark.integration

BASE = BatchSettings(
    prompt_column_name="promptText", system_prompt=None, prompt_template="Ticket {ticket id}: {subject} / {body text}",
    response_schema=None, response_choices=None, row_details=True, max_tokens=48, n=1, temperature=0.0,
    max_concurrent_rows=16, row_errors="column",
)  # fmt: skip
SCHEMA = {
    "type": "object",
    "properties": {
        "priority": {"enum": ["low", "high"]},
        "escalate": {"type": "boolean"},
        "team": {"enum": ["network", "billing", "accounts"]},
        "tags": {"type": "array", "items": {"enum": ["vip", "repeat"]}, "maxItems": 2},
    },
    "required": ["priority", "escalate", "team", "tags"],
    "additionalProperties": False,
}
LABELS = ["billing", "outage", "question"]
ROWS = pd.DataFrame(
    {
        "ticket id": list(range(24)),
        "subject": [f"subject {i} {'{braces}'}" for i in range(24)],
        "body text": [f"the {['router', 'invoice', 'login'][i % 3]} broke on day {i}" for i in range(24)],
    }
)


@pytest.fixture(scope="module")
def schema_env(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("schema-env")
    folder = make_model_folder(root, custom_py="")
    (folder / "ticket.schema.json").write_text(json.dumps(SCHEMA))
    params = {
        "model": str(tiny_model),
        "prompt_template": BASE.prompt_template,
        "response_schema": "ticket.schema.json",
        "row_details": True,
        "row_errors": "column",
        "max_tokens": 256,
        "temperature": 0.0,
    }
    with serving(folder, root, params) as env:
        yield env


@pytest.fixture(scope="module")
def adapter_for(schema_env, tmp_path_factory):
    started = []

    def start(**changes):
        upstream = servers.vllm_endpoint_of(schema_env)
        work = tmp_path_factory.mktemp("tabular")
        service, url = servers.adapter_only(
            upstream, dataclasses.replace(BASE, **changes), work, "datarobot-deployed-llm"
        )
        started.append(service)
        service.wait_http(f"{url}/v1/models", 120)
        return service, url

    yield start
    for service in started:
        service.stop()


def predict(url: str, frame: pd.DataFrame) -> dict:
    body = io.StringIO()
    frame.to_csv(body, index=False)
    reply = requests.post(
        f"{url}/predictions/", data=body.getvalue(), headers={"Content-Type": "text/csv"}, timeout=600
    )
    assert reply.status_code == 200, reply.text[:500]
    return reply.json()


def extra_columns(answer: dict) -> pd.DataFrame:
    extra = answer["extraModelOutput"]  # DRUM's 'split' orientation
    return pd.DataFrame(extra["data"], columns=extra["columns"])


def test_labels_on_every_row_from_a_template_with_details(adapter_for):
    _, url = adapter_for(response_choices=LABELS, max_tokens=48)
    answer = predict(url, ROWS)
    assert len(answer["predictions"]) == len(ROWS)
    assert set(answer["predictions"]) <= set(LABELS), answer["predictions"]
    details = extra_columns(answer)
    assert list(details.columns) == ["error", "prompt_tokens", "completion_tokens", "finish_reason"]
    assert (details["finish_reason"] == "stop").all()
    assert (details["prompt_tokens"] > 5).all() and (details["completion_tokens"] >= 1).all()


def test_valid_json_matching_the_schema_on_every_row(schema_env):
    assert '"disable_any_whitespace": true' in schema_env.log()  # the engine runs without free whitespace
    answer = predict(schema_env.url, ROWS)
    for text in answer["predictions"]:
        jsonschema.validate(json.loads(text), SCHEMA)
    assert (extra_columns(answer)["finish_reason"] == "stop").all()


def test_template_rows_are_what_a_chat_of_that_prompt_answers(adapter_for, schema_env):
    _, url = adapter_for(max_tokens=8, response_schema=None)
    answer = predict(url, ROWS.head(3))
    import openai

    client = openai.OpenAI(base_url=f"{schema_env.url}/v1", api_key="unused")
    for i, predicted in enumerate(answer["predictions"]):
        prompt = f"Ticket {i}: subject {i} {{braces}} / {ROWS['body text'][i]}"
        chat = client.chat.completions.create(
            model="datarobot-deployed-llm", messages=[{"role": "user", "content": prompt}], max_tokens=8, temperature=0
        )
        assert predicted == chat.choices[0].message.content
    assert (extra_columns(answer)["finish_reason"] == "length").all()  # 8 tokens cut every answer: visible


GROUPED = '"POST /v1/chat/completions/batch HTTP/1.1" 200'  # vLLM's access line for several rows


def grouped_requests(env, expected: int) -> int:
    """vLLM's batch-endpoint requests in the log, once `expected` arrived or 30 s passed."""
    return env.wait_log(lambda log: log.count(GROUPED) >= expected).count(GROUPED)


def test_a_batch_that_fits_in_flight_goes_in_a_few_requests_each_row_answered_as_alone(adapter_for, schema_env):
    before = schema_env.log().count(GROUPED)
    _, url = adapter_for(row_details=False, max_tokens=8, max_concurrent_rows=len(ROWS))  # rows_per_request unset
    together = predict(url, ROWS)["predictions"]
    _, alone_url = adapter_for(row_details=False, max_tokens=8, rows_per_request=1)
    alone = predict(alone_url, ROWS)["predictions"]
    assert together == alone and len(set(together)) > 1
    expected = before + REQUESTS_FOR_A_BATCH_IN_FLIGHT  # 24 rows: 8 requests of 3
    assert grouped_requests(schema_env, expected) == expected


def test_labels_and_json_rows_sent_together_are_each_constrained(adapter_for, schema_env):
    before = schema_env.log().count(GROUPED)
    _, url = adapter_for(row_details=False, response_choices=LABELS)  # 24 rows, 16 in flight: labels 8 to a request
    assert set(predict(url, ROWS)["predictions"]) <= set(LABELS)
    _, url = adapter_for(row_details=False, response_schema=json.dumps(SCHEMA), max_tokens=256, max_concurrent_rows=24)
    for text in predict(url, ROWS)["predictions"]:  # fits in flight: 8 requests of 3
        jsonschema.validate(json.loads(text), SCHEMA)
    expected = before + len(ROWS) // LABEL_ROWS_PER_REQUEST + REQUESTS_FOR_A_BATCH_IN_FLIGHT
    assert grouped_requests(schema_env, expected) == expected


def test_an_empty_cell_is_a_row_error_and_a_missing_column_a_422(adapter_for):
    _, url = adapter_for(response_choices=LABELS)
    frame = ROWS.head(2).copy()
    frame.loc[1, "subject"] = ""
    details = extra_columns(predict(url, frame))
    assert details["error"].isna().tolist() == [True, False]
    assert details["error"][1] == "column 'subject' is empty"
    reply = requests.post(f"{url}/predictions/", json=[{"ticket id": 1, "subject": "x"}], timeout=60)
    assert reply.status_code == 422
    assert "names column(s) 'body text' that the request lacks; columns present: ticket id, subject" in reply.text
