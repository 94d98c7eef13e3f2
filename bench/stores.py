"""An S3-compatible store on loopback for the benchmarks (moto's server or nanio), a folder
uploaded into it.

The server is itself the limit of a transfer's rate (bench/README.md #8): compare a store-bound
figure only with another taken from the same server. moto reads a whole object for each ranged
GET and serves from one Python process (#47); nanio serves files from disk with several workers.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from demo.running import Service, free_port

KEPT_BYTES = 256 << 20
UPLOADS_AT_ONCE = 8
NANIO_WORKERS = 8
KEYS = {"credentialType": "s3", "awsAccessKeyId": "bench", "awsSecretAccessKey": "bench-secret"}


def moto_argv(work: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """moto's S3 server: one Python process, objects up to KEPT_BYTES in its memory."""
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return argv, {"MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(KEPT_BYTES)}


def nanio_argv(work: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """nanio: objects are files in a folder, served by NANIO_WORKERS uvicorn processes (ranged
    reads seek in the file), so the store is not one Python process's limit."""
    argv = [sys.executable, "-m", "nanio", "serve", "--data-dir", str(work / "nanio-data"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(NANIO_WORKERS)]  # fmt: skip
    keys = {"NANIO_ACCESS_KEY": KEYS["awsAccessKeyId"], "NANIO_SECRET_KEY": KEYS["awsSecretAccessKey"]}
    return argv, keys


SERVERS = {"moto": moto_argv, "nanio": nanio_argv}


@contextlib.contextmanager
def s3_server(work: Path, bucket: str, server: str = "moto") -> Iterator[tuple[str, object]]:
    """An S3-compatible server (SERVERS) with `bucket` made: (its endpoint, a boto3 client)."""
    import boto3

    port = free_port()
    argv, env = SERVERS[server](work, port)
    service = Service(argv, {**os.environ, **env}, work / f"{server}.log", name=server)  # PYTHONPATH finds it
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id=KEYS["awsAccessKeyId"],
                              aws_secret_access_key=KEYS["awsSecretAccessKey"])  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield endpoint, client
    finally:
        service.stop(sweep=True)


def upload(client, folder: Path, bucket: str, prefix: str) -> int:
    """Every file under `folder` to s3://bucket/prefix/..., several at once; the bytes sent."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    keys = [f"{prefix}/{path.relative_to(folder).as_posix()}" for path in files]
    with ThreadPoolExecutor(UPLOADS_AT_ONCE) as pool:
        list(pool.map(lambda path, key: client.upload_file(str(path), bucket, key), files, keys))
    return sum(path.stat().st_size for path in files)
