"""The deployment's own series and request lines: route labels, usage counted into a request's
record, the line's fields, and the switch that turns lines off."""

import json
import os
import subprocess

import pytest

from vllm_dropin.drum import observe, telemetry


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/v1/completions", "/v1/completions"),
        ("/v1/responses/resp_123", "/v1/responses/{response_id}"),
        ("/v1/responses/resp_123/cancel", "/v1/responses/{response_id}/cancel"),
        ("/v1/no-such-route", telemetry.OTHER_ROUTE),
        ("/v1/responses/a/b", telemetry.OTHER_ROUTE),
    ],
)
def test_route_labels_are_vllms_templates_or_other(path, label):
    templates = frozenset({"/v1/completions", "/v1/responses/{response_id}", "/v1/responses/{response_id}/cancel"})
    assert telemetry.route_names(templates).of(path) == label


@pytest.mark.parametrize(
    ("usage", "prompt", "completion"),
    [
        ({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}, 3, 4),
        ({"input_tokens": 5, "output_tokens": 6}, 5, 6),  # the Responses API
        ({"prompt_tokens": 2}, 2, 0),  # embeddings
        (None, 0, 0),
    ],
)
def test_usage_is_counted_in_the_series_and_the_requests_record(usage, prompt, completion):
    def sample(kind: str) -> float:
        labels = {"route": "/t", "kind": kind, "model": "m"}
        return telemetry.TOKENS.labels(**labels)._value.get()

    before = sample("prompt"), sample("completion")
    told = telemetry.Told()
    token = telemetry.CURRENT.set(told)
    try:
        telemetry.count_usage("/t", "m", usage)
        telemetry.count_usage("/t", "m", usage)
    finally:
        telemetry.CURRENT.reset(token)
    assert (sample("prompt") - before[0], sample("completion") - before[1]) == (2 * prompt, 2 * completion)
    assert (told.prompt_tokens, told.completion_tokens) == (2 * prompt, 2 * completion)


class Answer:
    datarobot_association_id = "assoc-1"


@pytest.mark.parametrize("log", [True, False])
def test_a_request_line_holds_its_figures_and_can_be_turned_off(log, capsys):
    told = telemetry.Told(
        prompt_tokens=3, completion_tokens=4, model="m", rows=2, first_chunk_s=0.01234, answer=Answer()
    )
    observe.Done("/predictions/", 200, 0.0, told, log)()
    observe.Done("/metrics", 200, 0.0, telemetry.Told(), log)()  # a probe: counted, not logged
    lines = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    if not log:
        assert lines == []
        return
    [line] = lines
    assert line == line | {"event": "request", "route": "/predictions/", "status": 200, "prompt_tokens": 3,
                           "completion_tokens": 4, "model": "m", "rows": 2, "association_id": "assoc-1",
                           "time_to_first_token_seconds": 0.0123}  # fmt: skip
    assert line["seconds"] > 0


def test_a_gone_workers_live_gauge_is_forgotten(tmp_path, monkeypatch):
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid is free now
    for pid in (dead.pid, os.getpid()):
        (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    telemetry.forget_dead_workers()
    assert [p.name for p in tmp_path.iterdir()] == [f"gauge_livesum_{os.getpid()}.db"]
