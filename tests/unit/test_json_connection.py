"""The connection that batch rows and plain chats take to vLLM (urllib3, not openai's client), against a real local HTTP
server that answers as vLLM does: JSON, errors under "error", keep-alive."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from typing import ClassVar

import pytest
import urllib3

from tests.helpers import JsonPosts, serve_http
from vllm_dropin.contract import UPSTREAM_KEEPALIVE_S
from vllm_dropin.drum.client import JsonConnection, UpstreamStatusError, unreachable

ANSWERS = {
    "/v1/chat/completions": (200, "application/json", b'{"choices": []}'),
    "/v1/bad": (400, "application/json", b'{"error": {"message": "too long:\\nshorten it", "code": 400}}'),
    "/v1/bare": (422, "application/json", b'{"message": "bare message"}'),
    "/v1/html": (200, "text/html", b"<html>proxy page</html>"),
    "/v1/down": (503, "text/plain", b"down"),
}


class Vllm(JsonPosts):
    seen: ClassVar[list] = []

    def answer(self, body: dict) -> tuple[int, str, bytes]:
        return ANSWERS[self.path]


@pytest.fixture
def vllm() -> Iterator[str]:
    Vllm.seen = []
    with serve_http(Vllm) as url:
        yield f"{url}/v1"


def test_rows_are_posted_as_json_with_the_key_on_one_kept_alive_connection(vllm):
    connection = JsonConnection(vllm, "launch-key", ssl.create_default_context())
    assert connection.post("/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}) == {"choices": []}
    connection.post("/chat/completions", {"n": 1})
    (port, path, auth, body), (again, _, _, second) = Vllm.seen
    assert (path, auth, body, second) == (
        "/v1/chat/completions",
        "Bearer launch-key",
        {"messages": [{"role": "user", "content": "hi"}]},
        {"n": 1},
    )
    assert again == port  # the same connection


def test_an_idle_connection_is_opened_anew_before_vllm_would_close_it(vllm):
    connection = JsonConnection(vllm, "k", ssl.create_default_context())
    connection.post("/chat/completions", {})
    connection._used -= UPSTREAM_KEEPALIVE_S / 2 + 1  # idle past half vLLM's keep-alive
    connection.post("/chat/completions", {})
    assert Vllm.seen[0][0] != Vllm.seen[1][0]


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/bad", 400, "too long: shorten it"),  # vLLM's words, on one line
        ("/bare", 422, "bare message"),
        ("/down", 503, "HTTP 503"),  # no JSON: the status
        ("/html", 502, "vLLM answered HTTP 200 without a JSON object"),
    ],
)
def test_an_error_answer_is_raised_with_vllms_message(vllm, path, status, message):
    with pytest.raises(UpstreamStatusError) as raised:
        JsonConnection(vllm, "k", ssl.create_default_context()).post(path, {})
    assert (raised.value.status, raised.value.message) == (status, message)


def test_no_answer_is_urllib3s_error_and_reads_as_unreachable():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(urllib3.exceptions.HTTPError) as raised:
        JsonConnection(f"http://127.0.0.1:{port}/v1", "secret-key", ssl.create_default_context()).post("/x", {})
    text = unreachable(raised.value)
    assert text.startswith("vLLM server is not reachable (NewConnectionError: ") and "Connection refused" in text
    assert "secret-key" not in text
