"""Batch parameters checked at startup: templates, JSON Schemas and labels, each error one line naming
the parameter and the character or JSON path."""

import json
from dataclasses import asdict

import pytest

from tests.helpers import plan_of
from vllm_dropin import prompt_template
from vllm_dropin.config import runtime_params
from vllm_dropin.errors import ConfigError
from vllm_dropin.launch import vllm_command

SCHEMA = {"type": "object", "properties": {"label": {"enum": ["a", "b"]}}, "required": ["label"]}


def resolve(tmp_path, **params):
    """The batch settings once the model stage has read the folder (a schema file among it)."""
    settings = runtime_params.parse({"model": "m", **params})
    return asdict(plan_of(settings, [], tmp_path).batch)


@pytest.mark.parametrize(
    ("template", "rendered"),
    [
        ("Review: {review text}", "Review: good"),
        ("{{literal}} {a.b:c} }}", "{literal} 5 }"),
        ("{review text}{review text}", "goodgood"),
    ],
)
def test_templates_render_any_column_name(template, rendered):
    parsed = prompt_template.parse(template)
    assert parsed.render({"review text": "good", "a.b:c": 5.0}) == rendered


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Review: {text", "'{' at character 9 is never closed"),
        ("Review: text}", "'}' at character 13 closes nothing"),
        ("Review: {}", "placeholder at character 9 names no column"),
        ("No placeholder", "has no {column} placeholder"),
    ],
)
def test_bad_templates_stop_startup_naming_the_character(tmp_path, template, message):
    with pytest.raises(ConfigError, match=f"runtime parameter 'prompt_template': {message}"):
        resolve(tmp_path, prompt_template=template)


def test_a_schema_is_inline_json_or_a_file_in_the_model_folder(tmp_path):
    assert json.loads(resolve(tmp_path, response_schema=json.dumps(SCHEMA))["response_schema"]) == SCHEMA
    (tmp_path / "answer.schema.json").write_text(json.dumps(SCHEMA))
    assert json.loads(resolve(tmp_path, response_schema="answer.schema.json")["response_schema"]) == SCHEMA


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"response_schema": '{"type": "objct"}'}, r"'response_schema': not a valid JSON Schema at \$.type: "),
        (
            {"response_schema": '{"type": "object", "properties": {"a": {"minLength": -1}}}'},
            r"at \$.properties.a.minLength",
        ),
        ({"response_schema": '{"type": '}, r"'response_schema': not valid JSON \(line 1 column 10"),
        ({"response_schema": "../outside.json"}, "is neither a JSON object nor a file in the model folder"),
        ({"response_choices": '["a", "a"]'}, "'response_choices': labels repeat"),
        ({"response_choices": '"a"'}, "'response_choices': expected a JSON list of labels"),
        ({"response_choices": '["a", ""]'}, "'response_choices': label 1 is not a non-empty string"),
        ({"response_choices": '["a"]', "response_schema": "{}"}, "set one of them, not both"),
    ],
)
def test_bad_structured_outputs_stop_startup(tmp_path, params, message):
    (tmp_path.parent / "outside.json").write_text("{}")
    with pytest.raises(ConfigError, match=message):
        resolve(tmp_path, **params)


def test_the_vllm_process_checks_structured_outputs_with_vllms_own_backend(tmp_path, monkeypatch):
    ok = plan_of(runtime_params.parse({"model": "m", "response_choices": '["yes", "no"]'}), [], tmp_path)
    vllm_command.check_batch_sampling(ok.batch)
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)  # a vLLM built without backends
    with pytest.raises(ConfigError, match="'response_choices': this vLLM has no structured-output backend"):
        vllm_command.check_batch_sampling(ok.batch)
