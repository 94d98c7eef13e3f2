"""Azure Blob containers through azure-storage-blob: az://container/prefix with a connection string,
or a container URL (https://ACCOUNT.blob.core.windows.net/container/prefix, a SAS query allowed)."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import ContainerClient

from vllm_dropin.config.settings import Settings
from vllm_dropin.errors import ConfigError
from vllm_dropin.model.artifacts import credentials
from vllm_dropin.model.artifacts.stores import CountingWriter, OnBytes, RemoteFile, relative
from vllm_dropin.model.artifacts.uri import ArtifactUri

logging.getLogger("azure").setLevel(logging.WARNING)  # its HTTP policy logs every request at INFO
CLIENT = {"retry_total": 3, "connection_timeout": 10, "read_timeout": 60}
PER_FILE_CONCURRENCY = 8


class AzureStore:
    def __init__(self, uri: ArtifactUri, container: ContainerClient) -> None:
        self.uri = uri
        self.container = container

    def list(self) -> list[RemoteFile]:
        found = []
        for blob in self.container.list_blobs(name_starts_with=self.uri.prefix or None):
            path = relative(blob.name, self.uri.prefix)
            if path is None:
                continue
            md5 = blob.content_settings.content_md5
            checksum = ("md5", bytes(md5).hex()) if md5 else None
            found.append(RemoteFile(path, blob.size, str(blob.etag).strip('"'), checksum))
        return found

    def fetch(self, file: RemoteFile, dest: Path, on_bytes: OnBytes) -> None:
        stream = self.container.download_blob(self.uri.prefix + file.path, max_concurrency=PER_FILE_CONCURRENCY)
        with dest.open("wb") as out:
            stream.readinto(CountingWriter(out, on_bytes))

    def explain(self, exc: BaseException) -> str | None:
        if isinstance(exc, ResourceNotFoundError):
            return f"container '{self.uri.bucket}' (or a file in it) does not exist"
        if isinstance(exc, ClientAuthenticationError) or (
            isinstance(exc, HttpResponseError) and exc.status_code == 403
        ):
            return "access denied: check artifact_credential (azureConnectionString) or the URL's SAS"
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            return f"cannot read from {self.container.primary_hostname}: {type(exc).__name__} (down, or unreachable?)"
        if isinstance(exc, AzureError):
            return f"the store answered {type(exc).__name__}"
        return None


def _container_url(uri: ArtifactUri) -> str:
    """The container's URL (with the SAS query, if any) of an https URI: everything before the prefix."""
    parts = urlsplit(uri.text)
    path = parts.path.lstrip("/")
    container_path = path[: len(path) - len(uri.prefix.rstrip("/"))].rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}/{container_path}{query}"


def open_store(uri: ArtifactUri, settings: Settings) -> AzureStore:
    """A connection string names the account and its endpoint; without one the URL (and its SAS) must."""
    conn = credentials.azure_connection_string(settings.artifact_credential)
    if conn is not None:
        return AzureStore(uri, ContainerClient.from_connection_string(conn, uri.bucket, **CLIENT))
    if urlsplit(uri.text).scheme == "az":
        raise ConfigError(
            "runtime parameter 'artifact_credential': az:// needs an azure credential (azureConnectionString); "
            "or give the container's https URL with a SAS"
        )
    return AzureStore(uri, ContainerClient.from_container_url(_container_url(uri), **CLIENT))
