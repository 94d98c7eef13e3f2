"""Weights streamed by vLLM straight from artifact_uri's S3-compatible store into memory (the Run:ai
model streamer, vLLM's `--load-format runai_streamer`), instead of fetched into cache_dir first.

The environment still fetches the model's other files (config, tokenizer: small) into cache_dir,
so the model is read and planned as any other; vLLM is given the store's URI and reads the
safetensors files itself, with artifact_uri's endpoint and keys as the streamer reads them.
"""

from __future__ import annotations

from collections.abc import Mapping

from vllm_dropin.config.settings import Settings
from vllm_dropin.errors import ConfigError
from vllm_dropin.model.artifacts import credentials
from vllm_dropin.model.artifacts.uri import ArtifactUri

PARAM = "stream_weights"
LOAD_FORMAT = "runai_streamer"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
AWS_CHAIN = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN",
             "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
             "AWS_REGION", "AWS_DEFAULT_REGION")  # fmt: skip


def streams(settings: Settings, uri: ArtifactUri) -> bool:
    """Whether vLLM streams this URI's weights; ConfigError for a store the streamer is not used for."""
    if not settings.stream_weights:
        return False
    if uri.kind != "s3":
        raise ConfigError(f"runtime parameter '{PARAM}' needs an s3:// artifact_uri; {uri.shown} is not one")
    return True


def is_weights(path: str) -> bool:
    return path.endswith(WEIGHT_SUFFIXES)


def vllm_env(settings: Settings) -> dict[str, str]:
    """What the streamer in vLLM's process reads: the store's endpoint (path-style addressing, as
    S3-compatible servers want) and artifact_credential's keys."""
    env = {}
    if settings.artifact_endpoint_url:
        env["AWS_ENDPOINT_URL"] = settings.artifact_endpoint_url
        env["RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING"] = "0"
    keys = credentials.s3_keys(settings.artifact_credential)
    if keys:
        env["AWS_ACCESS_KEY_ID"] = keys["aws_access_key_id"]
        env["AWS_SECRET_ACCESS_KEY"] = keys["aws_secret_access_key"]
        if "aws_session_token" in keys:
            env["AWS_SESSION_TOKEN"] = keys["aws_session_token"]
        env["AWS_EC2_METADATA_DISABLED"] = "true"  # keys given: no instance-role lookup first
    return env


def default_chain(environ: Mapping[str, str]) -> dict[str, str]:
    """Without artifact_credential: this environment's AWS variables (web identity, profile, keys,
    region), which vLLM's scrubbed environment would otherwise lack."""
    return {name: environ[name] for name in AWS_CHAIN if name in environ}
