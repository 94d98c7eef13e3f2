"""The template's load_model: folder, archive file and http(s) archive, atomic and idempotent."""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from demo.running import REPO
from tests.helpers import serve_folder

MODEL_FILES = {"config.json": b'{"model_type": "llama"}', "tokenizer.json": b"{}", "sub/weights.bin": b"\0" * 1000}


@pytest.fixture
def custom():
    spec = importlib.util.spec_from_file_location("template_custom", REPO / "custom_model_template" / "custom.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def code_dir(tmp_path):
    folder = tmp_path / "code"
    folder.mkdir()
    return folder


@pytest.fixture
def served(tmp_path):
    """A local http server over tmp_path/www; yields (root folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    with serve_folder(root) as base:
        yield root, base


def set_uri(monkeypatch, uri: str) -> None:
    monkeypatch.setenv("MLOPS_RUNTIME_PARAM_artifact_uri", json.dumps({"type": "string", "payload": uri}))


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


def zip_file(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zipped:
        for name, data in MODEL_FILES.items():
            zipped.writestr(name, data)
    return path


def assert_model(code_dir: Path) -> None:
    served_dir = code_dir / "vllm"
    assert {p.relative_to(served_dir).as_posix(): p.read_bytes() for p in served_dir.rglob("*") if p.is_file()} == (
        MODEL_FILES
    )
    assert [p.name for p in code_dir.iterdir()] == ["vllm"]  # no staging folder left behind


def test_folder_is_copied_once(custom, code_dir, tmp_path, monkeypatch):
    source = write_model(tmp_path / "mounted")
    set_uri(monkeypatch, str(source))
    custom.load_model(str(code_dir))
    assert_model(code_dir)
    (source / "config.json").write_text("changed")
    custom.load_model(str(code_dir))  # filled already: not fetched again
    assert_model(code_dir)


@pytest.mark.parametrize("top", ["", "model-1b/"])
def test_archive_file_is_unpacked_from_inside_a_single_top_folder(custom, code_dir, tmp_path, monkeypatch, top):
    set_uri(monkeypatch, str(tar_gz(tmp_path / "model.tar.gz", top)))
    custom.load_model(str(code_dir))
    assert_model(code_dir)


@pytest.mark.parametrize("make", [tar_gz, zip_file])
def test_http_archive_is_downloaded_and_unpacked(custom, code_dir, served, monkeypatch, make):
    root, base = served
    archive = make(root / "model.bin")  # the format is read from the content, not the name
    set_uri(monkeypatch, f"{base}/{archive.name}?X-Amz-Signature=s3cr3t")
    custom.load_model(str(code_dir))
    assert_model(code_dir)


def test_http_error_names_the_url_without_its_secret_query_and_leaves_nothing(custom, code_dir, served, monkeypatch):
    _, base = served
    set_uri(monkeypatch, f"{base}/missing.tar.gz?X-Amz-Signature=s3cr3t")
    with pytest.raises(RuntimeError) as info:
        custom.load_model(str(code_dir))
    assert str(info.value) == f"artifact_uri: {base}/missing.tar.gz?... answered HTTP 404"
    assert list(code_dir.iterdir()) == []


def test_truncated_archive_is_a_clear_error_and_leaves_no_half_model(custom, code_dir, served, monkeypatch):
    root, base = served
    whole = tar_gz(root / "whole.tar.gz").read_bytes()
    (root / "cut.tar.gz").write_bytes(whole[: len(whole) // 2])
    set_uri(monkeypatch, f"{base}/cut.tar.gz")
    with pytest.raises(RuntimeError, match=r"artifact_uri: .*/cut.tar.gz is not a valid archive"):
        custom.load_model(str(code_dir))
    assert list(code_dir.iterdir()) == []


def test_archive_members_cannot_escape_the_model_folder(custom, code_dir, tmp_path, monkeypatch):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    set_uri(monkeypatch, str(archive))
    with pytest.raises(RuntimeError, match="is not a valid archive"):
        custom.load_model(str(code_dir))
    assert not list(tmp_path.rglob("escaped.txt"))
    assert list(code_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("uri", "error"),
    [
        ("/no/such/model", "artifact_uri: /no/such/model does not exist"),
        ("s3://bucket/model.tar.gz", "artifact_uri: unsupported scheme 's3://'"),
    ],
)
def test_bad_locations_are_one_line_errors(custom, code_dir, monkeypatch, uri, error):
    set_uri(monkeypatch, uri)
    with pytest.raises((FileNotFoundError, ValueError), match=error):
        custom.load_model(str(code_dir))


def test_unset_parameter_fetches_nothing(custom, code_dir, monkeypatch):
    monkeypatch.delenv("MLOPS_RUNTIME_PARAM_artifact_uri", raising=False)
    assert custom.load_model(str(code_dir)) is None
    assert list(code_dir.iterdir()) == []
