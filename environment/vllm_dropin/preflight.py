"""Checks of the model before vLLM starts, for what is knowable without vLLM (milliseconds).

vLLM finds these too, but after seconds to minutes and as the last line of a traceback (a hub
id offline: after a minute of retries). Each check here answers in one line naming the
parameter or file; anything uncertain is left to vLLM.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

from . import adapters, vllm_flags
from .errors import ConfigError
from .plan import LaunchPlan
from .settings import Settings

HUB_ENDPOINT = "https://huggingface.co"
HUB_TIMEOUT_S = (5.0, 10.0)  # connect, read: a refused or unroutable hub answers within 15 s
# Files a Hugging Face tokenizer loads from (one of them is enough).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model", "tekken.json")
TOKENIZER_FLAGS = ("tokenizer", "skip_tokenizer_init")
log = logging.getLogger("vllm_dropin")


def _source(plan: LaunchPlan) -> str:
    if plan.model.artifact is not None:
        return f"artifact_uri {plan.model.artifact}"
    return "runtime parameter 'model'" if "runtime parameter" in plan.model.origin else plan.model.origin


def _engine_sets(plan: LaunchPlan, dests: tuple[str, ...]) -> bool:
    return any(vllm_flags.long_flag(plan.engine_args, dest) is not None for dest in dests)


def check_local_folder(plan: LaunchPlan, settings: Settings) -> None:
    """A local model folder: it exists, has config.json and tokenizer files, and fits max_model_len."""
    folder = Path(plan.model.ref).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"{_source(plan)}: no such folder {folder} (a local path; mount it, or give a hub id)")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"model folder {folder} has no config.json: is it a Hugging Face model folder?")
    has_tokenizer = any((folder / name).is_file() for name in TOKENIZER_FILES) or any(folder.glob("*.tiktoken"))
    if not has_tokenizer and not _engine_sets(plan, TOKENIZER_FLAGS):
        raise ConfigError(
            f"model folder {folder} has no tokenizer files (one of {', '.join(TOKENIZER_FILES)}); add them, "
            'or give "--tokenizer", "<folder>" in engine_config.json'
        )
    _check_context_length(folder, plan, settings)


def _check_context_length(folder: Path, plan: LaunchPlan, settings: Settings) -> None:
    """max_model_len above config.json's max_position_embeddings, where no RoPE scaling makes it uncertain."""
    if settings.max_model_len is None or _engine_sets(plan, ("max_model_len",)):
        return  # unset, or engine_config.json overrides it (vLLM checks that value itself)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # vLLM names an unreadable config itself
    config = config.get("text_config", config) if isinstance(config, dict) else {}
    limit = config.get("max_position_embeddings")
    certain = isinstance(limit, (int, float)) and not isinstance(limit, bool) and float(limit).is_integer()
    if not certain or _scaled_rope(config):
        return
    limit = int(limit)
    if settings.max_model_len > limit:
        raise ConfigError(
            f"runtime parameter 'max_model_len' is {settings.max_model_len} but the model allows at most "
            f"{limit} (max_position_embeddings in {folder / 'config.json'}); lower it or leave it unset"
        )


def _scaled_rope(config: dict) -> bool:
    """RoPE scaling (yarn, dynamic, longrope ...) lets vLLM derive a longer context than the config says."""
    for key in ("rope_scaling", "rope_parameters"):
        rope = config.get(key)
        if isinstance(rope, dict) and (rope.get("rope_type") or rope.get("type") or "default") != "default":
            return True
    return False


def check_hub(plan: LaunchPlan, environ: Mapping[str, str], token: str | None) -> None:
    """A hub model: the hub (or hub_mirror_url's / HF_ENDPOINT's mirror) must answer for it, within 15 s."""
    import requests

    model = plan.model.ref
    if environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        raise ConfigError(
            f"model '{model}' comes from the Hugging Face hub, but HF_HUB_OFFLINE is set: fetch it with "
            "artifact_uri or load_model, or set 'model' to a mounted folder"
        )
    endpoint = plan.hub_mirror or environ.get("HF_ENDPOINT") or HUB_ENDPOINT
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


def check(plan: LaunchPlan, settings: Settings, environ: Mapping[str, str]) -> None:
    """Everything knowable about the plan's model before vLLM starts; ConfigError on the first problem."""
    if plan.model.local:
        check_local_folder(plan, settings)
    else:
        check_hub(plan, environ, plan.hf_token or environ.get("HF_TOKEN"))
    folder = Path(plan.model.ref) if plan.model.local else None
    for warning in adapters.check(plan.adapters, folder, plan.model.name):
        log.warning("%s", warning)
