"""hf://org/name[@revision] from a Hugging Face hub mirror (hub_mirror_url), listed with huggingface_hub.

The listing carries each LFS file's sha256, so weights are verified against the hub's own record.
"""

from __future__ import annotations

from pathlib import Path

import requests
from huggingface_hub import HfApi, hf_hub_url
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.hf_api import RepoFile

from vllm_dropin.config.settings import Settings
from vllm_dropin.errors import ArtifactMissing
from vllm_dropin.model.artifacts import credentials
from vllm_dropin.model.artifacts.http import explain_http, stream_to
from vllm_dropin.model.artifacts.stores import OnBytes, RemoteFile
from vllm_dropin.model.artifacts.uri import ArtifactUri

PUBLIC_HUB = "https://huggingface.co"


class HubStore:
    def __init__(self, uri: ArtifactUri, endpoint: str, token: str | None) -> None:
        self.uri = uri
        self.endpoint = endpoint.rstrip("/")
        self.api = HfApi(endpoint=self.endpoint, token=token or False)
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def list(self) -> list[RemoteFile]:
        found = []
        try:
            for entry in self.api.list_repo_tree(self.uri.bucket, recursive=True, revision=self.uri.revision):
                if isinstance(entry, RepoFile):
                    sha256 = entry.lfs["sha256"] if entry.lfs else None
                    checksum = ("sha256", sha256) if sha256 else None
                    found.append(RemoteFile(entry.path, entry.size, entry.blob_id, checksum))
        except RepositoryNotFoundError as exc:
            raise ArtifactMissing(f"{self.uri.label}: {self.explain(exc)}") from None
        return found

    def fetch(self, file: RemoteFile, dest: Path, on_bytes: OnBytes) -> None:
        url = hf_hub_url(self.uri.bucket, file.path, revision=self.uri.revision, endpoint=self.endpoint)
        stream_to(self.session, url, dest, on_bytes)

    def explain(self, exc: BaseException) -> str | None:
        if isinstance(exc, RepositoryNotFoundError):
            return f"no repository '{self.uri.bucket}' on {self.endpoint} (or the token may not see it)"
        if isinstance(exc, RevisionNotFoundError):
            return f"no revision '{self.uri.revision}' of {self.uri.bucket}"
        if isinstance(exc, GatedRepoError):
            return f"{self.uri.bucket} is gated: set HuggingFaceToken (or artifact_credential) to a token with access"
        if isinstance(exc, HfHubHTTPError):
            return f"the hub answered {type(exc).__name__}"
        return explain_http(exc, self.endpoint)


def open_store(uri: ArtifactUri, settings: Settings) -> HubStore:
    token = credentials.bearer(settings.artifact_credential) or settings.hf_token
    return HubStore(uri, settings.hub_mirror_url or PUBLIC_HUB, token)
