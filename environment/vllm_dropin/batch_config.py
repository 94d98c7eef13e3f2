"""The batch parameters resolved and checked at startup: a template that parses, a JSON Schema
that is one (read from the model folder when named), labels that are a list of text.

Pure but for reading a schema file from the model folder. Errors name the parameter and the
character or JSON path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .adapter.prompt_template import TemplateError, parse
from .errors import ConfigError
from .settings import Settings


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


def _schema(value: str | None, code_dir: Path, hook_pending: bool) -> str | None:
    """The schema as JSON text: inline, or the content of a file in the model folder (None while a
    pending load_model may still place that file)."""
    if value is None:
        return None
    where = "runtime parameter 'response_schema'"
    if not value.lstrip().startswith("{"):
        path = (code_dir / value).resolve()
        inside = path.is_relative_to(code_dir.resolve())
        if inside and not path.is_file() and hook_pending:
            return None
        if not inside or not path.is_file():
            raise ConfigError(f"{where}: {value!r} is neither a JSON object nor a file in the model folder")
        where = f"{where} (file {value})"
        value = path.read_text(encoding="utf-8")
    schema = _json(value, where)
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


def resolve(settings: Settings, code_dir: Path, hook_pending: bool = False) -> dict[str, Any]:
    """prompt_template, response_schema and response_choices as DRUM workers get them.

    `hook_pending`: load_model has yet to run; a schema file it may place is read afterwards."""
    if settings.response_schema is not None and settings.response_choices is not None:
        raise ConfigError("runtime parameters 'response_schema' and 'response_choices': set one of them, not both")
    return {
        "prompt_template": _template(settings.prompt_template),
        "response_schema": _schema(settings.response_schema, code_dir, hook_pending),
        "response_choices": _choices(settings.response_choices),
    }
