"""`artifact_uri` to a model folder in the cache: list, fetch what is missing, rename into place.

Layout under `<cache_dir>/artifacts/<key of the URI>/`: `<name>/` the model as vLLM reads it (only
ever whole), `.staging/` the folder being filled, `.download/` an archive arriving, `state.json`
what is whole. A folder given as the URI is served in place; nothing is copied.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from vllm_dropin.config.settings import Settings
from vllm_dropin.errors import ArtifactError, ArtifactMissing, ConfigError
from vllm_dropin.events import EventReporter
from vllm_dropin.model.artifacts import cache_lock, checksums, credentials, streaming
from vllm_dropin.model.artifacts.archives import unpack
from vllm_dropin.model.artifacts.progress import Progress
from vllm_dropin.model.artifacts.stores import RemoteFile, Store, open_store
from vllm_dropin.model.artifacts.transfer import CacheRecord, Transfer, prune, signature
from vllm_dropin.model.artifacts.uri import ArtifactUri, parse

log = logging.getLogger(__name__)
STATE = "state.json"
STAGING = ".staging"
DOWNLOAD = ".download"


def uri_of(settings: Settings) -> ArtifactUri | None:
    if not settings.artifact_uri:
        return None
    cred = settings.artifact_credential or {}
    return parse(settings.artifact_uri, cred.get("credentialType"))


def in_cache(folder: Path) -> bool:
    """Whether a fetched model is at `folder`, read locally: a fetch renames the folder into place
    only once every file is whole (whether the store holds a newer version, its listing tells)."""
    return folder.is_dir()


def place(uri: ArtifactUri, cache_dir: Path, without_weights: bool = False) -> Path:
    """Where the model will be: the folder itself, or its place in the cache (its files but the
    weights apart from the whole model's, so neither prunes the other's). Pure."""
    if uri.kind == "folder":
        return Path(uri.text)
    return cache_dir / "artifacts" / (f"{uri.key}-no-weights" if without_weights else uri.key) / uri.name


class _LocalArchive:
    """A local archive file as a one-file store (its version: size and modification time)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def list(self) -> list[RemoteFile]:
        stat = self.path.stat()
        return [RemoteFile(self.path.name, stat.st_size, str(stat.st_mtime_ns))]


def _store(uri: ArtifactUri, settings: Settings) -> Store | _LocalArchive:
    """The store a remote URI names (its credential's type checked first), or the local archive."""
    if not uri.remote:
        return _LocalArchive(Path(uri.text))
    credentials.check_fits(settings.artifact_credential, uri.kind, uri.shown)
    return open_store(uri, settings)


def _size(files: list[RemoteFile]) -> int:
    """Bytes the files hold (a size the store does not know counts 0)."""
    return sum(max(f.size, 0) for f in files)


def _listing(uri: ArtifactUri, store: Store | _LocalArchive) -> list[RemoteFile]:
    try:
        listing = store.list()
    except ArtifactError:
        raise
    except FileNotFoundError:
        raise ArtifactMissing(f"{uri.label}: no such file or folder") from None
    except Exception as exc:
        why = (store.explain(exc) if not isinstance(store, _LocalArchive) else None) or type(exc).__name__
        raise ArtifactError(f"{uri.label}: {why}") from exc
    if not listing:
        raise ArtifactMissing(f"{uri.label}: holds no files (wrong bucket, container or prefix?)")
    return listing


def _without_weights(uri: ArtifactUri, listing: list[RemoteFile]) -> list[RemoteFile]:
    """The files the environment fetches when vLLM streams the weights, which must be safetensors."""
    if not any(f.path.endswith(".safetensors") for f in listing):
        raise ConfigError(
            f"runtime parameter '{streaming.PARAM}': {uri.label} holds no .safetensors files, the only "
            "weights the streamer reads; unset stream_weights to fetch the model instead"
        )
    return [f for f in listing if not streaming.is_weights(f.path)]


def _manifest(store: Store, uri: ArtifactUri, listing: list[RemoteFile], folder: Path) -> dict[str, str]:
    """The SHA256SUMS the store holds beside the model, fetched first; {} if it has none."""
    entry = next((f for f in listing if f.path == checksums.MANIFEST), None)
    if entry is None:
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{checksums.MANIFEST}.fetching"
    try:
        store.fetch(entry, path, lambda _n: None)
        text = path.read_text()
    except Exception as exc:
        raise ArtifactError(f"{uri.label}: {store.explain(exc) or type(exc).__name__}") from exc
    finally:
        path.unlink(missing_ok=True)
    sums = checksums.parse_manifest(text, uri.label)
    missing = sorted(set(sums) - {f.path for f in listing})
    if missing:
        raise ArtifactError(f"{uri.label}: {checksums.MANIFEST} names {missing[0]}, which the store lacks")
    return sums


def _fill(store: Store, uri: ArtifactUri, listing: list[RemoteFile], folder: Path, record: CacheRecord,
          reporter: EventReporter | None, stopping: Callable[[], bool]) -> None:  # fmt: skip
    """Fetch into `folder` what the record does not hold whole, with progress."""
    todo = [f for f in listing if not record.whole(f, folder)]
    if not todo:
        prune(folder, listing)
        return
    manifest = _manifest(store, uri, listing, folder)
    total = _size(todo)
    log.info("fetching %s: %d of %d files, %.2f GB", uri.shown, len(todo), len(listing), total / 1e9)
    progress = Progress(uri.shown, total, reporter)
    progress.start()
    try:
        Transfer(store, uri.label, folder, record, progress, manifest, stopping).run(todo, listing)
    finally:
        progress.stop()
    log.info("fetched %s: %s", uri.shown, progress.line())


def fetch(settings: Settings, cache_dir: Path, reporter: EventReporter | None = None,
          stopping: Callable[[], bool] = lambda: False) -> Path:  # fmt: skip
    """The model's folder, fetched (or found whole in the cache), without its weights when vLLM
    streams them (stream_weights); ArtifactError naming the URI and why."""
    uri = uri_of(settings)
    if uri is None:
        raise ConfigError("runtime parameter 'artifact_uri' is not set")
    return fetch_uri(uri, settings, cache_dir, reporter, stopping, streaming.streams(settings, uri))


def fetch_uri(uri: ArtifactUri, settings: Settings, cache_dir: Path, reporter: EventReporter | None = None,
              stopping: Callable[[], bool] = lambda: False, without_weights: bool = False) -> Path:  # fmt: skip
    """`fetch` of any URI, with artifact_uri's credential and endpoint; ArtifactMissing where the
    store holds nothing there."""
    dest = place(uri, cache_dir, without_weights)
    if uri.kind == "folder":
        if not dest.is_dir():
            raise ArtifactMissing(f"{uri.label}: no such folder")
        return dest
    store = _store(uri, settings)
    root = dest.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"runtime parameter 'cache_dir': cannot create {root} ({exc.strerror})") from None
    with cache_lock.held(root, f"fetching {uri.shown}", stopping):
        record = CacheRecord.load(root / STATE)
        listing = _listing(uri, store)
        if without_weights:
            listing = _without_weights(uri, listing)
        if record.holds(listing, dest):
            log.info("%s is whole in the cache (%s): nothing to fetch", uri.shown, dest)
            return dest
        record.complete = None
        if uri.kind in ("http", "archive"):
            _from_archive(store, uri, listing, dest, record, reporter, stopping)
        else:
            staging = root / STAGING
            if dest.is_dir():  # an older version: update it in place of a fresh start
                shutil.rmtree(staging, ignore_errors=True)
                os.rename(dest, staging)
            _fill(store, uri, listing, staging, record, reporter, stopping)  # type: ignore[arg-type]
            os.rename(staging, dest)
        record.complete = signature(listing)
        record.save()
    if reporter is not None:
        reporter.report("Model fetched", f"{uri.shown}: {_size(listing) / 1e9:.2f} GB")
    return dest


def _from_archive(
    store: Store | _LocalArchive,
    uri: ArtifactUri,
    listing: list[RemoteFile],
    dest: Path,
    record: CacheRecord,
    reporter: EventReporter | None,
    stopping: Callable[[], bool],
) -> None:
    """Download the archive (unless local or already whole), unpack it aside, move its model folder in."""
    root = dest.parent
    if isinstance(store, _LocalArchive):
        archive = store.path
    else:
        _fill(store, uri, listing, root / DOWNLOAD, record, reporter, stopping)
        archive = root / DOWNLOAD / listing[0].path
    staging = root / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    model = unpack(archive, staging, uri.label)
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(model, dest)
    shutil.rmtree(staging, ignore_errors=True)
    if not isinstance(store, _LocalArchive):
        shutil.rmtree(root / DOWNLOAD, ignore_errors=True)  # the unpacked folder is the cache now
        record.files.clear()


def listed(uri: ArtifactUri, settings: Settings) -> list[RemoteFile]:
    """Every file the store holds under a remote URI; ArtifactError naming the URI and why."""
    return _listing(uri, _store(uri, settings))


def describe(settings: Settings, cache_dir: Path) -> str:
    """For `check`: what the URI holds and how much of it the cache already has (lists; fetches nothing)."""
    uri = uri_of(settings)
    assert uri is not None
    streamed = streaming.streams(settings, uri)
    dest = place(uri, cache_dir, streamed)
    if uri.kind == "folder":
        return f"artifact_uri: {uri.shown}, a folder served in place ({'present' if dest.is_dir() else 'MISSING'})"
    listing = _listing(uri, _store(uri, settings))
    weights = f"; vLLM streams the weights ({_size(listing) / 1e9:.2f} GB) from the store" if streamed else ""
    listing = _without_weights(uri, listing) if streamed else listing
    cached = (
        "whole in the cache" if CacheRecord.load(dest.parent / STATE).holds(listing, dest) else "fetched before launch"
    )
    files = f"{len(listing)} files, {_size(listing) / 1e9:.2f} GB"
    return f"artifact_uri: {uri.shown}: {files}, {cached} into {dest}{weights}"
