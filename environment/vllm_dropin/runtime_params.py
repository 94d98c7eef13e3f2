"""Read runtime parameters through DRUM's `RuntimeParameters` into one typed `Settings`.

A null payload means "unset" (the declared default applies). Errors name the parameter and
what was expected, and never repeat the payload: DRUM's own exceptions do (credentials
included), so they are caught and replaced here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError
from .settings import PARAMETERS, Parameter, Settings


def coerce(param: Parameter, payload: Any) -> Any:
    """Turn one payload into the declared Python type, or raise ConfigError naming `param`."""
    if payload is None:
        return param.default
    where = f"runtime parameter '{param.name}'"
    if param.type == "credential":
        if not isinstance(payload, Mapping):
            raise ConfigError(f"{where}: expected a credential object, got {type(payload).__name__}")
        return payload
    if param.type == "boolean":
        if not isinstance(payload, bool):
            raise ConfigError(f"{where}: expected true or false, got {type(payload).__name__}")
        return payload
    if param.type == "string":
        if not isinstance(payload, str):
            raise ConfigError(f"{where}: expected a string, got {type(payload).__name__}")
        if param.choices and payload not in param.choices:
            raise ConfigError(f"{where}: expected one of {', '.join(param.choices)}, got {payload!r}")
        return payload
    return _coerce_number(param, payload, where)


def _coerce_number(param: Parameter, payload: Any, where: str) -> float | int:
    if isinstance(payload, bool) or not isinstance(payload, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {type(payload).__name__}")
    if not math.isfinite(payload):
        raise ConfigError(f"{where}: expected a finite number, got {payload}")
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
            raise ConfigError(
                f"runtime parameter '{param.name}': env {env} is not valid JSON of the form "
                f'{{"type": "{param.type}", "payload": ...}}'
            ) from None
    return raw


def read() -> Settings:
    """Typed settings from the process environment."""
    return parse(read_raw())


def load_params_file(values_file: str, code_dir: str) -> None:
    """Local runs: set MLOPS_RUNTIME_PARAM_* from a YAML file, as `drum --runtime-params-file` does."""
    from datarobot_drum.runtime_parameters.runtime_parameters import RuntimeParametersLoader

    try:
        RuntimeParametersLoader(values_file, code_dir).setup_environment_variables()
    except Exception as exc:
        # DRUM's loader errors name the file or parameter; keep only its first line.
        raise ConfigError(f"runtime params file {values_file}: {str(exc).splitlines()[0]}") from None
