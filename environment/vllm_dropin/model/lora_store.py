"""LoRA adapters from `lora_adapters_uri`: a store prefix (or folder, or hub organisation) whose
sub-folders are adapters, each served under its folder's name once a request names it.

An adapter is fetched with artifact_uri's machinery (verified, resumable, into cache_dir, with
artifact_uri's credential and endpoint) and checked as shipped adapters are, against the base
model's tensors. Once in the cache it is never fetched again: vLLM reads it from there whenever
it was dropped from memory.
"""

from __future__ import annotations

from pathlib import Path

from vllm_dropin.config.settings import Settings
from vllm_dropin.errors import ArtifactMissing, ConfigError
from vllm_dropin.model import lora
from vllm_dropin.model.artifacts import fetch as artifacts
from vllm_dropin.model.artifacts.uri import ArtifactUri, child, parse
from vllm_dropin.model.footprint import Tensors
from vllm_dropin.model.lora import Adapter

PARAM = "lora_adapters_uri"


def store_uri(settings: Settings) -> ArtifactUri | None:
    """The adapters' prefix; ConfigError for a URI that cannot hold folders (an archive)."""
    if not settings.lora_adapters_uri:
        return None
    cred = settings.artifact_credential or {}
    uri = parse(settings.lora_adapters_uri, cred.get("credentialType"), PARAM)
    if uri.kind in ("http", "archive") or uri.revision is not None:
        raise ConfigError(
            f"runtime parameter '{PARAM}': {uri.shown} is not a prefix of folders; give s3://bucket/prefix, "
            "gs://bucket/prefix, az://container/prefix, hf://org or a local folder"
        )
    return uri


def is_name(name: str) -> bool:
    """Whether `name` can be an adapter's folder: one path part of letters, digits, '.', '_', '-'."""
    return lora.NAME.fullmatch(name) is not None and ".." not in name


def fetch(uri: ArtifactUri, name: str, settings: Settings, cache_dir: Path) -> Path:
    """The adapter's folder in the cache, fetched unless whole there already. ArtifactMissing:
    the store holds nothing under that name; ArtifactError: the store failed."""
    if not is_name(name):
        raise ArtifactMissing(f"{uri.label}: no adapter of that name")
    return artifacts.fetch_uri(child(uri, name), settings, cache_dir)


def checked(folder: Path, name: str, base: Tensors | None, model_name: str, max_rank: int) -> tuple[Adapter, list[str]]:
    """The adapter and its warnings; AdapterProblem if it cannot load on this model and deployment."""
    adapter = lora.read(folder, name, f"LoRA adapter {name}", max_rank)
    return adapter, lora.check([adapter], base, model_name)


def describe(uri: ArtifactUri, settings: Settings, cache_dir: Path, shown: int = 20) -> str:
    """For `check`: the adapters the store holds now and how many are in the cache (lists; fetches
    nothing). A hub organisation is not listed: its repositories are looked up by name."""
    if uri.kind == "hf":
        return f"{uri.label}: the repositories {uri.bucket}/<name>, each fetched when a request names it"
    if uri.kind == "folder":
        root = Path(uri.text)
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and is_name(p.name)) if root.is_dir() else []
        where = "read in place"
    else:
        folders = {f.path.split("/", 1)[0] for f in artifacts.listed(uri, settings) if "/" in f.path}
        names = sorted(name for name in folders if is_name(name))
        cached = sum(artifacts.in_cache(artifacts.place(child(uri, name), cache_dir)) for name in names)
        where = f"{cached} of them in cache_dir"
    listing = ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
    return (
        f"{uri.label}: {len(names)} adapters ({listing or 'none yet'}), {where}; each is loaded when a request names it"
    )
