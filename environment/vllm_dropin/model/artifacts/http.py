"""An http(s) URL of one archive (an internal artifact server, a presigned S3 URL), through requests."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import requests

from vllm_dropin.config.settings import Settings
from vllm_dropin.model.artifacts import credentials
from vllm_dropin.model.artifacts.stores import OnBytes, RemoteFile
from vllm_dropin.model.artifacts.uri import ArtifactUri

TIMEOUT_S = (10, 60)  # connect, between bytes
CHUNK = 1 << 20


def stream_to(session: requests.Session, url: str, dest: Path, on_bytes: OnBytes) -> None:
    """GET `url` into `dest` chunk by chunk; an HTTP error status raises."""
    with session.get(url, stream=True, timeout=TIMEOUT_S) as response:
        response.raise_for_status()
        with dest.open("wb") as out:
            for chunk in response.iter_content(CHUNK):
                out.write(chunk)
                on_bytes(len(chunk))


def explain_http(exc: BaseException, where: str) -> str | None:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        hint = {401: ": check the token", 403: ": check the token or the URL's signature", 404: ": no such file"}
        return f"the server answered HTTP {code}{hint.get(code, '')}"
    if isinstance(exc, requests.RequestException):
        return f"cannot read from {where}: {type(exc).__name__} (down, or unreachable?)"
    return None


class HttpStore:
    """One file: the archive. Its version is the server's ETag (or Last-Modified and size)."""

    def __init__(self, uri: ArtifactUri, token: str | None) -> None:
        self.uri = uri
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def list(self) -> list[RemoteFile]:
        # GET, not HEAD: a presigned URL is signed for GET only. Only the headers are read.
        with self.session.get(self.uri.text, stream=True, timeout=TIMEOUT_S) as response:
            response.raise_for_status()
            headers = response.headers
        size = int(headers.get("Content-Length") or -1)
        version = headers.get("ETag") or f"{headers.get('Last-Modified', '')}:{size}"
        name = urlsplit(self.uri.text).path.rstrip("/").rsplit("/", 1)[-1] or "archive"
        return [RemoteFile(name, size, version)]

    def fetch(self, file: RemoteFile, dest: Path, on_bytes: OnBytes) -> None:
        stream_to(self.session, self.uri.text, dest, on_bytes)

    def explain(self, exc: BaseException) -> str | None:
        return explain_http(exc, urlsplit(self.uri.text).netloc)


def open_store(uri: ArtifactUri, settings: Settings) -> HttpStore:
    return HttpStore(uri, credentials.bearer(settings.artifact_credential))
