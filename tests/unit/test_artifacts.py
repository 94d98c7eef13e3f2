"""artifact_uri without object stores: parsing, local folders and archives, http(s) archives,
manifests, progress lines, credential shapes (stores: tests/integration/test_artifact_stores.py)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.helpers import serve_folder
from vllm_dropin.config import runtime_params
from vllm_dropin.errors import ArtifactError, ConfigError
from vllm_dropin.model.artifacts import checksums, credentials, progress
from vllm_dropin.model.artifacts import fetch as artifacts
from vllm_dropin.model.artifacts.uri import parse

MODEL_FILES = {"config.json": b'{"model_type": "llama"}', "tokenizer.json": b"{}", "sub/weights.bin": b"\0" * 1000}


def fetch(uri: str, cache: Path, **params) -> Path:
    return artifacts.fetch(runtime_params.parse({"artifact_uri": uri, "cache_dir": str(cache), **params}), cache)


def write_model(folder: Path) -> Path:
    for name, data in MODEL_FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def tar_gz(path: Path, top: str = "") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in MODEL_FILES.items():
            info = tarfile.TarInfo(f"{top}{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("text", "cred", "kind", "bucket", "prefix"),
    [
        ("s3://models/llama/8b/", None, "s3", "models", "llama/8b/"),
        ("s3://models", None, "s3", "models", ""),
        ("gs://b/p", None, "gs", "b", "p/"),
        ("az://container/llama", None, "azure", "container", "llama/"),
        ("https://acct.blob.core.windows.net/models/llama?sv=1&sig=SECRET", None, "azure", "models", "llama/"),
        ("http://127.0.0.1:10000/devstoreaccount1/models/llama", "azure", "azure", "models", "llama/"),
        ("https://files.corp/model.tar.gz?X-Amz-Signature=SECRET", None, "http", "", ""),
        ("hf://org/name@v1.2", None, "hf", "org/name", ""),
        ("/mnt/models/llama", None, "folder", "", ""),
        ("/mnt/models/llama.tar.gz", None, "archive", "", ""),
    ],
)
def test_uri_kinds(text, cred, kind, bucket, prefix):
    uri = parse(text, cred)
    assert (uri.kind, uri.bucket, uri.prefix) == (kind, bucket, prefix)
    assert "SECRET" not in uri.shown


def test_names_and_revision():
    assert parse("hf://org/name@v1.2").revision == "v1.2"
    assert parse("s3://models/llama-3-8b/").name == "llama-3-8b"
    assert parse("https://files.corp/releases/llama.tar.gz?sig=x").name == "llama"
    assert parse("s3://models").name == "models"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("ftp://host/model", "unsupported scheme 'ftp://'"),
        ("s3:///prefix", "names no bucket"),
        ("s3://bucket/../etc", "has '.' or '..' in its path"),
        ("hf://a/b/c", r"is not hf://org/name\[@revision\]"),
    ],
)
def test_bad_uris_are_one_line(text, error):
    with pytest.raises(ConfigError, match=rf"runtime parameter 'artifact_uri': .*{error}"):
        parse(text)


def test_a_folder_is_served_in_place(tmp_path):
    model = write_model(tmp_path / "model")
    assert fetch(str(model), tmp_path / "cache") == model
    assert not (tmp_path / "cache").exists()  # nothing copied


def test_a_missing_folder_names_the_uri(tmp_path):
    with pytest.raises(ArtifactError, match=r"^artifact_uri /no/such/model: no such folder$"):
        fetch("/no/such/model", tmp_path)


@pytest.mark.parametrize("top", ["", "llama/"])
def test_local_archives_are_unpacked_into_the_cache_once(tmp_path, top, caplog):
    caplog.set_level("INFO", logger="vllm_dropin")
    archive = tar_gz(tmp_path / "llama.tar.gz", top)
    dest = fetch(str(archive), tmp_path / "cache")
    assert files_of(dest) == MODEL_FILES and dest.name == "llama"
    caplog.clear()
    assert fetch(str(archive), tmp_path / "cache") == dest
    assert "nothing to fetch" in caplog.text


def test_a_zip_archive(tmp_path):
    path = tmp_path / "m.zip"
    with zipfile.ZipFile(path, "w") as zipped:
        for name, data in MODEL_FILES.items():
            zipped.writestr(name, data)
    assert files_of(fetch(str(path), tmp_path / "cache")) == MODEL_FILES


def test_an_archive_that_is_not_one(tmp_path):
    (tmp_path / "m.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(ArtifactError, match=r"m.tar.gz: not a tar or zip archive$"):
        fetch(str(tmp_path / "m.tar.gz"), tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("artifacts/*/m"))


def test_an_http_archive_is_fetched_once_and_its_query_never_shown(tmp_path, caplog):
    caplog.set_level("INFO", logger="vllm_dropin")
    www = tmp_path / "www"
    www.mkdir()
    tar_gz(www / "model.tar.gz", "model/")
    with serve_folder(www) as base:
        uri = f"{base}/model.tar.gz?X-Amz-Signature=QuerySecret123"
        dest = fetch(uri, tmp_path / "cache")
        assert files_of(dest) == MODEL_FILES
        caplog.clear()
        assert fetch(uri, tmp_path / "cache") == dest
        assert "nothing to fetch" in caplog.text
        with pytest.raises(ArtifactError) as info:
            fetch(f"{base}/missing.tar.gz?sig=QuerySecret123", tmp_path / "cache")
    assert str(info.value) == f"artifact_uri {base}/missing.tar.gz?...: the server answered HTTP 404: no such file"
    assert "QuerySecret123" not in caplog.text


def test_manifest_lines():
    text = f"{'a' * 64}  config.json\n{'B' * 64} *sub/weights.bin\n\n"
    assert checksums.parse_manifest(text, "s3://m") == {"config.json": "a" * 64, "sub/weights.bin": "b" * 64}
    with pytest.raises(ArtifactError, match="SHA256SUMS line 2 is not '<sha256>  <path>'"):
        checksums.parse_manifest(f"{'a' * 64}  x\nnot a line\n", "s3://m")


def test_progress_lines_hold_counts_only():
    assert progress.describe(3_200_000_000, 15_000_000_000, 8.0) == "3.2 of 15.0 GB (21 %), 400 MB/s, ETA 30 s"
    assert progress.describe(0, 10_000_000, 0.0) == "0.00 of 0.01 GB (0 %), 0 MB/s"


@pytest.mark.parametrize(
    ("cred", "store", "error"),
    [
        ({"credentialType": "s3", "awsAccessKeyId": "id"}, "s3", "'s3' credential needs awsAccessKeyId and awsSecret"),
        ({"credentialType": "gcp", "gcpKey": "{not json"}, "gs", "'gcp' credential needs gcpKey"),
        ({"credentialType": "azure"}, "azure", "'azure' credential needs azureConnectionString"),
    ],
)  # fmt: skip
def test_credential_shapes_name_the_missing_field(cred, store, error):
    read = {"s3": credentials.s3_keys, "gs": credentials.gcp_info, "azure": credentials.azure_connection_string}
    with pytest.raises(ConfigError, match=error):
        read[store](cred)
