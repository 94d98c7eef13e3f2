"""What `artifact_uri` names, parsed without touching the network."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from vllm_dropin.errors import ConfigError

Kind = Literal["folder", "archive", "http", "s3", "gs", "azure", "hf"]
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".zip")
AZURE_HOST = ".blob.core.windows.net"
PARAM = "artifact_uri"


@dataclass(frozen=True)
class ArtifactUri:
    kind: Kind
    text: str  # as given (may carry a SAS or presigned query: never shown)
    bucket: str = ""  # bucket, container or hub repo id
    prefix: str = ""  # key prefix inside it ("" or ending in "/")
    revision: str | None = None  # hub revision
    param: str = PARAM  # the runtime parameter it came from, as errors name it

    @property
    def shown(self) -> str:
        """The URI as logs and errors may show it: no query, no user info."""
        return shown(self.text)

    @property
    def label(self) -> str:
        """The URI as errors name it: its parameter and the URI as shown."""
        return f"{self.param} {self.shown}"

    @property
    def remote(self) -> bool:
        return self.kind != "folder" and self.kind != "archive"

    @property
    def key(self) -> str:
        """The cache key: the URI without its query (a presigned URL's query changes, its object does not)."""
        return hashlib.sha256(self.shown.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        """The model's name as vLLM serves it by default: the last part of the path, minus an archive suffix."""
        path = f"{self.bucket}/{self.prefix}" if self.bucket else urlsplit(self.text).path
        last = path.rstrip("/").rsplit("/", 1)[-1]
        for suffix in ARCHIVE_SUFFIXES:
            last = last.removesuffix(suffix)
        return last or "model"


def shown(text: str) -> str:
    parts = urlsplit(text)
    if not parts.scheme or not parts.netloc:
        return text
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}" + ("?..." if parts.query else "")


def _prefix(path: str, param: str) -> str:
    path = path.strip("/")
    if any(part in ("..", ".") for part in path.split("/")):
        raise ConfigError(f"runtime parameter '{param}': '{shown(path)}' has '.' or '..' in its path")
    return f"{path}/" if path else ""


def _bucket_and_prefix(text: str, what: str, param: str) -> tuple[str, str]:
    parts = urlsplit(text)
    if not parts.netloc:
        raise ConfigError(
            f"runtime parameter '{param}': {shown(text)} names no {what}; write {parts.scheme}://{what}/prefix"
        )
    return parts.netloc, _prefix(parts.path, param)


def _azure(text: str, param: str) -> ArtifactUri:
    """https://ACCOUNT.blob.core.windows.net/container/prefix (a SAS query is kept) or az://container/prefix."""
    parts = urlsplit(text)
    if parts.scheme == "az":
        container, prefix = _bucket_and_prefix(text, "container", param)
        return ArtifactUri("azure", text, container, prefix, param=param)
    path = parts.path.lstrip("/")
    if "." not in (parts.hostname or "") or (parts.hostname or "").replace(".", "").isdigit():
        path = path.partition("/")[2]  # an emulator's or IP address's URL: the account comes first
    container, _, rest = path.partition("/")
    if not container:
        raise ConfigError(f"runtime parameter '{param}': {shown(text)} names no container")
    return ArtifactUri("azure", text, container, _prefix(rest, param), param=param)


def _hub(text: str, param: str) -> ArtifactUri:
    repo, _, revision = text.removeprefix("hf://").partition("@")
    if not re.fullmatch(r"[\w.\-]+(/[\w.\-]+)?", repo):
        raise ConfigError(f"runtime parameter '{param}': {text} is not hf://org/name[@revision]")
    return ArtifactUri("hf", text, repo, "", revision or None, param=param)


def parse(text: str, credential_type: str | None = None, param: str = PARAM) -> ArtifactUri:
    """The URI's kind and parts; ConfigError naming `param` and what is wrong. An http(s) URL is an
    Azure container when its host is Azure's or the credential is an Azure one (Azurite, Azure Stack)."""
    text = text.strip()
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme in ("s3", "gs"):
        bucket, prefix = _bucket_and_prefix(text, "bucket", param)
        return ArtifactUri(scheme, text, bucket, prefix, param=param)  # type: ignore[arg-type]
    if scheme == "az" or (
        scheme in ("http", "https")
        and ((urlsplit(text).hostname or "").endswith(AZURE_HOST) or credential_type == "azure")
    ):
        return _azure(text, param)
    if scheme == "hf":
        return _hub(text, param)
    if scheme in ("http", "https"):
        return ArtifactUri("http", text, param=param)
    if scheme in ("", "file"):
        path = Path(urlsplit(text).path if scheme == "file" else text).expanduser()
        kind: Kind = "archive" if path.is_file() or path.name.endswith(ARCHIVE_SUFFIXES) else "folder"
        return ArtifactUri(kind, str(path), param=param)
    raise ConfigError(
        f"runtime parameter '{param}': unsupported scheme '{scheme}://'; give s3://, gs://, az://, hf://, "
        "an http(s) URL of an archive, or a local folder or archive"
    )


def child(uri: ArtifactUri, name: str) -> ArtifactUri:
    """The folder `name` (one path part) under a store prefix, a local folder or a hub organisation
    (its repositories are the folders), a signed query kept. Pure."""
    assert "/" not in name and name not in (".", "..") and uri.kind not in ("http", "archive"), (uri.kind, name)
    if uri.kind == "folder":
        return replace(uri, text=str(Path(uri.text) / name))
    if uri.kind == "hf":
        return replace(uri, text=f"hf://{uri.bucket}/{name}", bucket=f"{uri.bucket}/{name}", revision=None)
    parts = urlsplit(uri.text)
    text = urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{name}"))
    return replace(uri, text=text, prefix=f"{uri.prefix}{name}/")
