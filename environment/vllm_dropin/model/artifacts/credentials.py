"""The `artifact_credential` payload as each store's client takes it; errors name fields, never values."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from vllm_dropin.errors import ConfigError

PARAM = "artifact_credential"
TYPE_FOR = {"s3": "s3", "gs": "gcp", "azure": "azure", "http": "api_token", "hf": "api_token"}


def _need(cred: Mapping[str, Any], kind: str, *names: str) -> list[str]:
    values = [cred.get(name) for name in names]
    if not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"runtime parameter '{PARAM}': a '{kind}' credential needs {' and '.join(names)}")
    return values  # type: ignore[return-value]


def check_fits(cred: Mapping[str, Any] | None, store: str, shown_uri: str) -> None:
    """A credential of another store's type is a mistake worth one line before anything is fetched."""
    if not cred:
        return
    given, wanted = cred.get("credentialType"), TYPE_FOR[store]
    if given is not None and given != wanted:
        raise ConfigError(f"runtime parameter '{PARAM}' is a '{given}' credential; {shown_uri} needs a '{wanted}' one")


def s3_keys(cred: Mapping[str, Any] | None) -> dict[str, str]:
    """boto3 session arguments; empty: boto3's default chain (env, web identity, instance role)."""
    if not cred:
        return {}
    key_id, secret = _need(cred, "s3", "awsAccessKeyId", "awsSecretAccessKey")
    keys = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
    if cred.get("awsSessionToken"):
        keys["aws_session_token"] = str(cred["awsSessionToken"])
    return keys


def gcp_info(cred: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A service account key (gcpKey: an object or its JSON text); None: application default credentials."""
    if not cred:
        return None
    key = cred.get("gcpKey")
    if isinstance(key, str):
        try:
            key = json.loads(key)
        except json.JSONDecodeError:
            key = None
    if not isinstance(key, dict) or "client_email" not in key:
        raise ConfigError(f"runtime parameter '{PARAM}': a 'gcp' credential needs gcpKey, a service account key (JSON)")
    return key


def azure_connection_string(cred: Mapping[str, Any] | None) -> str | None:
    if not cred:
        return None
    return _need(cred, "azure", "azureConnectionString")[0]


def bearer(cred: Mapping[str, Any] | None) -> str | None:
    """An api_token credential's token (http(s) stores and hub mirrors)."""
    if not cred:
        return None
    return _need(cred, "api_token", "apiToken")[0]
