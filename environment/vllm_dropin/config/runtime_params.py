"""Read runtime parameters through DRUM's `RuntimeParameters` into one typed `Settings`.

A null payload means "unset" (the declared default applies). An error names the parameter and
says what is wrong with the value ("payload 'hot' is text; it needs a number"), from env vars
and values files alike. A credential's payload is never shown: DRUM's own exceptions show
payloads, so they are caught and replaced here. Names nobody declared (a typo such as
`max_tokenz`) are found with the closest declared name.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from vllm_dropin.config.settings import BY_NAME, PARAMETERS, Parameter, Settings
from vllm_dropin.errors import ConfigError

ENV_PREFIX = "MLOPS_RUNTIME_PARAM_"
METADATA_FILE = "model-metadata.yaml"
# Runtime parameters DRUM itself reads (its server, workers, NIM predictor).
DRUM_OWN_PREFIXES = ("DRUM_", "NIM_", "USE_NIM_")
DRUM_OWN_NAMES = ("CUSTOM_MODEL_WORKERS",)
SHOWN_CHARS = 40

_NEEDS = {
    "credential": "a credential object",
    "boolean": "true or false",
    "string": "text",
    "numeric": "a number",
}


def _kind(payload: Any) -> str:
    if isinstance(payload, bool):
        return "true/false"
    if isinstance(payload, (int, float)):
        return "a number"
    if isinstance(payload, str):
        return "text"
    if isinstance(payload, Mapping):
        return "an object"
    if isinstance(payload, list):
        return "a list"
    return type(payload).__name__


def _shown(param: Parameter, payload: Any) -> str:
    """The payload as an error may show it: never a credential's, never more than a few words."""
    if param.type == "credential":
        return "payload"
    text = json.dumps(payload, ensure_ascii=False) if not isinstance(payload, str) else repr(payload)
    return "payload " + (text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "...")


def coerce(param: Parameter, payload: Any) -> Any:
    """Turn one payload into the declared Python type, or raise ConfigError naming `param`."""
    if payload is None:
        return param.default
    where = f"runtime parameter '{param.name}'"
    wanted = {"credential": Mapping, "boolean": bool, "string": str, "numeric": (int, float)}[param.type]
    if not isinstance(payload, wanted) or (param.type == "numeric" and isinstance(payload, bool)):
        raise ConfigError(f"{where}: {_shown(param, payload)} is {_kind(payload)}; it needs {_NEEDS[param.type]}")
    if param.type == "string" and param.choices and payload not in param.choices:
        raise ConfigError(f"{where}: {_shown(param, payload)} is not one of {', '.join(param.choices)}")
    return _coerce_number(param, payload, where) if param.type == "numeric" else payload


def _coerce_number(param: Parameter, payload: float, where: str) -> float | int:
    if not math.isfinite(payload):
        raise ConfigError(f"{where}: payload {payload} is not a finite number")
    low, high = param.minimum, param.maximum
    too_low = low is not None and (payload <= low if param.minimum_exclusive else payload < low)
    if too_low or (high is not None and payload > high):
        raise ConfigError(f"{where}: must be {param.bounds_text()}, got {payload:g}")
    if param.integer:
        if not float(payload).is_integer():
            raise ConfigError(f"{where}: must be a whole number, got {payload:g}")
        return int(payload)
    return float(payload)


def parse(raw: Mapping[str, Any]) -> Settings:
    """Typed settings from raw payloads (absent = unset)."""
    return Settings(**{p.name: coerce(p, raw.get(p.name)) for p in PARAMETERS})


def _explain_env(param: Parameter, env: str, text: str) -> ConfigError:
    """Why DRUM refused the env var `env` of `param`; never with a credential's value."""
    form = f'{{"type": "{param.type}", "payload": ...}}'
    try:
        document = json.loads(text)
    except ValueError:
        return ConfigError(f"runtime parameter '{param.name}': env {env} is not JSON; expected {form}")
    if not isinstance(document, dict) or not {"type", "payload"} <= document.keys():
        return ConfigError(f"runtime parameter '{param.name}': env {env} is not of the form {form}")
    if document["type"] != param.type:
        return ConfigError(
            f"runtime parameter '{param.name}': env {env} says type {str(document['type'])[:SHOWN_CHARS]!r}; "
            f"it is declared {param.type}"
        )
    try:
        coerce(param, document["payload"])
    except ConfigError as exc:
        return exc
    return ConfigError(f"runtime parameter '{param.name}': env {env}: DRUM refused the {param.type} payload")


def read_raw() -> dict[str, Any]:
    """Raw payloads of the declared parameters that are set, read with DRUM's RuntimeParameters."""
    from datarobot_drum import RuntimeParameters

    raw: dict[str, Any] = {}
    for param in PARAMETERS:
        if not RuntimeParameters.has(param.name):
            continue
        try:
            raw[param.name] = RuntimeParameters.get(param.name)
        except Exception:  # DRUM's messages embed the payload (credentials too): never pass them on
            env = RuntimeParameters.namespaced_param_name(param.name)
            raise _explain_env(param, env, os.environ.get(env, "")) from None
    return raw


def read() -> Settings:
    """Typed settings from the process environment."""
    return parse(read_raw())


def metadata_names(code_dir: Path) -> set[str]:
    """Runtime parameters the model folder's model-metadata.yaml declares (for its own load_model)."""
    import yaml

    try:
        document = yaml.safe_load((code_dir / METADATA_FILE).read_text(encoding="utf-8"))
        definitions = document.get("runtimeParameterDefinitions") or []
        return {d["fieldName"] for d in definitions if isinstance(d, dict) and isinstance(d.get("fieldName"), str)}
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return set()  # DRUM reports a broken model-metadata.yaml itself


def undeclared(names: Iterable[str], code_dir: Path) -> list[str]:
    """One line per name that neither we, the model's model-metadata.yaml nor DRUM declare."""
    known = set(BY_NAME) | metadata_names(code_dir)
    lines = []
    for name in sorted(names):
        if name in known or name in DRUM_OWN_NAMES or name.startswith(DRUM_OWN_PREFIXES):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        lines.append(f"runtime parameter '{name}' is not declared by the environment or {METADATA_FILE}{hint}")
    return lines


def env_names(environ: Mapping[str, str]) -> list[str]:
    return [k.removeprefix(ENV_PREFIX) for k in environ if k.startswith(ENV_PREFIX)]


def load_params_file(values_file: str, code_dir: Path) -> list[str]:
    """Local runs: set MLOPS_RUNTIME_PARAM_* from a YAML file, as `drum --runtime-params-file` does.

    Values of the environment's parameters are checked here first (DRUM's messages show values);
    returns the lines naming keys nobody declared, for the caller to warn or fail."""
    import yaml
    from datarobot_drum.runtime_parameters.runtime_parameters import RuntimeParametersLoader

    where = f"runtime params file {values_file}"
    try:
        document = yaml.safe_load(Path(values_file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{where}: not valid YAML{at}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{where}: expected a mapping of parameter names to values")
    for name, value in document.items():
        if name in BY_NAME:
            try:
                coerce(BY_NAME[name], value)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
    try:
        RuntimeParametersLoader(values_file, str(code_dir)).setup_environment_variables()
    except Exception as exc:
        # DRUM's loader errors name the file or parameter, and may show the value: keep its first words.
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{where}: {first.split('. ', 1)[0][:200]}") from None
    return [f"{where}: {line}" for line in undeclared(map(str, document), code_dir)]
