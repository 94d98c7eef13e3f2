"""What a fetched file must hash to: a SHA256SUMS manifest beside the model, or the store's own record."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from vllm_dropin.errors import ArtifactError
from vllm_dropin.model.artifacts.stores import RemoteFile

MANIFEST = "SHA256SUMS"  # `sha256sum` output: "<64 hex>  <path>" (or " *<path>") per line
_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")


def parse_manifest(text: str, where: str) -> dict[str, str]:
    """path -> sha256 hex; a line that is not `sha256sum` output is named by its number."""
    sums = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _LINE.fullmatch(line.rstrip("\r"))
        if match is None:
            raise ArtifactError(f"{where}: {MANIFEST} line {number} is not '<sha256>  <path>'")
        sums[match.group(2).removeprefix("./")] = match.group(1).lower()
    return sums


def expected(file: RemoteFile, manifest: dict[str, str]) -> tuple[str, str] | None:
    """(algorithm, hex digest) the file must match: the manifest's sha256 first, else the store's."""
    if file.path in manifest:
        return "sha256", manifest[file.path]
    return file.checksum


def digest(path: Path, algorithm: str) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()
