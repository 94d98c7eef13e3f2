"""Checks of the model before vLLM starts, from what the model stage read (milliseconds).

vLLM finds these too, but after seconds to minutes and as the last line of a traceback (a hub
id offline: after a minute of retries). Each check here answers in one line naming the
parameter or file; anything uncertain is left to vLLM.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vllm_dropin.config import vllm_flags
from vllm_dropin.config.settings import Settings
from vllm_dropin.errors import ConfigError
from vllm_dropin.model import lora
from vllm_dropin.model.facts import TOKENIZER_FILES, ModelFacts
from vllm_dropin.model.source import ModelSource

HUB_ENDPOINT = "https://huggingface.co"
HUB_TIMEOUT_S = (5.0, 10.0)  # connect, read: a refused or unroutable hub answers within 15 s
TOKENIZER_FLAGS = ("tokenizer", "skip_tokenizer_init")
log = logging.getLogger("vllm_dropin")


def _source(model: ModelSource) -> str:
    if model.artifact is not None:
        return f"artifact_uri {model.artifact}"
    return "runtime parameter 'model'" if "runtime parameter" in model.origin else model.origin


def _engine_sets(engine_args: list[str], dests: tuple[str, ...]) -> bool:
    return any(vllm_flags.long_flag(engine_args, dest) is not None for dest in dests)


def check_local_folder(facts: ModelFacts, settings: Settings, engine_args: list[str]) -> None:
    """A local model folder: it exists, has config.json and tokenizer files, and fits max_model_len."""
    folder = facts.folder
    if folder is None:
        shown = Path(facts.source.ref).expanduser()
        raise ConfigError(f"{_source(facts.source)}: no such folder {shown} (a local path; mount it, or give a hub id)")
    if not facts.has_config:
        raise ConfigError(f"model folder {folder} has no config.json: is it a Hugging Face model folder?")
    if not facts.has_tokenizer and not _engine_sets(engine_args, TOKENIZER_FLAGS):
        raise ConfigError(
            f"model folder {folder} has no tokenizer files (one of {', '.join(TOKENIZER_FILES)}); add them, "
            'or give "--tokenizer", "<folder>" in engine_config.json'
        )
    if facts.config is not None and not _engine_sets(engine_args, ("max_model_len",)):
        _check_context_length(facts.config, folder / "config.json", settings)


def _check_context_length(config: dict[str, Any], path: object, settings: Settings) -> None:
    """max_model_len above config.json's max_position_embeddings, where no RoPE scaling makes it uncertain
    (an engine_config.json value is vLLM's to check)."""
    if settings.max_model_len is None:
        return
    limit = config.get("max_position_embeddings")
    certain = isinstance(limit, (int, float)) and not isinstance(limit, bool) and float(limit).is_integer()
    if not certain or _scaled_rope(config):
        return
    limit = int(limit)
    if settings.max_model_len > limit:
        raise ConfigError(
            f"runtime parameter 'max_model_len' is {settings.max_model_len} but the model allows at most "
            f"{limit} (max_position_embeddings in {path}); lower it or leave it unset"
        )


def _scaled_rope(config: dict) -> bool:
    """RoPE scaling (yarn, dynamic, longrope ...) lets vLLM derive a longer context than the config says."""
    for key in ("rope_scaling", "rope_parameters"):
        rope = config.get(key)
        if isinstance(rope, dict) and (rope.get("rope_type") or rope.get("type") or "default") != "default":
            return True
    return False


def check_hub(model: str, hub_mirror: str | None, environ: Mapping[str, str], token: str | None) -> None:
    """A hub model: the hub (or hub_mirror_url's / HF_ENDPOINT's mirror) must answer for it, within 15 s."""
    import requests

    if environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        raise ConfigError(
            f"model '{model}' comes from the Hugging Face hub, but HF_HUB_OFFLINE is set: fetch it with "
            "artifact_uri or load_model, or set 'model' to a mounted folder"
        )
    endpoint = hub_mirror or environ.get("HF_ENDPOINT") or HUB_ENDPOINT
    url = f"{endpoint.rstrip('/')}/api/models/{model}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        answer = requests.get(url, headers=headers, timeout=HUB_TIMEOUT_S, allow_redirects=True)
    except requests.RequestException as exc:
        raise ConfigError(
            f"model '{model}' comes from the Hugging Face hub ({endpoint}), which cannot be reached "
            f"({type(exc).__name__}): air-gapped? fetch the model with artifact_uri or load_model, or set "
            "'model' to a mounted folder"
        ) from None
    if answer.status_code in (401, 403, 404):
        access = "the token has no access to it" if token else "it is gated: set the HuggingFaceToken credential"
        raise ConfigError(
            f"runtime parameter 'model': the hub ({endpoint}) answered HTTP {answer.status_code} for '{model}': "
            f"the id is wrong, or {access}"
        )


def check(facts: ModelFacts, settings: Settings, engine_args: list[str], environ: Mapping[str, str]) -> None:
    """Everything knowable about the model before vLLM starts; ConfigError on the first problem."""
    if facts.source.local:
        check_local_folder(facts, settings, engine_args)
    else:
        check_hub(facts.source.ref, settings.hub_mirror_url, environ, settings.hf_token or environ.get("HF_TOKEN"))
    for warning in lora.check(facts.adapters, facts.tensors, facts.source.name):
        log.warning("%s", warning)
