"""s3://bucket/prefix on AWS or any S3-compatible endpoint, through boto3's transfer manager."""

from __future__ import annotations

from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from vllm_dropin.config.settings import Settings
from vllm_dropin.model.artifacts import credentials
from vllm_dropin.model.artifacts.stores import OnBytes, RemoteFile, relative
from vllm_dropin.model.artifacts.uri import ArtifactUri

# Parallel ranges per file (the transfer runs several files at once as well); chunks large enough
# that a multi-GB shard needs few requests.
PER_FILE = TransferConfig(max_concurrency=8, multipart_threshold=64 << 20, multipart_chunksize=64 << 20)
CLIENT = Config(
    max_pool_connections=64, connect_timeout=10, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"}
)
DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "403"}


class S3Store:
    def __init__(self, uri: ArtifactUri, endpoint: str | None, keys: dict[str, str]) -> None:
        self.uri = uri
        self.endpoint = endpoint
        self.client = boto3.session.Session(**keys).client("s3", endpoint_url=endpoint, config=CLIENT)

    def list(self) -> list[RemoteFile]:
        found = []
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.uri.bucket, Prefix=self.uri.prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                path = relative(obj["Key"], self.uri.prefix)
                if path is not None:
                    found.append(RemoteFile(path, obj["Size"], obj["ETag"].strip('"')))
        return found

    def fetch(self, file: RemoteFile, dest: Path, on_bytes: OnBytes) -> None:
        self.client.download_file(
            self.uri.bucket, self.uri.prefix + file.path, str(dest), Config=PER_FILE, Callback=on_bytes
        )

    def explain(self, exc: BaseException) -> str | None:
        if isinstance(exc, NoCredentialsError):
            return "no credentials found: set artifact_credential (an s3 credential)"
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchBucket":
                return f"bucket '{self.uri.bucket}' does not exist"
            if code in DENIED:
                return f"access denied ({code}): check artifact_credential and the bucket's policy"
            if code in ("NoSuchKey", "404"):
                return "a file vanished from the store during the download (changed while fetching?)"
            return f"the store answered {code or 'an error'}"
        if isinstance(exc, BotoCoreError):
            where = self.endpoint or "S3"
            return f"cannot read from {where}: {type(exc).__name__} (down, or unreachable from here?)"
        return None


def open_store(uri: ArtifactUri, settings: Settings) -> S3Store:
    return S3Store(uri, settings.artifact_endpoint_url, credentials.s3_keys(settings.artifact_credential))
