"""The relay of vLLM's routes in DRUM's Flask app, against a local server answering as vLLM does
(what reaches it, what comes back), and the choices behind it: headers passed each way, routing
errors, where batch rows go."""

import dataclasses
import json
import socket
import ssl
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import flask
import pytest
from datarobot_drum.drum.exceptions import CustomHTTPError

from tests.helpers import JsonPosts, serve_http
from vllm_dropin.contract import BatchSettings, Layout, VllmEndpoint, WorkerContract
from vllm_dropin.drum import batch, relay
from vllm_dropin.drum.client import (
    CHAT_ROUTE,
    EMBEDDINGS_ROUTE,
    ClientPool,
    JsonConnection,
    Upstream,
    connect,
    rows_route,
)
from vllm_dropin.drum.model_names import ModelNames
from vllm_dropin.drum.openai_errors import route_error

BATCH = BatchSettings(prompt_column_name="promptText", max_tokens=8, n=1, max_concurrent_rows=16, row_errors="fail")


class Vllm(JsonPosts):
    """vLLM's uvicorn: /v1/completions answers JSON or SSE (stream), any other path FastAPI's 404."""

    seen: ClassVar[list] = []

    def answer(self, body: dict) -> tuple[int, str, bytes]:
        if self.path.split("?")[0] != "/v1/completions":
            return 404, "application/json", b'{"detail":"Not Found"}'
        if body.get("stream"):
            events = b"".join(f'data: {{"n": {i}}}\n\n'.encode() for i in range(3))
            return 200, "text/event-stream; charset=utf-8", events + b"data: [DONE]\n\n"
        return 200, "application/json", json.dumps({"object": "text_completion", "echo": body}).encode()


def app_for(url: str) -> flask.Flask:
    app = flask.Flask(__name__)
    tls = ssl.create_default_context()
    upstream = Upstream(ClientPool(list), ClientPool(lambda: JsonConnection(url, "launch-key", tls)), "m", BATCH,
                        "resultText", ModelNames())  # fmt: skip
    relay.init_app(app, lambda: upstream)
    return app


@pytest.mark.parametrize("prefix", ["", "/directAccess", "/nim"])
def test_a_request_reaches_vllm_as_sent_with_vllms_key_and_comes_back_as_answered(prefix):
    Vllm.seen = []
    with serve_http(Vllm) as url:
        client = app_for(f"{url}/v1").test_client()
        headers = {"Authorization": "Bearer platform-token", "X-Request-Id": "r1", "Cookie": "c=1"}
        answer = client.post(f"{prefix}/v1/completions?x=1", json={"prompt": "ü", "top_k": 2}, headers=headers)
        assert answer.status_code == 200 and answer.mimetype == "application/json"
        assert answer.get_json() == {"object": "text_completion", "echo": {"prompt": "ü", "top_k": 2}}
        streamed = client.post(f"{prefix}/v1/completions", json={"stream": True})
        assert streamed.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert streamed.get_data() == b'data: {"n": 0}\n\ndata: {"n": 1}\n\ndata: {"n": 2}\n\ndata: [DONE]\n\n'
    (_, path, auth, _), _ = Vllm.seen
    assert path == "/v1/completions?x=1" and auth == "Bearer launch-key"


@pytest.mark.parametrize("prefix", ["", "/directAccess"])
def test_a_path_vllm_lacks_is_a_json_404_naming_it(prefix):
    with serve_http(Vllm) as url:
        answer = app_for(f"{url}/v1").test_client().post(f"{prefix}/v1/embeddings", json={})
    assert answer.status_code == 404
    assert answer.get_json()["error"]["message"].startswith("vLLM serves no route /v1/embeddings for this model")


def test_no_vllm_is_a_json_503_naming_the_cause():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    answer = app_for(f"http://127.0.0.1:{port}/v1").test_client().get("/version")
    assert answer.status_code == 503
    assert "vLLM server is not reachable" in answer.get_json()["error"]["message"]


def test_routing_errors_of_the_app_are_json():
    app = app_for("http://127.0.0.1:9/v1")
    app.add_url_rule("/", "root", lambda: "ok", methods=["GET"])
    answer = app.test_client().post("/")
    assert answer.status_code == 405 and answer.get_json()["error"]["message"] == "route / does not take POST"


def test_headers_each_way():
    sent = {"Authorization": "Bearer t", "Host": "h", "Cookie": "c", "Connection": "keep-alive", "Content-Length": "3",
            "Accept-Encoding": "gzip", "Content-Type": "application/json", "Accept": "text/event-stream",
            "X-Request-Id": "r"}  # fmt: skip
    assert relay.forwarded(sent.items()) == {
        "Content-Type": "application/json", "Accept": "text/event-stream", "X-Request-Id": "r"
    }  # fmt: skip
    answered = [("date", "d"), ("server", "uvicorn"), ("content-length", "9"), ("transfer-encoding", "chunked"),
                ("content-type", "application/json"), ("x-request-id", "r")]  # fmt: skip
    assert relay.returned(answered) == [("content-type", "application/json"), ("x-request-id", "r")]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (404, {"detail": "Not Found"}, "vLLM serves no route /v1/x for this model"),
        (405, {"detail": "Method Not Allowed"}, "vLLM's route /v1/x does not take POST"),
        (404, {"error": {"message": "The model `m` does not exist."}}, None),  # vLLM's own: kept
        (400, {"detail": "Not Found"}, None),
        (404, None, None),
    ],
)
def test_route_error(status, body, expected):
    message = route_error(status, body, "POST", "/v1/x")
    assert (message if message is None else message[: len(expected)]) == expected


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        ({"/v1/chat/completions", "/v1/completions"}, CHAT_ROUTE),
        ({"/v1/embeddings", "/pooling"}, EMBEDDINGS_ROUTE),
        ({"/classify"}, None),
        (None, CHAT_ROUTE),  # no route list published: vLLM's default runner
    ],
)
def test_rows_route(paths, expected):
    assert rows_route(paths) == expected


def test_embedding_rows_share_requests_as_labels_do():
    assert BATCH.rows_to_a_request(1000) == 1
    assert BATCH.rows_to_a_request(1000, alike=True) == 8


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"n": 2}, "'n'"),
        ({"response_choices": ["a"]}, "'response_choices'"),
        ({"response_schema": "{}"}, "'response_schema'"),
    ],
)
def test_settings_of_generated_answers_are_refused_for_an_embedding_model(changes, named):
    settings = dataclasses.replace(BATCH, **changes)
    upstream = Upstream(
        ClientPool(list), ClientPool(list), "m", settings, "resultText", ModelNames(), frozenset({"/v1/embeddings"})
    )
    with pytest.raises(CustomHTTPError, match=named):
        batch.rows_sender(upstream)
    neither = Upstream(
        ClientPool(list), ClientPool(list), "m", BATCH, "resultText", ModelNames(), frozenset({"/classify"})
    )
    with pytest.raises(CustomHTTPError, match="neither chat completions nor embeddings"):
        batch.rows_sender(neither)


class OpenApi(BaseHTTPRequestHandler):
    """vLLM's GET /openapi.json for a pooling model."""

    def do_GET(self) -> None:
        data = json.dumps({"paths": {"/v1/embeddings": {}, "/pooling": {}, "/v1/models": {}}}).encode()
        self.send_response(200 if self.path == "/openapi.json" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("request_log", [True, False])
def test_a_worker_connects_with_the_contracts_switches_and_vllms_routes(request_log, tmp_path):
    layout = Layout(tensor=1, pipeline=1, data=1, api_servers=1, rows_in_flight=16, reason="test")
    with serve_http(OpenApi) as url:
        contract = WorkerContract(VllmEndpoint(f"{url}/v1", "k", "m"), BATCH, 1.0, str(tmp_path / "layout.json"),
                                  request_log=request_log)  # fmt: skip
        upstream = connect(contract, layout)
    assert upstream.request_log is request_log
    assert upstream.rows_route == EMBEDDINGS_ROUTE
    assert upstream.vllm_paths == {"/v1/embeddings", "/pooling", "/v1/models"}
    assert upstream.batch.max_concurrent_rows == 16
