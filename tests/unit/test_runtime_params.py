"""Runtime parameters: typed, null-safe, bounded, and never echoing secrets."""

import json

import pytest

from vllm_dropin import runtime_params
from vllm_dropin.errors import ConfigError
from vllm_dropin.settings import BY_NAME, PARAMETERS

SECRET = "hf_TOPSECRET123"


@pytest.mark.parametrize(
    ("name", "payload", "expected"),
    [
        ("max_model_len", None, None),  # null payload: unset
        ("max_model_len", 1024.0, 1024),  # numeric payloads are floats: whole ones are fine
        ("max_model_len", 1024, 1024),
        ("temperature", 0, 0.0),  # 0 is honoured, not treated as unset
        ("temperature", 0.7, 0.7),
        ("temperature", None, None),
        ("gpu_memory_utilization", 1, 1.0),
        ("gpu_memory_utilization", 0.05, 0.05),
        ("n", 3.0, 3),
        ("n", None, 1),
        ("max_tokens", None, 256),
        ("prompt_column_name", None, "promptText"),
        ("prompt_column_name", "question", "question"),
        ("trust_remote_code", None, False),
        ("trust_remote_code", True, True),
        ("verifySSL", False, False),
        ("row_errors", "column", "column"),
        (
            "HuggingFaceToken",
            {"credentialType": "api_token", "apiToken": SECRET},
            {"credentialType": "api_token", "apiToken": SECRET},
        ),
    ],
)
def test_coerce_accepts(name, payload, expected):
    assert runtime_params.coerce(BY_NAME[name], payload) == expected


@pytest.mark.parametrize(
    ("name", "payload", "expected_text"),
    [
        ("max_model_len", 1024.5, "must be a whole number, got 1024.5"),
        ("max_model_len", 0, "must be >= 1"),
        ("gpu_memory_utilization", 0, "must be > 0 and <= 1, got 0"),
        ("gpu_memory_utilization", 1.5, "must be > 0 and <= 1, got 1.5"),
        ("gpu_memory_utilization", -0.1, "must be > 0 and <= 1"),
        ("n", 0, "must be >= 1, got 0"),
        ("max_tokens", 0, "must be >= 1, got 0"),
        ("temperature", -0.5, "must be >= 0, got -0.5"),
        ("max_tokens", float("inf"), "expected a finite number"),
        ("max_tokens", float("nan"), "expected a finite number"),
        ("max_tokens", "256", "expected a number, got str"),
        ("max_tokens", True, "expected a number, got bool"),
        ("trust_remote_code", "yes", "expected true or false, got str"),
        ("model", 5, "expected a string, got int"),
        ("row_errors", "ignore", "expected one of fail, column"),
        ("HuggingFaceToken", SECRET, "expected a credential object, got str"),
    ],
)
def test_coerce_rejects_with_one_line_naming_the_parameter(name, payload, expected_text):
    with pytest.raises(ConfigError) as err:
        runtime_params.coerce(BY_NAME[name], payload)
    message = str(err.value)
    assert message.startswith(f"runtime parameter '{name}': ")
    assert expected_text in message
    assert "\n" not in message
    assert SECRET not in message


def _set(monkeypatch, name, type_, payload):
    monkeypatch.setenv(f"MLOPS_RUNTIME_PARAM_{name}", json.dumps({"type": type_, "payload": payload}))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for p in PARAMETERS:
        monkeypatch.delenv(f"MLOPS_RUNTIME_PARAM_{p.name}", raising=False)


def test_read_through_drum_runtime_parameters(monkeypatch):
    _set(monkeypatch, "max_model_len", "numeric", 2048.0)
    _set(monkeypatch, "temperature", "numeric", 0)
    _set(monkeypatch, "n", "numeric", None)
    _set(monkeypatch, "HuggingFaceToken", "credential", {"credentialType": "api_token", "apiToken": SECRET})
    settings = runtime_params.read()
    assert settings.max_model_len == 2048
    assert settings.temperature == 0.0
    assert settings.n == 1
    assert settings.gpu_memory_utilization is None
    assert settings.hf_token == SECRET
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    "raw",
    [
        "not json " + SECRET,
        json.dumps({"type": "credential", "payload": SECRET}),  # DRUM rejects: payload must be an object
        json.dumps({"type": "nonsense", "payload": SECRET}),
    ],
)
def test_invalid_env_value_error_never_shows_the_payload(monkeypatch, raw):
    monkeypatch.setenv("MLOPS_RUNTIME_PARAM_HuggingFaceToken", raw)
    with pytest.raises(ConfigError) as err:
        runtime_params.read()
    assert "runtime parameter 'HuggingFaceToken'" in str(err.value)
    assert SECRET not in str(err.value)


def test_credential_without_token_is_a_clear_error():
    settings = runtime_params.parse({"HuggingFaceToken": {"credentialType": "api_token"}})
    with pytest.raises(ConfigError, match="non-empty apiToken"):
        _ = settings.hf_token


def test_every_parameter_default_passes_its_own_validation():
    for p in PARAMETERS:
        if p.default is not None:
            assert runtime_params.coerce(p, p.default) == p.default
