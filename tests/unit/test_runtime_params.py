"""Runtime parameters: typed, null-safe, bounded, and never echoing secrets."""

import json
import re

import pytest

from vllm_dropin.config import runtime_params
from vllm_dropin.config.settings import BY_NAME, PARAMETERS
from vllm_dropin.errors import ConfigError

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
        ("max_tokens", float("inf"), "payload inf is not a finite number"),
        ("max_tokens", float("nan"), "payload nan is not a finite number"),
        ("max_tokens", "256", "payload '256' is text; it needs a number"),
        ("temperature", "hot", "payload 'hot' is text; it needs a number"),
        ("max_tokens", True, "payload true is true/false; it needs a number"),
        ("trust_remote_code", "yes", "payload 'yes' is text; it needs true or false"),
        ("model", 5, "payload 5 is a number; it needs text"),
        ("model", ["a"], 'payload ["a"] is a list; it needs text'),
        ("max_tokens", "x" * 100, "payload 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... is text"),
        ("row_errors", "ignore", "payload 'ignore' is not one of fail, column"),
        ("HuggingFaceToken", SECRET, "runtime parameter 'HuggingFaceToken': payload is text; it needs a credential"),
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
def test_invalid_env_value_error_never_shows_the_credential(monkeypatch, raw):
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


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (json.dumps({"type": "numeric", "payload": "hot"}), "runtime parameter 'temperature': payload 'hot' is text"),
        (json.dumps({"type": "string", "payload": "hot"}), "runtime parameter 'temperature': payload 'hot' is text"),
        ("{not json", "env MLOPS_RUNTIME_PARAM_temperature is not JSON; expected"),
        (json.dumps({"payload": 1}), 'is not of the form {"type": "numeric", "payload": ...}'),
        (json.dumps({"type": "boolean", "payload": True}), "payload true is true/false; it needs a number"),
    ],
)
def test_env_errors_say_what_is_wrong_with_the_value(monkeypatch, raw, expected):
    monkeypatch.setenv("MLOPS_RUNTIME_PARAM_temperature", raw)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        runtime_params.read()


def test_undeclared_names_get_the_closest_declared_one(tmp_path):
    (tmp_path / "model-metadata.yaml").write_text(
        "runtimeParameterDefinitions:\n- fieldName: artifact_uri\n  type: string\n"
    )
    names = ["max_tokenz", "artifact_uri", "DRUM_WORKER_CONNECTIONS", "CUSTOM_MODEL_WORKERS", "artifact_url", "zzz"]
    assert runtime_params.undeclared(names, tmp_path) == [
        "runtime parameter 'artifact_url' is not declared by the environment or model-metadata.yaml; "
        "did you mean 'artifact_uri'?",
        "runtime parameter 'max_tokenz' is not declared by the environment or model-metadata.yaml; "
        "did you mean 'max_tokens'?",
        "runtime parameter 'zzz' is not declared by the environment or model-metadata.yaml",
    ]


def test_values_file_errors_name_the_file_and_the_value(tmp_path):
    (tmp_path / "model-metadata.yaml").write_text(
        "runtimeParameterDefinitions:\n- fieldName: temperature\n  type: numeric\n"
    )
    values = tmp_path / "values.yaml"
    values.write_text("temperature: hot\n")
    with pytest.raises(
        ConfigError,
        match=re.escape(
            f"runtime params file {values}: runtime parameter 'temperature': payload 'hot' is text; it needs a number"
        ),
    ):
        runtime_params.load_params_file(str(values), tmp_path)
    values.write_text("temperature: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line 2 column 1"):
        runtime_params.load_params_file(str(values), tmp_path)


def test_values_file_typos_are_returned_to_warn_about(tmp_path, monkeypatch):
    (tmp_path / "model-metadata.yaml").write_text(
        "runtimeParameterDefinitions:\n- fieldName: max_tokens\n  type: numeric\n"
    )
    values = tmp_path / "values.yaml"
    values.write_text("max_tokenz: 5\nmax_tokens: 7\n")
    monkeypatch.delenv("MLOPS_RUNTIME_PARAM_max_tokens", raising=False)
    lines = runtime_params.load_params_file(str(values), tmp_path)
    assert lines == [
        f"runtime params file {values}: runtime parameter 'max_tokenz' is not declared by the environment or "
        "model-metadata.yaml; did you mean 'max_tokens'?"
    ]
    assert runtime_params.read().max_tokens == 7
