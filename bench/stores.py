"""An S3-compatible store on loopback for the benchmarks: moto's server, a folder uploaded into it.

moto is itself the limit of a transfer's rate (bench/README.md #8): compare a store-bound figure
only with another taken from the same server. It reads a whole object for each ranged GET, so a
model meant for ranged reads is stored in shards no larger than one range (bench/gpu/run.sh SHARD).
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
KEYS = {"credentialType": "s3", "awsAccessKeyId": "bench", "awsSecretAccessKey": "bench-secret"}


@contextlib.contextmanager
def moto_s3(work: Path, bucket: str) -> Iterator[tuple[str, object]]:
    """moto's S3 server with `bucket` made: (its endpoint, a boto3 client); stopped after."""
    import boto3

    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    # Objects up to KEPT_BYTES stay in moto's memory instead of its temporary files on disk.
    env = {**os.environ, "MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(KEPT_BYTES)}  # PYTHONPATH finds moto
    service = Service(argv, env, work / "moto.log", name="moto")
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
