"""A stream's usage: asked of vLLM on every stream, counted, shown only to a client that asked."""

import json

import pytest

from vllm_dropin.drum import usage


def event(data: dict | str, name: str | None = None) -> bytes:
    line = b"data: " + (data.encode() if isinstance(data, str) else json.dumps(data).encode())
    return (f"event: {name}\n".encode() if name else b"") + line + b"\n\n"


CHUNK = {"object": "text_completion", "choices": [{"index": 0, "text": " a"}]}
USAGE = {"object": "text_completion", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
CONTINUOUS = {**CHUNK, "usage": {"prompt_tokens": 3, "completion_tokens": 1}}  # continuous_usage_stats


@pytest.mark.parametrize(
    ("options", "shown", "sent"),
    [
        (None, False, {"include_usage": True}),
        ({"continuous_usage_stats": True}, False, {"continuous_usage_stats": True, "include_usage": True}),
        ({"include_usage": True}, True, {"include_usage": True}),
    ],
)
def test_a_stream_asks_for_its_usage(options, shown, sent):
    body = {"model": "m", "stream": True, **({"stream_options": options} if options else {})}
    asked, told = usage.asked(body)
    assert told is shown and asked["stream_options"] == sent
    data, told = usage.asked_in(json.dumps(body).encode())
    assert told is shown and json.loads(data)["stream_options"] == sent


@pytest.mark.parametrize("data", [b'{"model": "m", "prompt": "stream"}', b'{"stream": false}', b"{not json", b"[]"])
def test_a_body_that_is_not_a_streamed_request_goes_as_sent(data):
    assert usage.asked_in(data) == (data, True)


@pytest.mark.parametrize("shown", [True, False])
def test_the_usage_event_is_counted_and_shown_only_when_asked(shown):
    counted = []
    chunks = [event(CHUNK), event(CONTINUOUS), event(USAGE), event("[DONE]")]
    out = list(usage.counted(chunks, counted.append, shown))
    assert counted == [USAGE["usage"]]  # the last word only, not the running counts
    assert out == (chunks if shown else [event(CHUNK), event(CONTINUOUS), event("[DONE]")])


def test_several_events_in_one_chunk_and_the_responses_apis_completion():
    counted = []
    completed = {"type": "response.completed", "response": {"usage": {"input_tokens": 5, "output_tokens": 7}}}
    together = event(CHUNK) + event(USAGE) + event("[DONE]")
    out = list(usage.counted([together, event(completed, "response.completed")], counted.append, shown=False))
    assert counted == [USAGE["usage"], completed["response"]["usage"]]
    assert out == [event(CHUNK) + event("[DONE]"), event(completed, "response.completed")]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"data": [{"embedding": [0.1]}], "usage": {"prompt_tokens": 3, "total_tokens": 3}}',
            {"prompt_tokens": 3, "total_tokens": 3},
        ),
        (
            b'{"choices": [{"text": "\\"usage\\": {}"}], "usage": {"prompt_tokens": 1}, "kv": null}',
            {"prompt_tokens": 1},
        ),
        (b'{"choices": []}', None),
        (b'{"usage": null}', None),
        (b"not json", None),
    ],
)
def test_a_whole_answers_usage_is_read_from_its_end(body, expected):
    assert usage.in_body(body) == expected


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (b'{"model": "tone", "prompt": "x"}', "tone"),
        (b'{"prompt": "say \\"model\\": \\"no\\"", "model":"a\\u00fc"}', "a\u00fc"),
        (b'{"prompt": "x"}', None),
    ],
)
def test_the_model_a_request_names(sent, expected):
    assert usage.model_in(sent) == expected
