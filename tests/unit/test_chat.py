"""Chat passthrough details: unusual tokens, DRUM's view of a relayed chunk, whole SSE events,
a chat's trip, plain and streamed, to a local server that answers as vLLM does."""

import json
import socket
import ssl
from typing import ClassVar

import flask
import pytest
from datarobot_drum.drum.exceptions import CustomHTTPError
from datarobot_drum.drum.language_predictors.base_language_predictor import BaseLanguagePredictor
from datarobot_drum.drum.root_predictors.chat_helpers import is_streaming_response
from datarobot_drum.drum.root_predictors.predict_mixin import PredictMixin

from tests.helpers import JsonPosts, serve_http
from vllm_dropin.contract import BatchSettings
from vllm_dropin.drum.chat import RelayChunk, RelayCompletion, chat
from vllm_dropin.drum.client import ClientPool, JsonConnection, StreamClient, Upstream
from vllm_dropin.drum.model_names import ModelNames
from vllm_dropin.drum.sse import whole_events


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


REFUSED = {"message": "max_tokens must be at least 1, got -1.", "type": "BadRequestError", "param": "max_tokens",
           "code": 400}  # fmt: skip
ANSWER = {"object": "chat.completion", "choices": [{"message": {"content": "Hi"}}]}
CHUNKS = [{"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": c}}]} for c in "Hi"]


class Vllm(JsonPosts):
    """Answers a chat as vLLM does: its JSON or its SSE stream, or its error under "error" for
    model "refused"."""

    seen: ClassVar[list] = []

    def answer(self, body: dict) -> tuple[int, str, bytes]:
        if body["model"] == "refused":
            return 400, "application/json", json.dumps({"error": REFUSED}).encode()
        if body.get("stream"):
            events = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in CHUNKS)
            return 200, "text/event-stream", events + b"data: [DONE]\n\n"
        return 200, "application/json", json.dumps(ANSWER).encode()


def upstream_at(url: str) -> Upstream:
    tls = ssl.create_default_context()
    batch = BatchSettings(prompt_column_name="promptText", max_tokens=8, n=1, max_concurrent_rows=1, row_errors="fail")
    streams, posts = ClientPool(lambda: StreamClient(url, "k", tls)), ClientPool(lambda: JsonConnection(url, "k", tls))
    return Upstream(streams, posts, "m", batch, "resultText", ModelNames())


@pytest.mark.parametrize("stream", [False, True])
def test_a_chat_reaches_vllm_as_sent_on_one_connection_and_its_error_keeps_vllms_fields(stream):
    Vllm.seen = []
    body = {"model": "m", "messages": [{"role": "user", "content": "ü"}], "top_k": 3, "extra": [None]}
    body |= {"stream": True} if stream else {}
    with serve_http(Vllm) as url, flask.Flask(__name__).test_request_context():
        upstream = upstream_at(f"{url}/v1")
        for _ in range(2):
            answer = chat(body, upstream)
            if stream:
                assert [json.loads(chunk.to_json()) for chunk in answer] == CHUNKS
            else:
                assert answer.to_dict() == ANSWER
        with pytest.raises(CustomHTTPError) as raised:
            chat({**body, "model": "refused", "max_tokens": -1}, upstream)
        error = flask.g.pop("dropin_openai_error")
    (port, _, _, first), (again, *_), (last, *_) = Vllm.seen
    # vLLM's own fields and unknown ones too (vLLM decides); a stream asks for its usage (drum.usage)
    assert first == ({**body, "stream_options": {"include_usage": True}} if stream else body)
    assert port == again == last  # the client went back to the pool with its connection alive
    assert raised.value.status_code == 400
    assert error == REFUSED
    assert "ü" not in str(raised.value)  # what is logged holds no request data


@pytest.mark.parametrize(("stream", "cause"), [(False, "NewConnectionError"), (True, "ConnectError")])
def test_a_chat_without_vllm_is_503_naming_the_cause(stream, cause):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    upstream = upstream_at(f"http://127.0.0.1:{port}/v1")
    with pytest.raises(CustomHTTPError) as raised:
        chat({"model": "m", "messages": [], "stream": stream}, upstream)
    assert raised.value.status_code == 503
    assert str(raised.value).startswith(f"vLLM server is not reachable ({cause}: ")
    assert len(upstream.clients._idle) == stream  # a stream's client is given back when it fails
