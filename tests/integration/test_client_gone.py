"""A client that goes away costs nothing: its batch, chat or stream stops at vLLM at once (vLLM's
own metrics fall to idle), and concurrent batch requests share one budget of rows in flight
(`max_concurrent_rows` of the main environment: 16, over DRUM's two workers)."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from bench import servers
from bench.metrics import engine_metrics
from tests.integration.conftest import MAIN_PARAMS, csv_of, post_csv
from tests.integration.test_metrics import logged_requests, scraped, value

pytestmark = pytest.mark.integration
MODEL = "datarobot-deployed-llm"
IDLE_WITHIN_S = 1.0
LONG = {"max_tokens": 900, "ignore_eos": True}  # keeps the engine busy far longer than a test waits


def engine_busy(env) -> float:
    """Requests running or waiting in vLLM's engine, by its own metrics."""
    return engine_metrics.busy(servers.vllm_endpoint_of(env))


def wait_for(check, timeout_s: float, what: str) -> float:
    """Seconds from now to the start of the first check() that is true, polled; fails naming
    `what` after timeout_s. (A check's start: on this 2-core host vLLM's /metrics may take
    seconds to answer while its engine runs, which says nothing of when the engine went idle.)"""
    began = time.monotonic()
    while True:
        asked = time.monotonic()
        if check():
            return asked - began
        assert asked - began < timeout_s, what
        time.sleep(0.02)


def sent_then_dropped(env, path: str, body: bytes, content_type: str) -> float:
    """Send a request, wait until vLLM's metrics show it at work, then close the connection without
    reading an answer: the seconds until vLLM's engine is idle again. A request that vLLM finished
    before its metrics showed it (they can lag on this host) is sent again."""
    url = urllib.parse.urlsplit(env.url)
    for _ in range(3):
        wait_for(lambda: engine_busy(env) == 0, 30, "vLLM still works for an earlier test")
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        connection.request("POST", path, body, {"Content-Type": content_type})
        try:
            wait_for(lambda: engine_busy(env) >= 1, 20, "")
        except AssertionError:
            connection.close()
            continue
        connection.close()
        return wait_for(lambda: engine_busy(env) == 0, 30, "vLLM kept working for a client that left")
    raise AssertionError("vLLM's metrics never showed the request at work")


def chat_body(**extra) -> bytes:
    return json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **LONG, **extra}).encode()


def test_an_abandoned_batch_stops_at_once_and_nothing_is_left_behind(main_env):
    since = len(main_env.log())
    before = scraped(main_env)
    rows = 4000
    csv = csv_of([f"row {i} of a batch nobody waits for" for i in range(rows)]).encode()
    assert sent_then_dropped(main_env, "/predictions/", csv, "text/csv") < IDLE_WITHIN_S
    wait_for(lambda: value(scraped(main_env), "vllm_dropin_batch_rows_in_flight") == 0, 5, "DRUM's workers kept rows")
    after = scraped(main_env)
    abandoned = value(after, "vllm_dropin_batch_rows_total", outcome="abandoned")
    assert abandoned - value(before, "vllm_dropin_batch_rows_total", outcome="abandoned") == rows
    ok = [value(counts, "vllm_dropin_batch_rows_total", outcome="ok") for counts in (before, after)]
    assert ok[0] == ok[1]  # the rows answered before the client left reached no one: none is counted as served
    wait_for(lambda: any(r["route"] == "/predictions/" for r in logged_requests(main_env, since)), 10, "no log line")
    [line] = [r for r in logged_requests(main_env, since) if r["route"] == "/predictions/"]
    assert line["status"] == 499 and line["rows"] == rows
    assert "Traceback" not in main_env.log()[since:]  # a client's leaving is no error of the deployment's
    answer = post_csv(main_env, csv_of(["still serving?"]))  # the deployment answers afterwards
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", chat_body()),  # DRUM's chat route
        ("/v1/completions", json.dumps({"model": MODEL, "prompt": "x", **LONG}).encode()),  # relayed
        ("/directAccess/v1/chat/completions", chat_body()),
    ],
)
def test_a_whole_answer_whose_client_left_is_aborted(main_env, path, body):
    assert sent_then_dropped(main_env, path, body, "application/json") < IDLE_WITHIN_S
    again = {**json.loads(body), "max_tokens": 2, "ignore_eos": False}  # the deployment answers afterwards
    assert requests.post(f"{main_env.url}{path}", json=again, timeout=60).ok


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),  # DRUM's chat stream
        ("/v1/completions", {"prompt": "x"}),
        ("/directAccess/v1/completions", {"prompt": "x"}),
    ],
)
def test_a_stream_whose_client_left_stops_the_engines_work(main_env, path, body):
    body = {"model": MODEL, **body, **LONG, "stream": True}
    response = requests.post(f"{main_env.url}{path}", json=body, stream=True, timeout=60)
    assert next(response.iter_lines()).startswith(b"data: ")  # vLLM is generating
    response.close()
    idle = wait_for(lambda: engine_busy(main_env) == 0, 30, "vLLM kept generating for a client that left")
    assert idle < IDLE_WITHIN_S


def test_concurrent_batches_share_one_budget_and_each_is_answered_whole_in_order(main_env):
    prompts = [f"tell me about number {i}" for i in range(12)]
    alone = post_csv(main_env, csv_of(prompts)).json()["predictions"]
    batches = [[prompts[(i * k) % len(prompts)] for i in range(150)] for k in (1, 5, 7, 11)]
    peak = engine_metrics.Peak(servers.vllm_endpoint_of(main_env))
    try:
        with ThreadPoolExecutor(len(batches)) as senders:
            answers = list(senders.map(lambda rows: post_csv(main_env, csv_of(rows)), batches))
    finally:
        most = peak.stop()
    budget = MAIN_PARAMS["max_concurrent_rows"]
    assert 1 < most <= budget  # without a shared budget four batches hold 4 x 16 in flight
    expected = dict(zip(prompts, alone, strict=True))
    for rows, answer in zip(batches, answers, strict=True):
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == [expected[p] for p in rows]


def test_a_small_batch_is_answered_beside_a_large_one(main_env):
    """The budget is shared: a small request sent while a large one holds every row in flight is
    answered while the large one still runs, not after it."""
    large = threading.Thread(target=post_csv, args=(main_env, csv_of([f"large {i}" for i in range(1500)])))
    large.start()
    try:
        wait_for(lambda: engine_busy(main_env) >= MAIN_PARAMS["max_concurrent_rows"] // 2, 60, "the large batch")
        small = post_csv(main_env, csv_of([f"small {i}" for i in range(4)]))
        assert small.status_code == 200 and len(small.json()["predictions"]) == 4
        assert large.is_alive()
    finally:
        large.join()
