"""What every store offers the transfer: a listing with sizes and versions, and one file fetched.

Each store is a thin layer over its own SDK (boto3's transfer manager, google-cloud-storage,
azure-storage-blob, huggingface_hub, requests), imported only when a URI of its kind is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from vllm_dropin.config.settings import Settings
from vllm_dropin.model.artifacts.uri import ArtifactUri

OnBytes = Callable[[int], None]


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative to the URI's prefix, '/'-separated
    size: int
    version: str  # the store's etag (or blob id): a cached file with the same size and version is reused
    checksum: tuple[str, str] | None = None  # (hashlib algorithm, hex digest) the store vouches for


class Store(Protocol):
    def list(self) -> list[RemoteFile]:
        """Every file under the URI; the store's errors propagate (see `explain`)."""

    def fetch(self, file: RemoteFile, dest: Path, on_bytes: OnBytes) -> None:
        """Write the whole file to `dest`, calling on_bytes with each chunk's size."""

    def explain(self, exc: BaseException) -> str | None:
        """One line for a store error (no secret, no URL query), or None if it is not the store's."""


class CountingWriter:
    """A file object that reports every write, for SDKs that write into a stream."""

    def __init__(self, out: BinaryIO, on_bytes: OnBytes) -> None:
        self._out = out
        self._on_bytes = on_bytes

    def write(self, data: bytes) -> int:
        written = self._out.write(data)
        self._on_bytes(len(data))
        return written

    def flush(self) -> None:
        self._out.flush()

    # Parallel range downloads (Azure) seek to each range's offset before writing it.
    def seekable(self) -> bool:
        return self._out.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._out.seek(offset, whence)

    def tell(self) -> int:
        return self._out.tell()


def relative(key: str, prefix: str) -> str | None:
    """A key's path under the prefix; None for folder markers and keys that would leave the folder."""
    path = key[len(prefix) :]
    if not path or path.endswith("/") or any(part in ("", ".", "..") for part in path.split("/")):
        return None
    return path


MODULES = {"s3": "s3", "gs": "gcs", "azure": "azure", "hf": "hub", "http": "http"}


def open_store(uri: ArtifactUri, settings: Settings) -> Store:
    """The store for a remote URI; its SDK is imported here, not before."""
    module = importlib.import_module(f"{__package__}.{MODULES[uri.kind]}")
    return module.open_store(uri, settings)
