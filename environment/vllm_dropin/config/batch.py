"""The batch parameters checked at startup: a template that parses, a JSON Schema that is one,
labels that are a list of text; then `BatchSettings` as DRUM's workers get them.

Pure. A schema named as a file of the model folder is read by the model stage (`model.facts`)
and checked here with `schema_text`. Errors name the parameter and the character or JSON path.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from vllm_dropin.config.settings import PARAMETERS, Settings
from vllm_dropin.contract import BatchSettings
from vllm_dropin.errors import ConfigError
from vllm_dropin.prompt_template import TemplateError, parse

SCHEMA_PARAMETER = "runtime parameter 'response_schema'"


def _template(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        parse(text)
    except TemplateError as exc:
        raise ConfigError(f"runtime parameter 'prompt_template': {exc}") from None
    return text


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None


def schema_file(settings: Settings) -> str | None:
    """The model folder's file that response_schema names, if it names one rather than holding the schema."""
    value = settings.response_schema
    return value if value is not None and not value.lstrip().startswith("{") else None


def schema_text(text: str, where: str) -> str:
    """A JSON Schema as compact JSON text, or ConfigError naming `where` and the JSON path."""
    schema = _json(text, where)
    if not isinstance(schema, dict):
        raise ConfigError(f"{where}: a JSON Schema is an object, got {type(schema).__name__}")
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = exc.json_path if hasattr(exc, "json_path") else "$"
        raise ConfigError(f"{where}: not a valid JSON Schema at {path}: {exc.message}") from None
    return json.dumps(schema)


def _choices(value: str | None) -> list[str] | None:
    if value is None:
        return None
    where = "runtime parameter 'response_choices'"
    labels = _json(value, where)
    if not isinstance(labels, list) or not labels:
        raise ConfigError(f'{where}: expected a JSON list of labels such as ["positive", "negative"]')
    bad = [i for i, label in enumerate(labels) if not isinstance(label, str) or not label]
    if bad:
        raise ConfigError(f"{where}: label {bad[0]} is not a non-empty string")
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{where}: labels repeat")
    return labels


def settings_for_batch(settings: Settings) -> BatchSettings:
    """The batch parameters as DRUM's workers get them. A response_schema that names a file stays
    None here: the model stage reads the file after load_model (`with_schema_file`). Rows in flight
    stay as set (None: vLLM's process decides them from the parallel layout it runs)."""
    if settings.response_schema is not None and settings.response_choices is not None:
        raise ConfigError("runtime parameters 'response_schema' and 'response_choices': set one of them, not both")
    values = {p.name: getattr(settings, p.name) for p in PARAMETERS if p.feeds == "batch"}
    inline = settings.response_schema if schema_file(settings) is None else None
    values |= {
        "prompt_template": _template(settings.prompt_template),
        "response_schema": schema_text(inline, SCHEMA_PARAMETER) if inline is not None else None,
        "response_choices": _choices(settings.response_choices),
    }
    return BatchSettings(**values)


def with_schema_file(batch: BatchSettings, settings: Settings, text: str | None) -> BatchSettings:
    """The batch settings with the schema file's `text` (as the model stage read it) checked in."""
    name = schema_file(settings)
    if name is None or text is None:
        return batch
    return replace(batch, response_schema=schema_text(text, f"{SCHEMA_PARAMETER} (file {name})"))
