"""OpenAI chat completions passed through to vLLM, streaming included."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import openai
import urllib3

from vllm_dropin.drum import departure, sse, telemetry, usage
from vllm_dropin.drum.client import CHAT_ROUTE, Upstream, UpstreamStatusError, unreachable
from vllm_dropin.drum.departure import ClientGone, Left
from vllm_dropin.drum.openai_errors import named_by_status, openai_error, route_error

CHAT_PATH = "/v1" + CHAT_ROUTE
# Characters that str.splitlines() breaks lines on but JSON leaves unescaped inside strings.
_LINE_BREAKS_JSON_KEEPS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class _Content:
    __slots__ = ("content",)

    def __init__(self, part: Any) -> None:
        self.content = part.get("content") if isinstance(part, dict) else None


class _Choice:
    """A choice as DRUM reads it: the content of its `delta` (a chunk) or `message` (an answer)."""

    __slots__ = ("delta", "message")

    def __init__(self, choice: Any, part: str) -> None:
        self.delta = self.message = _Content(choice.get(part) if isinstance(choice, dict) else None)


class _Relayed:
    """vLLM's JSON where DRUM expects an openai model: DRUM reads `object` and the choices'
    content (for its reporting), sets `datarobot_association_id` and serializes; nothing else.
    Building openai's pydantic model from the JSON and dumping it again would be work for nothing,
    and a large share of a DRUM worker relaying streams (bench.relay)."""

    __slots__ = ("_data", "choices", "datarobot_association_id")
    _part = ""  # what each choice holds
    _object = ""  # `object` when vLLM's JSON lacks it

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data
        self.choices = [_Choice(c, self._part) for c in data.get("choices") or ()]
        self.datarobot_association_id: str | None = None

    @property
    def data(self) -> dict[str, Any]:
        """vLLM's JSON, as sent."""
        return self._data

    @property
    def object(self) -> str:
        return self._data.get("object", self._object)

    def _with_id(self) -> dict[str, Any]:
        if self.datarobot_association_id is None:
            return self._data
        return {**self._data, "datarobot_association_id": self.datarobot_association_id}


class RelayChunk(_Relayed):
    """A streamed chunk as vLLM sent it: its JSON decoded (DRUM reads the content) and its text,
    which to_json() sends on with the association id spliced in before the closing brace
    (encoding the decoded JSON again took twice as long as the splice). With RelayStream's untyped
    chunks, a DRUM worker's CPU per relayed chunk fell from 59-62 to 34-35 us (bench.relay ceiling).

    The JSON must also survive DRUM's SSE encoding: DRUM writes `data:` lines by splitting
    to_json() with splitlines(), which also splits on U+0085, U+2028 and U+2029; a token holding
    one reached the client as two data lines ("Invalid control character"). Escaping them keeps
    the JSON equal and whole.
    """

    __slots__ = ("_text",)
    _part = "delta"
    _object = "chat.completion.chunk"

    def __init__(self, data: Any, text: str | None = None) -> None:
        super().__init__(data if isinstance(data, dict) else {})
        text = (text or "").rstrip()
        splices = text.endswith("}") and bool(self._data) and "datarobot_association_id" not in self._data
        self._text = text if splices else None

    def to_json(self, indent: int | None = None, **_ignored: Any) -> str:
        if self._text is None or indent is not None:
            text = json.dumps(self._with_id(), ensure_ascii=False, separators=(",", ":"), indent=indent)
        elif self.datarobot_association_id is None:
            text = self._text
        else:
            text = f'{self._text[:-1]},"datarobot_association_id":{json.dumps(self.datarobot_association_id)}}}'
        if "\x85" in text or "\u2028" in text or "\u2029" in text:
            return text.translate(_LINE_BREAKS_JSON_KEEPS)
        return text


class RelayCompletion(_Relayed):
    """A whole chat completion as vLLM sent it; DRUM answers with `to_dict()`."""

    __slots__ = ()
    _part = "message"
    _object = "chat.completion"

    def to_dict(self, **_ignored: Any) -> dict[str, Any]:
        return self._with_id()


class RelayStream(openai.Stream[object]):
    """openai's Stream (it decodes the SSE and raises vLLM's mid-stream errors), yielding a
    RelayChunk of each event's JSON and text, and reading vLLM's body to its end before the
    [DONE] event ends the iteration.

    openai stops reading at [DONE] and closes the response; a response closed before the end of its
    body closes its connection, so every stream would cost a new connection to vLLM (a TIME_WAIT
    socket, and in DRUM's gevent worker a connect with a resolver hop). What follows [DONE] is the
    body's terminator alone. Chunks are typed `object` so that openai hands the decoded JSON on as
    it is (a model type costs a protocol check per chunk)."""

    _text: str | None = None  # the text of the event being decoded

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        decoded = self._iterator  # openai decodes one event per item, the next only when asked
        self._iterator = (RelayChunk(data, self._text) for data in decoded)

    def _iter_events(self) -> Iterator[Any]:
        events = super()._iter_events()
        for event in events:
            if event.data.startswith("[DONE]"):
                for _ in events:
                    pass
            self._text = event.data
            yield event


@contextmanager
def _as_openai_errors(method: str, path: str) -> Iterator[None]:
    """vLLM's HTTP errors as its own error object in OpenAI's shape (a route the model lacks named);
    no answer at all as 503."""
    try:
        yield
    except UpstreamStatusError as exc:
        unrouted = route_error(exc.status, exc.body, method, path)
        if unrouted is not None:
            raise openai_error(exc.status, unrouted, named_by_status(exc.status, unrouted), logged=unrouted) from None
        raise openai_error(exc.status, exc.message, exc.body) from None
    except (urllib3.exceptions.HTTPError, httpx2.TransportError, openai.APIConnectionError) as exc:
        raise openai_error(503, unreachable(exc), logged=unreachable(exc)) from None
    except ClientGone:
        raise Left() from None


def chat(params: dict[str, Any], upstream: Upstream) -> Any:
    """A chat completion, or a stream of chunks when params ask for stream=true (vLLM's JSON either
    way). The body goes to vLLM as the caller sent it (vLLM's own fields such as top_k included);
    vLLM validates it: openai's create() would re-check and re-transform every field for nothing."""
    if not isinstance(params, dict):
        message = "chat request body must be a JSON object"
        raise openai_error(400, message, logged=message)
    refusal = upstream.names.ready(params.get("model"))
    if refusal is not None:
        raise openai_error(refusal.status, refusal.message)
    if params.get("stream"):
        return _streamed(params, upstream)
    # No SSE to decode: urllib3, at about half the CPU of openai's client per plain chat
    # (bench.relay --plain), time a burst's chats wait in turn. A client that leaves before its
    # answer has its chat aborted at vLLM.
    with (
        _as_openai_errors("POST", CHAT_PATH),
        departure.watched(),
        upstream.posts.client() as connection,
        departure.held(connection),
    ):
        answer = connection.post(CHAT_ROUTE, params)
    telemetry.count_usage(CHAT_PATH, str(params.get("model") or upstream.model), answer.get("usage"))
    return _told(RelayCompletion(answer))


def _told(answer: RelayCompletion | RelayChunk) -> RelayCompletion | RelayChunk:
    """The answer, noted as the current request's (its log line reads the association id DRUM sets)."""
    told = telemetry.CURRENT.get()
    if told is not None:
        told.answer = answer
    return answer


def _streamed(params: dict[str, Any], upstream: Upstream) -> Iterator[Any]:
    """The chunks of vLLM's stream, on a client lent until the stream ends or is dropped; its usage
    counted, and passed on only if the client asked for it."""
    params, shown = usage.asked(params)
    client = upstream.clients.take()
    stream = None  # once a stream is handed to DRUM, the stream gives the client back
    try:
        with _as_openai_errors("POST", CHAT_PATH):
            stream = RelayStream(cast_to=object, response=client.chat_stream(params), client=client.openai)
    finally:
        if stream is None:
            upstream.clients.give_back(client)

    def release() -> None:
        stream.close()
        upstream.clients.give_back(client)

    return sse.fair(_counted(stream, str(params.get("model") or upstream.model), shown), release)


def _counted(chunks: Iterable[RelayChunk], model: str, shown: bool) -> Iterator[RelayChunk]:
    first = True
    for chunk in chunks:
        if first:
            _told(chunk)  # DRUM gives every chunk the same association id
            first = False
        if not chunk.choices:
            told = usage.of_event(chunk.data)
            if told is not None:
                telemetry.count_usage(CHAT_PATH, model, told)
                if not shown:
                    continue
        yield chunk


def models(upstream: Upstream) -> list[Any]:
    with _as_openai_errors("GET", "/v1/models"), upstream.clients.client() as client:
        return list(client.openai.models.list())
