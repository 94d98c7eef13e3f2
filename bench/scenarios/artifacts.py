"""python -m bench.scenarios.artifacts: artifact_uri download throughput against boto3's transfer manager alone.

Both read the same multi-file model from moto's S3 server on loopback (a real HTTP S3 API; on
this host the server, not the client, is the limit, so the ratio is what counts): ours is
`artifacts.fetch` (listing, parallel files, staging, record, rename); boto3's is one
`s3transfer.TransferManager` downloading every file at once with the same per-file config.
Runs are interleaved; medians. Then the restart with a warm cache (listing only).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from boto3.s3.transfer import TransferManager

from tests import store_servers
from vllm_dropin.config import runtime_params
from vllm_dropin.model.artifacts import fetch as artifacts
from vllm_dropin.model.artifacts.s3 import PER_FILE

KEYS = {"credentialType": "s3", "awsAccessKeyId": "bench", "awsSecretAccessKey": "bench-secret"}


def _boto3_alone(client, keys: list[str], out: Path) -> float:
    out.mkdir(parents=True)
    started = time.perf_counter()
    with TransferManager(client, PER_FILE) as manager:
        futures = [manager.download("models", key, str(out / key.rsplit("/", 1)[-1])) for key in keys]
        for future in futures:
            future.result()
    return time.perf_counter() - started


def _ours(params: dict, cache: Path) -> float:
    settings = runtime_params.parse({**params, "cache_dir": str(cache)})
    started = time.perf_counter()
    artifacts.fetch(settings, cache)
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scenarios.artifacts", description=__doc__)
    p.add_argument("--gb", type=float, default=2.0, help="model size in GB (default: 2)")
    p.add_argument("--files", type=int, default=4, help="weight shards (default: 4) plus small config files")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-artifacts-"))
    store = store_servers.moto_s3(root, open_keys=KEYS)
    try:
        client = store_servers.s3_client(store)
        client.create_bucket(Bucket="models")
        shard = int(args.gb * 1e9 / args.files)
        keys = []
        for i in range(args.files):
            path = root / "shard"
            path.write_bytes(os.urandom(shard))
            keys.append(f"m/model-{i:05d}.safetensors")
            client.upload_file(str(path), "models", keys[-1])
        for name in ("config.json", "tokenizer.json", "generation_config.json"):
            client.put_object(Bucket="models", Key=f"m/{name}", Body=b"{}")
            keys.append(f"m/{name}")
        total = shard * args.files
        params = {"artifact_uri": "s3://models/m", "artifact_endpoint_url": store.endpoint, "artifact_credential": KEYS}
        alone, ours = [], []
        for i in range(args.repeats):
            alone.append(_boto3_alone(client, keys, root / f"alone-{i}"))
            shutil.rmtree(root / f"alone-{i}")
            ours.append(_ours(params, root / f"cache-{i}"))
            if i < args.repeats - 1:
                shutil.rmtree(root / f"cache-{i}")
        warm = statistics.median(_ours(params, root / f"cache-{args.repeats - 1}") for _ in range(args.repeats))
        a, o = statistics.median(alone), statistics.median(ours)
        print(f"model: {args.files} shards + 3 small files, {total / 1e9:.2f} GB, moto S3 server on loopback")
        print(
            f"boto3 TransferManager alone: {a:6.2f} s  {total / a / 1e6:7.1f} MB/s  runs {[round(x, 2) for x in alone]}"
        )
        print(
            f"artifact_uri fetch (ours):   {o:6.2f} s  {total / o / 1e6:7.1f} MB/s  runs {[round(x, 2) for x in ours]}"
        )
        print(f"ours / boto3 alone (throughput): {a / o:.2f}")
        print(f"restart with a warm cache: {warm:.3f} s (listing only, 0 bytes fetched)")
    finally:
        store.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
