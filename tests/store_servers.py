"""Real object-store servers for the artifact tests: moto's S3 server, Azurite, gcp-storage-emulator.

Each runs as its own process group on a free loopback port, is polled until it accepts
connections, and can be killed mid-test (a store that goes away during a download).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from demo.running import REPO, Service, free_port

AZURITE = REPO / "tests" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # public dev key
)
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def wait_port(service: Service, port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited:\n{service.log()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{service.name} did not listen on {port} within {timeout_s} s")


@dataclass
class Store:
    service: Service
    endpoint: str
    credential: dict  # the artifact_credential payload that works

    def kill(self) -> None:
        """SIGKILL, as a crashed or unplugged store: no goodbye to open connections."""
        self.service.signal(signal.SIGKILL)
        self.service.stop(timeout_s=0, sweep=True)


def start(argv: list[str], port: int, root: Path, name: str, env: dict | None = None) -> Service:
    service = Service(argv, {**os.environ, **(env or {})}, root / f"{name}.log", name=name)
    wait_port(service, port)
    return service


def moto_s3(root: Path, port: int | None = None, open_keys: dict | None = None) -> Store:
    """moto in server mode. With authentication on (the default) the first 4 requests (IAM) make a
    user and its keys, and every later request must be signed with them; `open_keys`: no
    authentication, and this credential (any keys work)."""
    import boto3

    port = port or free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    auth = {} if open_keys else {"INITIAL_NO_AUTH_ACTION_COUNT": "4"}
    service = start(argv, port, root, f"moto-{port}", auth)
    endpoint = f"http://127.0.0.1:{port}"
    if open_keys:
        return Store(service, endpoint, open_keys)
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup",
                       aws_secret_access_key="setup")  # fmt: skip
    iam.create_user(UserName="models")
    policy = iam.create_policy(PolicyName="all", PolicyDocument=json.dumps(ALLOW_ALL))["Policy"]["Arn"]
    iam.attach_user_policy(UserName="models", PolicyArn=policy)
    key = iam.create_access_key(UserName="models")["AccessKey"]
    cred = {"credentialType": "s3", "awsAccessKeyId": key["AccessKeyId"], "awsSecretAccessKey": key["SecretAccessKey"]}
    return Store(service, endpoint, cred)


def s3_client(store: Store):
    import boto3

    cred = store.credential
    return boto3.client(
        "s3",
        endpoint_url=store.endpoint,
        region_name="us-east-1",
        aws_access_key_id=cred["awsAccessKeyId"],
        aws_secret_access_key=cred["awsSecretAccessKey"],
    )


def azurite(root: Path) -> Store:
    port = free_port()
    argv = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(root / "azurite"),
            "--skipApiVersionCheck", "--silent"]  # fmt: skip
    service = start(argv, port, root, "azurite")
    conn = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")  # fmt: skip
    return Store(
        service, f"http://127.0.0.1:{port}/devstoreaccount1", {"credentialType": "azure", "azureConnectionString": conn}
    )


def gcs_emulator(root: Path) -> Store:
    port = free_port()
    argv = [str(Path(sys.executable).parent / "gcp-storage-emulator"), "start", "--host", "127.0.0.1",
            "--port", str(port), "--in-memory"]  # fmt: skip
    service = start(argv, port, root, "gcs")
    return Store(service, f"http://127.0.0.1:{port}", {})


def upload_folder(put, folder: Path, prefix: str) -> list[str]:
    """put(key, path) for every file of `folder` under `prefix`; the relative paths."""
    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    for path in paths:
        put(f"{prefix}{path}", folder / path)
    return paths
