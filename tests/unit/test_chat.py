"""Chat passthrough details: unusual tokens, DRUM's view of a relayed chunk, whole SSE events."""

import json

import pytest
from datarobot_drum.drum.language_predictors.base_language_predictor import BaseLanguagePredictor
from datarobot_drum.drum.root_predictors.chat_helpers import is_streaming_response
from datarobot_drum.drum.root_predictors.predict_mixin import PredictMixin

from vllm_dropin.adapter.chat import RelayChunk, RelayCompletion
from vllm_dropin.adapter.sse import whole_events


def chunk(content: str | None, finish: str | None = None, as_sent: bool = True) -> RelayChunk:
    """A chunk as RelayStream makes it: vLLM's JSON decoded and, `as_sent`, its text (vLLM's JSON
    is compact and leaves non-ASCII unescaped)."""
    delta = {} if content is None else {"content": content}
    data = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}  # fmt: skip
    return RelayChunk(data, json.dumps(data, ensure_ascii=False, separators=(",", ":")) if as_sent else None)


def events_of(sse: str) -> list[dict]:
    events = [e for e in sse.split("\n\n") if e and e != "data: [DONE]"]
    return [json.loads("\n".join(line.removeprefix("data: ") for line in e.split("\n"))) for e in events]


@pytest.mark.parametrize("as_sent", [True, False])
@pytest.mark.parametrize("text", ["a\u2028b", "a\u2029b", "a\x85b", "line\nbreak", "tab\there", "plain", "ü✓", "}"])
def test_streamed_chunks_survive_drums_sse_encoding(text, as_sent):
    relayed = chunk(text, as_sent=as_sent)
    relayed.datarobot_association_id = "assoc-0"
    sse = "".join(PredictMixin._stream_openai_chunks([relayed]))  # DRUM's own encoder
    [event] = events_of(sse)
    assert event["choices"][0]["delta"]["content"] == text
    assert event["datarobot_association_id"] == "assoc-0"


@pytest.mark.parametrize(
    ("text", "spliced"),
    [
        ('{"id":"c","choices":[]}  \n', True),  # vLLM's text, the id spliced before its last brace
        ("{}", False),  # nothing to splice after: the decoded JSON is encoded again
        ('{"id":"c","datarobot_association_id":"x"}', False),  # the key is there already: ours wins
        ('["not an object"]', False),
    ],
)
def test_a_chunk_sends_vllms_text_with_the_id_and_falls_back_to_encoding_it(text, spliced):
    relayed = RelayChunk(json.loads(text), text)
    assert relayed.to_json() == (text.rstrip() if spliced else json.dumps(relayed._data, separators=(",", ":")))
    relayed.datarobot_association_id = "assoc-1"
    expected = json.loads(text) if isinstance(json.loads(text), dict) else {}
    assert json.loads(relayed.to_json()) == {**expected, "datarobot_association_id": "assoc-1"}
    assert relayed.to_json().startswith(text.rstrip()[:-1] + ",") == spliced


def test_drum_sees_the_content_and_its_association_id_reaches_every_chunk():
    """DRUM's own stream wrapper: it checks the first chunk's type, collects the content for its
    reporting and sets the association id; the relayed JSON is vLLM's plus that id."""
    sent = [chunk("Hello"), chunk(" world"), chunk(None, "stop")]
    checked = BaseLanguagePredictor._validate_chat_response(iter(sent))
    sse = "".join(PredictMixin._stream_openai_chunks(checked))
    for item in sent:
        item.datarobot_association_id = "assoc-1"
    events = events_of("".join(PredictMixin._stream_openai_chunks(sent)))
    assert [e["datarobot_association_id"] for e in events] == ["assoc-1"] * 3
    assert [e["choices"][0]["delta"].get("content") for e in events] == ["Hello", " world", None]
    assert events_of(sse)[0] == {k: v for k, v in events[0].items() if k != "datarobot_association_id"}
    assert [c.choices[0].delta.content for c in sent] == ["Hello", " world", None]


def test_drum_takes_a_plain_answer_as_vllm_sent_it_with_its_association_id():
    """DRUM's checks on a plain answer: not a stream, the content for its reporting, the id set by
    attribute and the body from to_dict(): vLLM's JSON plus that id, fields openai does not know kept."""
    sent = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi ✓"}, "finish_reason": "stop",
                         "stop_reason": None}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            "kv_transfer_params": None}  # fmt: skip
    answer = BaseLanguagePredictor._validate_chat_response(RelayCompletion(sent))
    assert not is_streaming_response(answer)
    assert answer.choices[0].message.content == "Hi ✓"
    answer.datarobot_association_id = "assoc-2"
    assert answer.to_dict() == {**sent, "datarobot_association_id": "assoc-2"}
    assert "datarobot_association_id" not in sent


def test_whole_events_join_drums_parts_and_close_the_source():
    closed = []

    def parts():
        try:
            yield from ["data: {1}\n", "\n", "data: {2}\n", "\n", "data: [DONE]\n\n"]
        finally:
            closed.append(True)

    assert list(whole_events(parts())) == [b"data: {1}\n\n", b"data: {2}\n\n", b"data: [DONE]\n\n"]
    assert closed == [True]
    stream = whole_events(parts())
    assert next(stream) == b"data: {1}\n\n"
    stream.close()  # the client went away mid-stream
    assert closed == [True, True]
