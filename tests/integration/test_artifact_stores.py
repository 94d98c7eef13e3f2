"""artifact_uri against real store servers the tests start: moto's S3 server (authentication on),
Azurite (Azure Blob) and gcp-storage-emulator (GCS). Multi-file models, wrong keys, missing
buckets and prefixes, a store killed mid-download, a restart that resumes, checksums."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from demo.running import REPO, runtime_param_env
from tests import store_servers
from tests.helpers import make_model_folder
from vllm_dropin.config import runtime_params
from vllm_dropin.errors import ArtifactError, ConfigError
from vllm_dropin.model.artifacts import cache_lock
from vllm_dropin.model.artifacts import fetch as artifacts
from vllm_dropin.model.artifacts.fetch import STAGING, STATE
from vllm_dropin.model.artifacts.transfer import PARTS

pytestmark = pytest.mark.integration
BIG = 256 << 20  # large enough that a download is still running when the store is killed


def fetch(params: dict, cache: Path) -> Path:
    return artifacts.fetch(runtime_params.parse({**params, "cache_dir": str(cache)}), cache)


def tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


class Events:
    """Records the platform events of a fetch (the reporter interface the supervisor passes)."""

    def __init__(self) -> None:
        self.titles: list[str] = []

    def report(self, title: str, message: str = "") -> None:
        self.titles.append(title)


@pytest.fixture(scope="module")
def s3(tmp_path_factory, tiny_model):
    store = store_servers.moto_s3(tmp_path_factory.mktemp("s3"))
    client = store_servers.s3_client(store)
    client.create_bucket(Bucket="models")
    store_servers.upload_folder(lambda key, path: client.upload_file(str(path), "models", key), tiny_model, "tiny/")
    store.client = client
    yield store
    store.kill()


def s3_params(store, uri: str = "s3://models/tiny", **cred) -> dict:
    return {
        "artifact_uri": uri,
        "artifact_endpoint_url": store.endpoint,
        "artifact_credential": {**store.credential, **cred},
    }


def test_s3_model_arrives_whole_and_a_restart_fetches_nothing(s3, tiny_model, tmp_path, caplog):
    caplog.set_level("INFO", logger="vllm_dropin")
    events = Events()
    cache = tmp_path / "cache"
    settings = runtime_params.parse({**s3_params(s3), "cache_dir": str(cache)})
    dest = artifacts.fetch(settings, cache, events)
    assert tree(dest) == tree(tiny_model) and dest.name == "tiny"
    assert "Model fetched" in events.titles
    assert not (dest.parent / STAGING).exists()
    mtimes = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}
    caplog.clear()
    assert fetch(s3_params(s3), cache) == dest
    assert "nothing to fetch" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == mtimes


REPLICA_FETCH = """
import json, logging, sys
from pathlib import Path
from vllm_dropin.config import runtime_params
from vllm_dropin.model.artifacts import fetch
logging.basicConfig(level=logging.INFO, stream=sys.stdout, force=True)
params, cache = json.loads(sys.stdin.read()), Path(sys.argv[1])
print("DEST", fetch.fetch(runtime_params.parse({**params, "cache_dir": str(cache)}), cache), flush=True)
"""


def test_replicas_sharing_a_cache_dir_fetch_once_the_others_wait_and_find_it_whole(s3, tiny_model, tmp_path):
    cache = tmp_path / "shared-cache"
    params = s3_params(s3)
    root = artifacts.place(artifacts.uri_of(runtime_params.parse(params)), cache).parent
    root.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(REPO / "environment")}
    logs = [tmp_path / f"replica-{i}.log" for i in range(2)]
    with cache_lock.held(root, "the test"):  # both replicas arrive while the cache is held
        replicas = []
        for log in logs:
            with log.open("w") as out:
                replica = subprocess.Popen([sys.executable, "-c", REPLICA_FETCH, str(cache)], stdin=subprocess.PIPE,
                                           stdout=out, stderr=subprocess.STDOUT, text=True, env=env)  # fmt: skip
            replica.stdin.write(json.dumps(params))
            replica.stdin.close()
            replicas.append(replica)
        deadline = time.monotonic() + 60
        while not all("waiting for it" in log.read_text() for log in logs):
            assert time.monotonic() < deadline and all(r.poll() is None for r in replicas), [
                log.read_text() for log in logs
            ]
            time.sleep(0.1)
    assert [replica.wait(120) for replica in replicas] == [0, 0], [log.read_text() for log in logs]
    texts = [log.read_text() for log in logs]
    dest = artifacts.place(artifacts.uri_of(runtime_params.parse(params)), cache)
    assert all(f"DEST {dest}" in text for text in texts)
    assert sorted("nothing to fetch" in text for text in texts) == [False, True], texts  # one fetched
    assert tree(dest) == tree(tiny_model)


def test_a_wait_for_the_cache_ends_on_a_stop_request(tmp_path):
    folder = tmp_path / "key"
    with (
        cache_lock.held(folder, "the first"),
        pytest.raises(ArtifactError, match="fetching x: stopped on request while another process held"),
        cache_lock.held(folder, "fetching x", stopping=lambda: True),
    ):
        pass
    with cache_lock.held(folder, "again"):  # released by both
        pass


def test_s3_a_changed_file_is_the_only_one_fetched_again_and_a_removed_one_goes(s3, tiny_model, tmp_path, caplog):
    caplog.set_level("INFO", logger="vllm_dropin")
    client = s3.client
    for path in tiny_model.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), "models", f"copy/{path.relative_to(tiny_model).as_posix()}")
    params = s3_params(s3, "s3://models/copy")
    dest = fetch(params, tmp_path)
    client.put_object(Bucket="models", Key="copy/generation_config.json", Body=b'{"changed": true}')
    client.delete_object(Bucket="models", Key="copy/chat_template.jinja")
    caplog.clear()
    assert fetch(params, tmp_path) == dest
    files = len(tree(tiny_model)) - 1
    assert f"1 of {files} files" in caplog.text
    assert (dest / "generation_config.json").read_bytes() == b'{"changed": true}'
    assert not (dest / "chat_template.jinja").exists()


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"awsSecretAccessKey": "wrong-secret-key-0123456789"}, "access denied (SignatureDoesNotMatch): check"),
        ({"uri": "s3://no-such-bucket/tiny"}, "bucket 'no-such-bucket' does not exist"),
        ({"uri": "s3://models/no/such/prefix"}, "holds no files (wrong bucket, container or prefix?)"),
        ({"endpoint": "http://127.0.0.1:9"}, "cannot read from http://127.0.0.1:9: EndpointConnectionError"),
    ],
)  # fmt: skip
def test_s3_failures_are_one_line_naming_the_uri_and_the_cause_never_a_key(s3, tmp_path, change, line):
    uri = change.pop("uri", "s3://models/tiny")
    endpoint = change.pop("endpoint", s3.endpoint)
    params = {**s3_params(s3, uri, **change), "artifact_endpoint_url": endpoint}
    with pytest.raises(ArtifactError) as info:
        fetch(params, tmp_path)
    message = str(info.value)
    assert message.startswith(f"artifact_uri {uri}: ") and line in message, message
    assert "\n" not in message
    secrets = [params["artifact_credential"]["awsSecretAccessKey"], s3.credential["awsAccessKeyId"]]
    assert not [s for s in secrets if s in message]
    assert not list(tmp_path.glob("artifacts/*/tiny"))  # no model folder, whole or not


def test_a_credential_of_another_store_is_refused_before_any_request(s3, tmp_path):
    params = {**s3_params(s3), "artifact_credential": {"credentialType": "azure", "azureConnectionString": "x"}}
    with pytest.raises(
        ConfigError, match="'artifact_credential' is a 'azure' credential; s3://models/tiny needs a 's3' one"
    ):
        fetch(params, tmp_path)


def _parts(cache: Path) -> list[Path]:
    return [p for p in cache.glob(f"artifacts/*/{STAGING}/{PARTS}/**/*") if p.is_file()]


def test_a_store_killed_mid_download_leaves_nothing_half_written_and_a_restart_resumes(tiny_model, tmp_path, caplog):
    caplog.set_level("INFO", logger="vllm_dropin")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(BIG))

    keys = {"credentialType": "s3", "awsAccessKeyId": "id", "awsSecretAccessKey": "ResumeTestSecret0123"}

    def start_store(port=None):
        store = store_servers.moto_s3(tmp_path / f"server-{port}", port, open_keys=keys)
        client = store_servers.s3_client(store)
        client.create_bucket(Bucket="models")
        store_servers.upload_folder(lambda k, p: client.upload_file(str(p), "models", k), tiny_model, "m/")
        client.upload_file(str(big), "models", "m/model-00002.safetensors")
        return store

    (tmp_path / "server-None").mkdir()
    store = start_store()
    port = int(store.endpoint.rsplit(":", 1)[1])
    cache = tmp_path / "cache"
    params = s3_params(store, "s3://models/m")
    failure: list[BaseException] = []
    worker = threading.Thread(target=lambda: _capture(failure, params, cache))
    worker.start()
    deadline = time.monotonic() + 60
    while not _mid_download(cache, "model-00002.safetensors") and time.monotonic() < deadline:
        time.sleep(0.01)
    store.kill()
    worker.join(120)
    assert failure and isinstance(failure[0], ArtifactError), failure
    message = str(failure[0])
    assert message.startswith("artifact_uri s3://models/m: cannot read from") and "ResumeTestSecret" not in message
    assert _parts(cache) == [] and not list(cache.glob("artifacts/*/m"))  # nothing half-written, no model
    files = len(tree(tiny_model)) + 1
    whole = [p.name for p in cache.glob(f"artifacts/*/{STAGING}/*") if p.is_file()]
    assert "model-00002.safetensors" not in whole  # what arrived whole is kept for the restart
    [state] = cache.glob(f"artifacts/*/{STATE}")
    assert set(whole) <= set(json.loads(state.read_text())["files"])  # and the record says so

    (tmp_path / f"server-{port}").mkdir()
    store = start_store(port)  # the store is back (same objects, same versions)
    caplog.clear()
    try:
        dest = fetch(params, cache)
    finally:
        store.kill()
    assert f"{files - len(whole)} of {files} files" in caplog.text  # only what had not arrived whole
    assert (
        hashlib.sha256((dest / "model-00002.safetensors").read_bytes()).digest()
        == hashlib.sha256(big.read_bytes()).digest()
    )


def _mid_download(cache: Path, big: str) -> bool:
    """`big` is arriving and some other file is already whole: a kill now tests both halves of a
    resume (what is whole is kept, what is half-written is not)."""
    arriving = [p for p in _parts(cache) if p.name.startswith(big)]  # boto3 writes BIG.<random> first
    try:
        started = any(p.stat().st_size > 0 for p in arriving)
    except FileNotFoundError:  # it just became whole
        return False
    return started and any(p.is_file() for p in cache.glob(f"artifacts/*/{STAGING}/*"))


def _capture(failure: list, params: dict, cache: Path) -> None:
    try:
        fetch(params, cache)
    except BaseException as exc:  # handed to the test thread
        failure.append(exc)


def test_a_checksum_manifest_is_verified_and_a_mismatch_names_the_file(s3, tiny_model, tmp_path):
    client = s3.client
    sums = tree(tiny_model)
    store_servers.upload_folder(lambda k, p: client.upload_file(str(p), "models", k), tiny_model, "sums/")
    client.put_object(
        Bucket="models", Key="sums/SHA256SUMS", Body="".join(f"{h}  {p}\n" for p, h in sums.items()).encode()
    )
    fetched = tree(fetch(s3_params(s3, "s3://models/sums"), tmp_path / "good"))
    assert {path: fetched[path] for path in sums} == sums
    sums["config.json"] = "0" * 64
    client.put_object(
        Bucket="models", Key="sums/SHA256SUMS", Body="".join(f"{h}  {p}\n" for p, h in sums.items()).encode()
    )
    with pytest.raises(
        ArtifactError, match=r"^artifact_uri s3://models/sums: config.json does not match its sha256 \(in SHA256SUMS\)"
    ):
        fetch(s3_params(s3, "s3://models/sums"), tmp_path / "bad")
    assert not list((tmp_path / "bad").glob("artifacts/*/sums"))


@pytest.fixture(scope="module")
def azure(tmp_path_factory, tiny_model):
    if not store_servers.AZURITE.exists():
        pytest.skip("Azurite is not installed (`make test` installs it with npm)")
    from azure.storage.blob import ContainerClient

    store = store_servers.azurite(tmp_path_factory.mktemp("azurite"))
    container = ContainerClient.from_connection_string(store.credential["azureConnectionString"], "models")
    container.create_container()
    store_servers.upload_folder(lambda k, p: container.upload_blob(k, p.read_bytes()), tiny_model, "tiny/")
    yield store
    store.kill()


def test_azure_container_via_azurite(azure, tiny_model, tmp_path):
    dest = fetch({"artifact_uri": "az://models/tiny", "artifact_credential": azure.credential}, tmp_path)
    assert tree(dest) == tree(tiny_model)
    url = f"{azure.endpoint}/models/tiny"  # the container's URL, with the account's key as the credential
    assert tree(fetch({"artifact_uri": url, "artifact_credential": azure.credential}, tmp_path / "url")) == tree(
        tiny_model
    )


def test_azure_wrong_key_is_access_denied_without_the_key(azure, tmp_path):
    wrong_key = "V3JvbmdLZXlGb3JUaGVUZXN0MDEyMzQ1Njc4OQ=="
    conn = azure.credential["azureConnectionString"].replace(store_servers.AZURITE_KEY, wrong_key)
    with pytest.raises(ArtifactError) as info:
        fetch(
            {
                "artifact_uri": "az://models/tiny",
                "artifact_credential": {"credentialType": "azure", "azureConnectionString": conn},
            },
            tmp_path,
        )
    assert (
        str(info.value)
        == "artifact_uri az://models/tiny: access denied: check artifact_credential (azureConnectionString) "
        "or the URL's SAS"
    )


@pytest.fixture(scope="module")
def gcs(tmp_path_factory, tiny_model):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    store = store_servers.gcs_emulator(tmp_path_factory.mktemp("gcs"))
    client = storage.Client(
        project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": store.endpoint}
    )
    bucket = client.create_bucket("models")
    store_servers.upload_folder(lambda k, p: bucket.blob(k).upload_from_filename(str(p)), tiny_model, "tiny/")
    yield store
    store.kill()


def test_gcs_bucket_via_the_emulator(gcs, tiny_model, tmp_path):
    dest = fetch({"artifact_uri": "gs://models/tiny", "artifact_endpoint_url": gcs.endpoint}, tmp_path)
    assert tree(dest) == tree(tiny_model)


def test_gcs_missing_bucket_is_one_line(gcs, tmp_path):
    with pytest.raises(
        ArtifactError, match=r"^artifact_uri gs://nothere/tiny: bucket 'nothere' \(or a file in it\) does not exist$"
    ):
        fetch({"artifact_uri": "gs://nothere/tiny", "artifact_endpoint_url": gcs.endpoint}, tmp_path)


def test_check_lists_the_store_without_fetching(s3, tiny_model, tmp_path):
    folder = make_model_folder(tmp_path)
    params = {**s3_params(s3), "cache_dir": str(tmp_path / "cache")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_RUNTIME_PARAM_")}
    env |= {**runtime_param_env(params), "PYTHONPATH": str(REPO / "environment")}
    argv = [sys.executable, "-m", "vllm_dropin", "check", "--code-dir", str(folder)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    files = len(tree(tiny_model))
    assert f"artifact_uri: s3://models/tiny: {files} files, " in done.stdout
    assert "fetched before launch" in done.stdout and "OK: ready to launch once artifact_uri is fetched" in done.stdout
    assert not (tmp_path / "cache" / "artifacts").exists()  # listed, not fetched
    assert s3.credential["awsSecretAccessKey"] not in done.stdout + done.stderr
