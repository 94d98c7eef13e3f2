"""A request whose client left is given up upstream: the client's closed connection is seen
while the request waits, and the connections it holds to vLLM are cut off (a real local server
stands for vLLM and sees its client go)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import flask
import pytest
import urllib3

from tests.helpers import serve_http
from vllm_dropin.drum import departure
from vllm_dropin.drum.client import JsonConnection
from vllm_dropin.drum.departure import ClientGone, Departure


class Slow(BaseHTTPRequestHandler):
    """Reads a request and never answers; records when its client closed the connection."""

    gone = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.connection.recv(1) == b"":  # blocks until the client closes
            Slow.gone.set()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def slow_vllm() -> Iterator[str]:
    Slow.gone = threading.Event()
    with serve_http(Slow) as url:
        yield f"{url}/v1"


def test_an_aborted_connection_ends_its_call_and_vllm_sees_its_client_gone(slow_vllm):
    connection = JsonConnection(slow_vllm, "k", ssl.create_default_context())
    failed = []

    def post() -> None:
        try:
            connection.post("/chat/completions", {})
        except urllib3.exceptions.HTTPError as exc:
            failed.append(exc)

    caller = threading.Thread(target=post)
    caller.start()
    leaving = Departure()
    with leaving.holding(connection):
        while connection._connection is None or connection._connection.sock is None:
            threading.Event().wait(0.01)
        leaving.give_up()
        caller.join(10)
    assert failed and not caller.is_alive()
    assert Slow.gone.wait(10)


def test_a_request_given_up_takes_no_more_connections():
    leaving = Departure()
    leaving.give_up()
    with pytest.raises(ClientGone), leaving.holding(object()):
        pass


def test_a_client_that_closes_its_connection_gives_its_request_up():
    app = flask.Flask(__name__)
    client, server_side = socket.socketpair()
    with app.test_request_context(environ_base={"gunicorn.socket": server_side}), departure.watched() as leaving:
        assert departure.CURRENT.get() is leaving
        assert not leaving.gone.wait(0.2)  # the client is there
        client.close()
        assert leaving.gone.wait(10)
    server_side.close()


def test_an_error_after_the_client_left_is_its_leaving_and_any_error_gives_up():
    app = flask.Flask(__name__)
    client, server_side = socket.socketpair()
    request = app.test_request_context(environ_base={"gunicorn.socket": server_side})
    with pytest.raises(ClientGone), request, departure.watched() as leaving:
        client.close()
        assert leaving.gone.wait(10)
        raise urllib3.exceptions.ProtocolError("cut off")
    with pytest.raises(RuntimeError), departure.watched() as leaving:
        raise RuntimeError("a request given up")
    assert leaving.gone.is_set()
    server_side.close()


GEVENT_WORKER = """
from gevent import monkey
monkey.patch_all()
import socket, flask
from vllm_dropin.drum import departure
client, server_side = socket.socketpair()
with flask.Flask("w").test_request_context(environ_base={"gunicorn.socket": server_side}):
    with departure.watched() as leaving:
        assert not leaving.gone.wait(0.2)
        client.close()
        assert leaving.gone.wait(10)
print("given up")
"""


def test_in_a_gevent_worker_the_loop_watches_the_client():
    done = subprocess.run([sys.executable, "-c", GEVENT_WORKER], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "given up", done.stderr


def test_a_request_whose_client_left_is_answered_without_drums_traceback():
    """DRUM's blueprint handles every Exception with a logged traceback; a client's leaving is no
    error of the deployment's: its own handler comes first."""
    app = flask.Flask(__name__)
    drum = flask.Blueprint(departure.DRUM_BLUEPRINT, __name__)
    handled = []

    @drum.route("/predictions/", methods=["POST"])
    def predict():
        raise departure.Left()

    @drum.errorhandler(Exception)
    def drums(error):
        handled.append(error)
        return {"message": str(error)}, 500

    app.register_blueprint(drum)
    departure.init_app(app)
    answer = app.test_client().post("/predictions/")
    assert answer.status_code == 499 and handled == []
    assert "closed its connection" in answer.json["message"]
