"""gs://bucket/prefix through google-cloud-storage (which checks each download's crc32c/md5 itself)."""

from __future__ import annotations

from pathlib import Path

import google.auth.exceptions
import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.oauth2 import service_account

from vllm_dropin.config.settings import Settings
from vllm_dropin.model.artifacts import credentials
from vllm_dropin.model.artifacts.stores import CountingWriter, OnBytes, RemoteFile, relative
from vllm_dropin.model.artifacts.uri import ArtifactUri

TIMEOUT_S = (10, 60)


class GcsStore:
    def __init__(self, uri: ArtifactUri, client: storage.Client, endpoint: str | None) -> None:
        self.uri = uri
        self.client = client
        self.endpoint = endpoint

    def list(self) -> list[RemoteFile]:
        found = []
        for blob in self.client.list_blobs(self.uri.bucket, prefix=self.uri.prefix, timeout=TIMEOUT_S):
            path = relative(blob.name, self.uri.prefix)
            if path is not None:
                found.append(RemoteFile(path, blob.size or 0, f"{blob.generation}:{blob.etag}"))
        return found

    def fetch(self, file: RemoteFile, dest: Path, on_bytes: OnBytes) -> None:
        blob = self.client.bucket(self.uri.bucket).blob(self.uri.prefix + file.path)
        with dest.open("wb") as out:
            blob.download_to_file(CountingWriter(out, on_bytes), timeout=TIMEOUT_S, checksum="crc32c")

    def explain(self, exc: BaseException) -> str | None:
        if isinstance(exc, gexc.NotFound):
            return f"bucket '{self.uri.bucket}' (or a file in it) does not exist"
        if isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
            return f"access denied ({type(exc).__name__}): check artifact_credential and the bucket's IAM"
        if isinstance(exc, google.auth.exceptions.DefaultCredentialsError):
            return "no GCP credentials found: set artifact_credential (a gcp credential)"
        if isinstance(exc, gexc.GoogleAPICallError):
            return f"the store answered {exc.code}"
        if isinstance(exc, requests.RequestException | google.auth.exceptions.TransportError | ConnectionError):
            where = self.endpoint or "Google Cloud Storage"
            return f"cannot read from {where}: {type(exc).__name__} (down, or unreachable?)"
        if type(exc).__name__ == "DataCorruption":
            return (
                "a download did not match the checksum the store gave (corrupted in transit); restart to fetch it again"
            )
        return None


def open_store(uri: ArtifactUri, settings: Settings) -> GcsStore:
    endpoint = settings.artifact_endpoint_url
    info = credentials.gcp_info(settings.artifact_credential)
    options = {"api_endpoint": endpoint} if endpoint else None
    if info is not None:
        creds = service_account.Credentials.from_service_account_info(info)
        client = storage.Client(project=info.get("project_id"), credentials=creds, client_options=options)
    elif endpoint:  # an emulator or private endpoint without a key: anonymous
        client = storage.Client(project="anonymous", credentials=AnonymousCredentials(), client_options=options)
    else:
        client = storage.Client(client_options=options)  # application default credentials
    return GcsStore(uri, client, endpoint)
