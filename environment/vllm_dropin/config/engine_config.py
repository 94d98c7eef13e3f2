"""Load `engine_config.json` and check it against the JSON Schema in `schemas/`.

Any problem stops startup before anything is launched, with the file name, the JSON path
and what was expected.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from vllm_dropin.errors import ConfigError

FILENAME = "engine_config.json"
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "engine_config.schema.json"


@cache
def _validator():
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _short(value: object, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate(document: object, source: str = FILENAME) -> list[str]:
    """The `args` list of a parsed engine_config document, or ConfigError for the first violation."""
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator().iter_errors(document))
    if error is not None:
        expected = {
            "type": f"expected type {error.validator_value}",
            "additionalProperties": "expected no keys other than 'args'",
            "minLength": "expected a non-empty string",
        }.get(str(error.validator), error.message)
        got = _short(error.instance) if error.validator != "additionalProperties" else ""
        raise ConfigError(f"{source}: {error.json_path}: {expected}" + (f", got {got}" if got else ""))
    return list(document.get("args", []))  # type: ignore[union-attr]


def load(code_dir: Path) -> list[str]:
    """Flags from `<code_dir>/engine_config.json`; [] when there is no such file."""
    path = code_dir / FILENAME
    if not path.is_file():
        return []
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return validate(document, str(path))
