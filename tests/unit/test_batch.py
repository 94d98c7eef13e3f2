"""Batch adapter logic: one output row per input row, in order, errors naming rows."""

import math
import threading
import time

import pandas as pd
import pytest
from datarobot_drum.drum.exceptions import CustomHTTPError

from vllm_dropin.contract import LABEL_ROWS_PER_REQUEST, REQUESTS_FOR_A_BATCH_IN_FLIGHT, BatchSettings
from vllm_dropin.drum import batch
from vllm_dropin.drum.rows_budget import RowsBudget


def settings(**kw):
    base = dict(prompt_column_name="promptText", max_tokens=8, n=1, max_concurrent_rows=4, row_errors="fail")
    return BatchSettings(**{**base, **kw})


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("hi", None),
        ("", "prompt is empty"),
        ("   ", "prompt is empty"),
        (None, "prompt is empty (missing value)"),
        (math.nan, "prompt is empty (missing value)"),
        (5, "prompt is not text (int)"),
    ],
)
def test_prompt_problem(value, problem):
    assert batch.prompt_problem(value) == problem


@pytest.mark.parametrize(
    ("system", "temperature", "expected_messages", "has_temperature"),
    [
        (None, None, [{"role": "user", "content": "p"}], False),
        ("be brief", 0.0, [{"role": "system", "content": "be brief"}, {"role": "user", "content": "p"}], True),
    ],
)
def test_request_for(system, temperature, expected_messages, has_temperature):
    body = batch.request_for("p", settings(system_prompt=system, temperature=temperature, n=2), "served")
    assert body["messages"] == expected_messages
    assert body["model"] == "served" and body["n"] == 2 and body["max_tokens"] == 8
    assert ("temperature" in body) is has_temperature
    if has_temperature:
        assert body["temperature"] == 0.0  # zero is sent, not dropped


def test_missing_column_names_it_and_the_columns_present():
    with pytest.raises(CustomHTTPError) as err:
        batch.prompts_of(pd.DataFrame({"question": ["a"], "id": [1]}), settings())
    assert err.value.status_code == 422
    assert "prompt column 'promptText' is missing; columns present: question, id" in str(err.value)


def each(complete_one):
    """A `complete` for run_rows that answers the rows it is given one by one."""
    return lambda prompts: [complete_one(p) for p in prompts]


def test_rows_come_back_in_order_whatever_the_completion_order():
    prompts = [f"p{i}" for i in range(50)]
    # Completing in reverse-ish order through a thread pool must not reorder results.
    results = batch.run_rows(prompts, each(lambda p: batch.RowResult(choices=[p.upper()])), RowsBudget(8))
    frame = batch.to_frame(results, "resultText", settings())
    assert frame["resultText"].tolist() == [p.upper() for p in prompts]


def test_rows_in_flight_reach_but_never_exceed_the_concurrency():
    in_flight, peak, lock = 0, 0, threading.Lock()
    all_in = threading.Barrier(4, timeout=10)  # passes only if 4 rows are in flight together

    def complete(prompt):
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        if int(prompt) < 4:
            all_in.wait()
        with lock:
            in_flight -= 1
        return batch.RowResult(choices=[prompt])

    results = batch.run_rows([str(i) for i in range(40)], each(complete), RowsBudget(4))
    assert [r.choices for r in results] == [[str(i)] for i in range(40)]
    assert peak == 4


def test_an_upstream_failure_stops_the_batch_and_is_raised():
    sent = []

    def complete(prompt):
        sent.append(prompt)
        if prompt == "3":
            raise RuntimeError("vLLM gone")
        return batch.RowResult(choices=[prompt])

    with pytest.raises(RuntimeError, match="vLLM gone"):
        batch.run_rows([str(i) for i in range(1000)], each(complete), RowsBudget(2))
    assert len(sent) < 10  # the other worker stops taking rows


def test_bad_rows_are_not_sent_and_fail_the_batch_naming_each_row():
    sent = []
    prompts = ["ok", "", None, "fine"]
    results = batch.run_rows(prompts, each(lambda p: sent.append(p) or batch.RowResult(choices=["x"])), RowsBudget(2))
    assert sorted(sent) == ["fine", "ok"]
    with pytest.raises(CustomHTTPError) as err:
        batch.to_frame(results, "resultText", settings())
    message = str(err.value)
    assert err.value.status_code == 422
    assert "2 of 4 rows failed" in message and "row 1: prompt is empty" in message and "row 2:" in message


def test_error_column_mode_keeps_every_row():
    results = [batch.RowResult(choices=["a"]), batch.RowResult(error="rejected by vLLM: too long")]
    frame = batch.to_frame(results, "resultText", settings(row_errors="column"))
    assert frame.to_dict("list") == {"resultText": ["a", None], "error": [None, "rejected by vLLM: too long"]}


def test_n_choices_go_to_extra_columns():
    results = [batch.RowResult(choices=["a1", "a2", "a3"]), batch.RowResult(choices=["b1", "b2", "b3"])]
    frame = batch.to_frame(results, "resultText", settings(n=3))
    assert list(frame.columns) == ["resultText", "choice_2", "choice_3"]
    assert frame.values.tolist() == [["a1", "a2", "a3"], ["b1", "b2", "b3"]]


def test_many_failures_are_counted_not_all_listed():
    results = [batch.RowResult(error="prompt is empty")] * 12
    with pytest.raises(CustomHTTPError, match=r"12 of 12 rows failed.*and 7 more"):
        batch.to_frame(results, "resultText", settings())


def test_empty_input_gives_empty_output():
    assert len(batch.to_frame([], "resultText", settings())) == 0


def test_a_template_fills_each_row_from_its_columns_when_the_row_is_sent():
    data = pd.DataFrame(
        {"review text": ["great", "", "meh"], "stars": [5.0, 4.0, math.nan], "x": ["a", "b", "c"]}, dtype=object
    )
    prompts = batch.prompts_of(data, settings(prompt_template="Review ({stars}*): {review text} {{raw}}"))
    assert prompts[0] == "Review (5*): great {raw}"
    assert batch.prompt_problem(prompts[1]) == "column 'review text' is empty"
    assert batch.prompt_problem(prompts[2]) == "column 'stars' is empty (missing value)"
    results = batch.run_rows(prompts, each(lambda p: batch.RowResult(choices=[p])), RowsBudget(2))
    assert [r.error for r in results] == [
        None,
        "column 'review text' is empty",
        "column 'stars' is empty (missing value)",
    ]


def test_a_template_naming_missing_columns_is_a_422_naming_them_and_the_columns_present():
    with pytest.raises(CustomHTTPError) as err:
        batch.prompts_of(pd.DataFrame({"title": ["a"]}), settings(prompt_template="{title}: {body} {more}"))
    assert err.value.status_code == 422
    assert str(err.value) == (
        "runtime parameter 'prompt_template' names column(s) 'body', 'more' that the request lacks; "
        "columns present: title"
    )


@pytest.mark.parametrize(
    ("kw", "structured"),
    [
        ({"response_schema": '{"type": "object"}'}, {"json": {"type": "object"}}),
        ({"response_choices": ["yes", "no"]}, {"choice": ["yes", "no"]}),
        ({}, None),
    ],
)
def test_structured_outputs_reach_vllm_on_every_row(kw, structured):
    assert batch.request_for("p", settings(**kw), "served").get("structured_outputs") == structured


def test_row_details_show_tokens_and_why_each_choice_stopped():
    results = [
        batch.RowResult(["a", "b"], None, 7, 12, ["stop", "length"]),
        batch.RowResult(error="prompt is empty"),
    ]
    frame = batch.to_frame(results, "resultText", settings(n=2, row_details=True, row_errors="column"))
    assert list(frame.columns) == [
        "resultText", "choice_2", "error", "prompt_tokens", "completion_tokens", "finish_reason", "finish_reason_2"
    ]  # fmt: skip
    assert frame.iloc[0].tolist() == ["a", "b", None, 7, 12, "stop", "length"]
    assert frame.iloc[1].tolist()[3:] == [None, None, None, None]


def test_progress_is_logged_with_counts_and_rates_only(caplog):
    progress = batch.Progress(total=10, every_s=0.0)
    with caplog.at_level("INFO", logger="vllm_dropin.batch"):
        batch.run_rows(
            [f"secret {i}" for i in range(10)], each(lambda p: batch.RowResult(choices=["x"])), RowsBudget(2), progress
        )
    assert caplog.messages and caplog.messages[-1].startswith("batch: 10 of 10 rows done, ")
    assert "secret" not in caplog.text


def test_rows_go_together_split_by_the_adapter_they_name_and_in_order():
    def routed_to(prompt, model):
        routed = batch.RoutedPrompt(prompt)
        routed.model = model
        return routed

    prompts = ["a0", routed_to("b1", "b"), "a2", "", "a4", routed_to("b5", "b"), "a6"]
    groups = []

    def complete(group):
        groups.append([(p, getattr(p, "model", None)) for p in group])
        return [batch.RowResult(choices=[p.upper()]) for p in group]

    results = batch.run_rows(prompts, complete, RowsBudget(8), rows_per_request=4)
    assert [r.choices for r in results] == [["A0"], ["B1"], ["A2"], None, ["A4"], ["B5"], ["A6"]]
    assert results[3].error == "prompt is empty"
    assert sorted(groups) == sorted(
        [[("a0", None), ("a2", None)], [("b1", "b")], [("a4", None), ("a6", None)], [("b5", "b")]]
    )


def test_rows_taken_together_for_different_adapters_are_in_flight_at_once():
    both = threading.Barrier(2, timeout=10)  # fails unless the two adapters' requests overlap
    sent = []

    def complete(group):
        sent.append(len(group))
        both.wait()
        return [batch.RowResult(choices=[str(p)]) for p in group]

    prompts = [batch.RoutedPrompt(f"p{i}") for i in range(6)]
    for i, prompt in enumerate(prompts):
        prompt.model = "a" if i % 2 else "b"
    results = batch.run_rows(prompts, complete, RowsBudget(6), rows_per_request=6)
    assert [r.choices for r in results] == [[f"p{i}"] for i in range(6)]
    assert sent == [3, 3]


def test_rows_taken_together_never_exceed_the_concurrency():
    in_flight, peak, lock = 0, 0, threading.Lock()

    def complete(group):
        nonlocal in_flight, peak
        with lock:
            in_flight += len(group)
            peak = max(peak, in_flight)
        time.sleep(0.01)  # hold the rows in flight so that workers overlap
        with lock:
            in_flight -= len(group)
        return [batch.RowResult(choices=[p]) for p in group]

    results = batch.run_rows([str(i) for i in range(100)], complete, RowsBudget(10), rows_per_request=4)
    assert [r.choices for r in results] == [[str(i)] for i in range(100)]
    assert 4 < peak <= 10  # two groups of 4 at once, never a third (12 > 10)


@pytest.mark.parametrize(
    ("given", "rows", "expected"),
    [
        ({}, 5, 1),  # free text beyond the rows in flight: answers of any length, alone
        ({}, 4, 1),  # a batch in flight at once: in REQUESTS_FOR_A_BATCH_IN_FLIGHT requests (8 >= 4 rows)
        ({"max_concurrent_rows": 512}, 512, 512 // REQUESTS_FOR_A_BATCH_IN_FLIGHT),
        ({"max_concurrent_rows": 512}, 100, -(-100 // REQUESTS_FOR_A_BATCH_IN_FLIGHT)),
        ({"max_concurrent_rows": 512}, 513, 1),
        ({"response_choices": ["yes", "no"]}, 5, LABEL_ROWS_PER_REQUEST),  # labels: short and alike
        ({"response_choices": ["yes", "no"], "max_concurrent_rows": 512}, 512, 512 // REQUESTS_FOR_A_BATCH_IN_FLIGHT),
        ({"rows_per_request": 32}, 5, 32),
        ({"rows_per_request": 1, "max_concurrent_rows": 512}, 512, 1),  # the user's value, even in flight
        ({"rows_per_request": 32, "n": 2}, 5, 1),  # vLLM's batch endpoint takes n = 1 only
        ({"n": 2, "max_concurrent_rows": 512}, 512, 1),
        ({"response_choices": ["yes", "no"], "row_details": True}, 5, 1),  # per-row token counts
        ({"row_details": True, "max_concurrent_rows": 512}, 512, 1),
    ],
)
def test_rows_to_a_request(given, rows, expected):
    assert settings(**given).rows_to_a_request(rows) == expected


def test_a_batch_in_flight_goes_out_at_once_in_requests_of_its_share():
    started, lock, everyone = [], threading.Lock(), threading.Barrier(REQUESTS_FOR_A_BATCH_IN_FLIGHT, timeout=10)

    def complete(group):
        with lock:
            started.append(len(group))
        everyone.wait()  # fails unless every request is in flight together
        return [batch.RowResult(choices=[p]) for p in group]

    rows = 500  # 8 requests: 7 of 63 rows and one of 59
    size = settings(max_concurrent_rows=512).rows_to_a_request(rows)
    results = batch.run_rows([str(i) for i in range(rows)], complete, RowsBudget(512), rows_per_request=size)
    assert [r.choices for r in results] == [[str(i)] for i in range(rows)]
    assert sorted(started) == [59] + [63] * 7
