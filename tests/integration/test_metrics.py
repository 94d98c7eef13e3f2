"""GET /metrics at the deployment: vLLM's series and the deployment's own, added up over DRUM's two
workers, in a text prometheus_client's parser reads; counts equal what was sent and told."""

from __future__ import annotations

import json

import openai
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import csv_of, post_csv

pytestmark = pytest.mark.integration
MODEL = "datarobot-deployed-llm"


def scraped(env, prefix: str = "") -> dict[tuple[str, tuple], float]:
    """Every sample of GET /metrics by (name, sorted labels)."""
    response = requests.get(f"{env.url}{prefix}/metrics", timeout=60)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = text_string_to_metric_families(response.text)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_hold_vllms_series_and_the_deployments(main_env):
    for prefix in ("", "/directAccess"):
        samples = scraped(main_env, prefix)
        names = {name for name, _ in samples}
        assert any(name.startswith("vllm:") for name in names), sorted(names)[:20]
        assert "vllm:num_requests_running" in names


def test_requests_over_both_workers_are_counted_once_each(main_env):
    """Ten completions each on a new connection (the kernel spreads them over DRUM's two workers):
    the deployment's counter grows by exactly ten, the tokens by exactly what the answers said."""
    before = scraped(main_env)
    told = {"prompt": 0, "completion": 0}
    for i in range(10):
        with requests.Session() as fresh:
            answer = fresh.post(
                f"{main_env.url}/v1/completions",
                json={"model": MODEL, "prompt": f"count {i}", "max_tokens": 3},
                timeout=60,
            ).json()
        told["prompt"] += answer["usage"]["prompt_tokens"]
        told["completion"] += answer["usage"]["completion_tokens"]
    after = scraped(main_env)
    route = {"route": "/v1/completions"}
    grown = value(after, "vllm_dropin_requests_total", **route, status="200") - value(
        before, "vllm_dropin_requests_total", **route, status="200"
    )
    assert grown == 10
    for kind, tokens in told.items():
        labels = {**route, "kind": kind, "model": MODEL}
        assert (
            value(after, "vllm_dropin_tokens_total", **labels) - value(before, "vllm_dropin_tokens_total", **labels)
            == tokens
        )
    durations = value(after, "vllm_dropin_request_duration_seconds_count", **route)
    assert durations - value(before, "vllm_dropin_request_duration_seconds_count", **route) == 10


def test_chat_stream_and_batch_series(main_env):
    before = scraped(main_env)
    client = openai.OpenAI(base_url=f"{main_env.url}/v1", api_key="unused", max_retries=0)
    plain = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert [c for c in client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True
    )]  # fmt: skip
    assert post_csv(main_env, csv_of(["one", "two", "three"])).status_code == 200
    assert post_csv(main_env, 'promptText\nfine\n""\n').status_code == 422  # one row fails
    after = scraped(main_env)

    def grown(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    chat = {"route": "/v1/chat/completions"}
    assert grown("vllm_dropin_requests_total", **chat, status="200") == 2
    assert grown("vllm_dropin_time_to_first_token_seconds_count", **chat) == 1
    prompt = {**chat, "kind": "prompt", "model": MODEL}
    assert grown("vllm_dropin_tokens_total", **prompt) == 2 * plain.usage.prompt_tokens  # the same chat streamed
    assert grown("vllm_dropin_batch_rows_total", outcome="ok") == 4
    assert grown("vllm_dropin_batch_rows_total", outcome="failed") == 1
    assert grown("vllm_dropin_requests_total", route="/predictions/", status="422") == 1
    assert value(after, "vllm_dropin_batch_rows_in_flight") == 0
    assert grown("vllm_dropin_tokens_total", route="/predictions/", kind="completion", model=MODEL) > 0


@pytest.mark.parametrize(
    ("prefix", "path", "body"),
    [
        ("", "/v1/chat/completions", {"messages": [{"role": "user", "content": "count me"}]}),
        ("/directAccess", "/v1/chat/completions", {"messages": [{"role": "user", "content": "count me"}]}),
        ("", "/v1/completions", {"prompt": "count me"}),
    ],
)
def test_streams_count_their_usage_whether_or_not_the_client_asked(main_env, prefix, path, body):
    """A stream's tokens are those vLLM counts for the same request unstreamed; a client that did
    not ask for usage gets no usage event, one that asked gets vLLM's."""
    body = {"model": MODEL, "max_tokens": 5, "temperature": 0, **body}
    url = f"{main_env.url}{prefix}{path}"
    told = requests.post(url, json=body, timeout=60).json()["usage"]
    before = scraped(main_env)
    for options in ({}, {"stream_options": {"include_usage": True}}):
        response = requests.post(url, json={**body, "stream": True, **options}, timeout=60)
        events = [json.loads(e.removeprefix("data: ")) for e in response.text.split("\n\n") if e.startswith("data: {")]
        counts = [(e["usage"]["prompt_tokens"], e["usage"]["completion_tokens"]) for e in events if e.get("usage")]
        assert counts == ([(told["prompt_tokens"], told["completion_tokens"])] if options else [])
    after = scraped(main_env)
    for kind in ("prompt", "completion"):
        labels = {"route": path, "kind": kind, "model": MODEL}
        grown = value(after, "vllm_dropin_tokens_total", **labels) - value(before, "vllm_dropin_tokens_total", **labels)
        assert grown == 2 * told[f"{kind}_tokens"]


def logged_requests(env, since: int) -> list[dict]:
    """The JSON request lines DRUM's workers logged since offset `since` of the log."""
    lines = [line.removeprefix("[drum] ") for line in env.log()[since:].splitlines()]
    return [json.loads(line) for line in lines if line.startswith('{"event": "request"')]


def test_one_json_line_per_request_without_its_text(main_env):
    since = len(main_env.log())
    secret = "zqxLOGLINEzqx"
    client = openai.OpenAI(base_url=f"{main_env.url}/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": secret}], max_tokens=4)
    streamed = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": secret}], max_tokens=4, stream=True
    ))  # fmt: skip
    assert post_csv(main_env, csv_of([secret, secret + " again"])).status_code == 200
    expected = 3
    lines = main_env.wait_log(lambda log: len(logged_requests(main_env, since)) >= expected)
    assert secret not in lines[since:]
    plain, stream, batch = logged_requests(main_env, since)[:expected]
    assert plain["route"] == "/v1/chat/completions" and plain["status"] == 200
    assert (plain["prompt_tokens"], plain["completion_tokens"]) == (
        reply.usage.prompt_tokens,
        reply.usage.completion_tokens,
    )
    assert plain["association_id"] == reply.model_extra["datarobot_association_id"]
    assert plain["model"] == MODEL and plain["time_to_first_token_seconds"] is None and plain["seconds"] > 0
    assert stream["association_id"] == streamed[0].model_extra["datarobot_association_id"]
    assert stream["time_to_first_token_seconds"] > 0 and stream["completion_tokens"] == reply.usage.completion_tokens
    assert batch["route"] == "/predictions/" and batch["rows"] == 2 and batch["completion_tokens"] > 0
