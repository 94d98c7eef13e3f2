"""Fetch a listing into a folder: files in parallel, each written aside and moved in when whole and
verified, a record of what is whole kept beside it so that a restart fetches only what is missing."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from vllm_dropin.errors import ArtifactError
from vllm_dropin.model.artifacts import checksums
from vllm_dropin.model.artifacts.progress import Progress
from vllm_dropin.model.artifacts.stores import RemoteFile, Store

FILES_AT_ONCE = 8
PARTS = ".parts"  # inside the folder being filled: files still arriving


class Cancelled(Exception):
    """Raised from a download's byte callback to stop it (another file failed, or SIGTERM)."""


@dataclass
class CacheRecord:
    """state.json beside the cached model: what is whole (path -> [size, version]) and whether the
    folder is the complete copy of a listing (its signature)."""

    path: Path
    files: dict[str, list] = field(default_factory=dict)
    complete: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, path: Path) -> CacheRecord:
        try:
            data = json.loads(path.read_text())
            return cls(path, dict(data["files"]), data.get("complete"))
        except (OSError, ValueError, KeyError, TypeError):
            return cls(path)  # none yet, or unreadable: fetch as if nothing were cached

    def whole(self, file: RemoteFile, folder: Path) -> bool:
        on_disk = folder / file.path
        return (
            self.files.get(file.path) == [file.size, file.version]
            and on_disk.is_file()
            and (file.size < 0 or on_disk.stat().st_size == file.size)
        )

    def holds(self, listing: list[RemoteFile], folder: Path) -> bool:
        """`folder` is the whole copy of exactly this listing."""
        return self.complete == signature(listing) and folder.is_dir()

    def record(self, file: RemoteFile) -> None:
        with self._lock:
            self.files[file.path] = [file.size, file.version]
            self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"files": self.files, "complete": self.complete}))
        os.replace(tmp, self.path)


def signature(listing: list[RemoteFile]) -> str:
    return json.dumps(sorted((f.path, f.size, f.version) for f in listing))


def prune(folder: Path, listing: list[RemoteFile]) -> None:
    """Remove what the listing does not have (an older version's files, a crash's parts)."""
    keep = {f.path for f in listing}
    shutil.rmtree(folder / PARTS, ignore_errors=True)
    for path in sorted(folder.rglob("*"), reverse=True):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and relative not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


class Transfer:
    """One fetch of `listing` from `store` into `folder`; `run()` raises ArtifactError on any failure."""

    def __init__(self, store: Store, where: str, folder: Path, record: CacheRecord, progress: Progress,
                 manifest: dict[str, str], stopping: Callable[[], bool]) -> None:  # fmt: skip
        self.store = store
        self.where = where  # the URI as errors name it
        self.folder = folder
        self.record = record
        self.progress = progress
        self.manifest = manifest
        self._stopping = stopping
        self._cancel = threading.Event()

    def _on_bytes(self, count: int) -> None:
        if self._cancel.is_set() or self._stopping():
            raise Cancelled
        self.progress.add(count)

    def _one(self, file: RemoteFile) -> None:
        part = self.folder / PARTS / file.path
        part.parent.mkdir(parents=True, exist_ok=True)
        self.store.fetch(file, part, self._on_bytes)
        size = part.stat().st_size
        if file.size >= 0 and size != file.size:
            raise ArtifactError(f"{self.where}: {file.path} arrived with {size} of {file.size} bytes")
        wanted = checksums.expected(file, self.manifest)
        if wanted is not None and checksums.digest(part, wanted[0]) != wanted[1].lower():
            part.unlink()
            raise ArtifactError(
                f"{self.where}: {file.path} does not match its {wanted[0]} "
                f"({'in ' + checksums.MANIFEST if file.path in self.manifest else 'from the store'}): "
                "corrupt in the store or changed during the download"
            )
        dest = self.folder / file.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, dest)
        self.record.record(file)

    def _explain(self, exc: BaseException) -> ArtifactError:
        if isinstance(exc, ArtifactError):
            return exc
        why = self.store.explain(exc) or f"{type(exc).__name__} while downloading"
        return ArtifactError(f"{self.where}: {why}")

    def run(self, todo: list[RemoteFile], listing: list[RemoteFile]) -> None:
        """Fetch `todo` (largest first), FILES_AT_ONCE at a time; stop all at the first failure."""
        self.folder.mkdir(parents=True, exist_ok=True)
        prune(self.folder, listing)
        with ThreadPoolExecutor(FILES_AT_ONCE, thread_name_prefix="artifact") as pool:
            futures = [pool.submit(self._one, f) for f in sorted(todo, key=lambda f: -f.size)]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f.exception() for f in done if f.exception() is not None), None)
            if failed is not None:
                self._cancel.set()
                for future in futures:
                    future.cancel()
        shutil.rmtree(self.folder / PARTS, ignore_errors=True)  # nothing half-written stays
        if failed is not None:
            if isinstance(failed, Cancelled) and self._stopping():
                raise ArtifactError(f"{self.where}: download stopped on request")
            raise self._explain(failed) from failed
