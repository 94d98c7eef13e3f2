"""Unpack a model archive safely (tar with the 'data' filter, zip without absolute paths or '..')."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

from vllm_dropin.errors import ArtifactError


def unpack(archive: Path, dest: Path, where: str) -> Path:
    """Unpack into `dest`; returns the model's folder: the single top-level folder if there is one."""
    dest.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tar:
                tar.extractall(dest, filter="data")  # refuses links and paths that leave dest
        else:
            raise ArtifactError(f"{where}: not a tar or zip archive")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ArtifactError(f"{where}: not a valid archive ({type(exc).__name__})") from None
    entries = list(dest.iterdir())
    if not entries:
        raise ArtifactError(f"{where}: the archive holds no files")
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest
