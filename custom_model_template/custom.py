"""Custom model hook for the vLLM drop-in environment: fetch the model without a model hub.

The environment calls `load_model(code_dir)` once per container, before vLLM starts. The
runtime parameter `artifact_uri` says where the model is:
  - a folder (a mounted volume, say): copied;
  - an archive file (.tar, .tar.gz, .tgz, .tar.xz, .zip): unpacked;
  - an http(s) URL of such an archive (an internal artifact store, a presigned S3 URL): downloaded,
    then unpacked.
The result goes to `${CODE_DIR}/vllm/`, which vLLM then serves with hub access off. Everything
lands in a temporary folder beside it first and is renamed into place, so a crash never leaves
half a model; a second call finds the folder filled and does nothing. An archive holding a single
top-level folder is served from inside that folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import requests
from datarobot_drum import RuntimeParameters

MODEL_DIR = "vllm"
PARAM = "artifact_uri"
CHUNK = 1 << 20
TIMEOUT_S = (30, 300)  # connect, between bytes

log = logging.getLogger(__name__)


def _artifact_uri() -> str | None:
    if not RuntimeParameters.has(PARAM):
        return None
    return RuntimeParameters.get(PARAM) or None


def _shown(uri: str) -> str:
    """The URI without query or credentials: presigned URLs carry their secret in the query."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return uri
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}" + ("?..." if parts.query else "")


def _download(url: str, into: Path) -> Path:
    archive = into / "download"
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT_S) as response:
            response.raise_for_status()
            with archive.open("wb") as out:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)
    except requests.HTTPError as exc:
        raise RuntimeError(f"{PARAM}: {_shown(url)} answered HTTP {exc.response.status_code}") from None
    except requests.RequestException as exc:
        raise RuntimeError(f"{PARAM}: cannot download {_shown(url)}: {type(exc).__name__}") from None
    return archive


def _unpack(archive: Path, dest: Path, shown: str) -> None:
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(dest)  # zipfile drops absolute paths and '..'
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tar:
                tar.extractall(dest, filter="data")  # refuses links and paths that leave dest
        else:
            raise RuntimeError(f"{PARAM}: {shown} is neither a folder nor a tar or zip archive")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise RuntimeError(f"{PARAM}: {shown} is not a valid archive: {exc}") from None


def _model_root(folder: Path) -> Path:
    entries = list(folder.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else folder


def _fetch(uri: str, staging: Path) -> Path:
    """Put the model under staging/content; returns the folder to serve."""
    content = staging / "content"
    scheme = urlsplit(uri).scheme
    if scheme in ("http", "https"):
        content.mkdir()
        _unpack(_download(uri, staging), content, _shown(uri))
    elif scheme in ("", "file"):
        path = Path(urlsplit(uri).path if scheme == "file" else uri)
        if path.is_dir():
            shutil.copytree(path, content)
        elif path.is_file():
            content.mkdir()
            _unpack(path, content, uri)
        else:
            raise FileNotFoundError(f"{PARAM}: {uri} does not exist")
    else:
        raise ValueError(f"{PARAM}: unsupported scheme '{scheme}://'; give a folder, an archive file or an http(s) URL")
    root = _model_root(content)
    if not any(root.iterdir()):
        raise RuntimeError(f"{PARAM}: {_shown(uri)} holds no files")
    return root


def load_model(code_dir: str) -> None:
    target = Path(code_dir) / MODEL_DIR
    uri = _artifact_uri()
    if uri is None:
        return None  # nothing to fetch: the model comes from engine_config.json or `model`
    if target.is_dir() and any(target.iterdir()):
        log.info("%s is already filled; not fetching %s again", target, _shown(uri))
        return None
    staging = Path(tempfile.mkdtemp(prefix=".vllm-fetch-", dir=code_dir))
    try:
        root = _fetch(uri, staging)
        if target.is_dir():
            target.rmdir()  # an empty placeholder folder
        os.rename(root, target)
        log.info("fetched %s into %s", _shown(uri), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return None
