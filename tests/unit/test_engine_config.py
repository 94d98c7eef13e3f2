"""engine_config.json: schema-checked, with file name, JSON path and what was expected."""

import json

import pytest

from vllm_dropin.config import engine_config
from vllm_dropin.errors import ConfigError


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"args": ["--max-model-len", "512"]}, ["--max-model-len", "512"]),
        ({"args": []}, []),
        ({}, []),
    ],
)
def test_valid_documents(document, expected):
    assert engine_config.validate(document) == expected


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"args": ["--dtype", 5]}, "engine_config.json: $.args[1]: expected type string, got 5"),
        ({"args": "--dtype float32"}, "engine_config.json: $.args: expected type array"),
        ({"args": [""]}, "engine_config.json: $.args[0]: expected a non-empty string"),
        ({"args": [], "env": {}}, "engine_config.json: $: expected no keys other than 'args'"),
        (["--dtype"], "engine_config.json: $: expected type object"),
        (None, "engine_config.json: $: expected type object"),
    ],
)
def test_schema_violations(document, message):
    with pytest.raises(ConfigError) as err:
        engine_config.validate(document)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"args": ["--x",]}', "invalid JSON at line 1 column 17"),
        (b"", "invalid JSON at line 1 column 1"),
        (b'{"args": ["\xff"]}', "not UTF-8 text"),
        (b'{"args": [1]}', "$.args[0]: expected type string"),
    ],
)
def test_file_errors_name_the_file(tmp_path, content, message):
    (tmp_path / "engine_config.json").write_bytes(content)
    with pytest.raises(ConfigError) as err:
        engine_config.load(tmp_path)
    assert str(err.value).startswith(str(tmp_path / "engine_config.json") + ": ")
    assert message in str(err.value)


def test_no_file_means_no_args(tmp_path):
    assert engine_config.load(tmp_path) == []


def test_schema_file_is_the_one_in_schemas_folder():
    schema = json.loads(engine_config.SCHEMA_PATH.read_text())
    assert engine_config.SCHEMA_PATH.resolve().parent.name == "schemas"
    assert schema["additionalProperties"] is False
    assert schema["properties"]["args"]["items"]["type"] == "string"
