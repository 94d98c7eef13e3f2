"""Deployment status events over TLS, against a local HTTPS server with a self-signed certificate."""

import datetime
import json
import logging
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vllm_dropin.events import EventReporter

TOKEN = "dr-api-TOPSECRET"


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture
def https_server(tmp_path):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.path, self.headers["Authorization"], body))
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*_self_signed(tmp_path))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://localhost:{server.server_address[1]}/api/v2", received
    server.shutdown()


def env_for(endpoint):
    return {"DATAROBOT_ENDPOINT": endpoint, "DATAROBOT_API_TOKEN": TOKEN, "MLOPS_DEPLOYMENT_ID": "dep-1"}


def test_events_are_posted_when_verification_is_off(https_server):
    endpoint, received = https_server
    reporter = EventReporter(env_for(endpoint), verify_ssl=False)
    reporter.report("vLLM launching", "serving m")
    reporter.report("vLLM ready")
    reporter.close()
    assert [r[2]["title"] for r in received] == ["vLLM launching", "vLLM ready"]
    path, auth, body = received[0]
    assert path == "/api/v2/remoteEvents/"
    assert auth == f"Bearer {TOKEN}"
    assert body["eventType"] == "deploymentInfo" and body["deploymentId"] == "dep-1"
    assert body["message"] == "serving m"
    datetime.datetime.fromisoformat(body["timestamp"])


def test_untrusted_certificate_is_refused_without_blocking_or_leaking(https_server, caplog):
    endpoint, received = https_server
    caplog.set_level(logging.INFO)
    reporter = EventReporter(env_for(endpoint), verify_ssl=True)
    reporter.report("vLLM launching")
    reporter.close()
    assert received == []
    assert "could not post deployment event 'vLLM launching'" in caplog.text
    assert "SSLError" in caplog.text
    assert TOKEN not in caplog.text


def test_unreachable_endpoint_never_raises(caplog):
    reporter = EventReporter(env_for("https://127.0.0.1:9"), verify_ssl=True)
    reporter.report("Deployment failed", "reason")
    reporter.close()
    assert "could not post deployment event" in caplog.text


@pytest.mark.parametrize("missing", ["DATAROBOT_ENDPOINT", "DATAROBOT_API_TOKEN", "MLOPS_DEPLOYMENT_ID"])
def test_disabled_without_all_platform_variables(missing):
    env = env_for("https://x")
    del env[missing]
    assert EventReporter(env).enabled is False
