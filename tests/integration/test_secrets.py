"""Secrets never reach logs, argv, error bodies or `check`; vLLM gets only what it needs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import psutil
import pytest
import requests

from demo.running import REPO
from tests.integration.conftest import ARTIFACT_SECRET, HF_TOKEN, PLATFORM_TOKEN, csv_of, post_csv

pytestmark = pytest.mark.integration
SECRETS = (HF_TOKEN, PLATFORM_TOKEN, ARTIFACT_SECRET)


def processes(env) -> list[psutil.Process]:
    root = psutil.Process(env.proc.pid)
    return [root, *root.children(recursive=True)]


def vllm_process(env) -> psutil.Process:
    return next(p for p in processes(env) if "vllm_dropin.launch.vllm_entry" in " ".join(p.cmdline()))


def hits(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def test_no_secret_in_any_argv(main_env):
    argvs = [" ".join(p.cmdline()) for p in processes(main_env)]
    assert len(argvs) >= 4
    assert [a for a in argvs if hits(a)] == []


def test_vllm_env_has_no_platform_token_and_no_hf_token_for_a_local_model(main_env):
    env = vllm_process(main_env).environ()
    assert hits("\n".join(f"{k}={v}" for k, v in env.items())) == []
    assert not [k for k in env if k.startswith(("MLOPS_RUNTIME_PARAM_", "DATAROBOT_"))]
    assert env["HF_HUB_OFFLINE"] == "1"


def test_no_child_gets_a_credential_parameter(main_env):
    """Only the supervisor (which fetches the artifact) holds the store's keys; DRUM and vLLM do not."""
    children = processes(main_env)[1:]
    assert len(children) >= 3
    for process in children:
        env = process.environ()
        assert hits("\n".join(f"{k}={v}" for k, v in env.items())) == [], process.cmdline()
        assert (
            "MLOPS_RUNTIME_PARAM_artifact_credential" not in env and "MLOPS_RUNTIME_PARAM_HuggingFaceToken" not in env
        )


def test_vllm_port_refuses_requests_without_the_per_launch_key(main_env):
    port = re.search(r"--port (\d+)", main_env.log()).group(1)
    url = f"http://127.0.0.1:{port}/v1/models"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer guessed"}, timeout=10).status_code == 401


def test_trust_remote_code_is_off_unless_asked(main_env):
    command = next(line for line in main_env.log().splitlines() if "vLLM command:" in line)
    assert "--trust-remote-code" not in command


def test_error_bodies_and_logs_hold_no_secret(main_env):
    bodies = [
        post_csv(main_env, csv_of(["hi"], column="question")).text,
        post_csv(main_env, 'promptText\n""\n').text,
        requests.post(f"{main_env.url}/v1/chat/completions", data=b"{", timeout=60).text,
        requests.post(
            f"{main_env.url}/v1/chat/completions",
            json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
            timeout=60,
        ).text,
    ]
    assert [b for b in bodies if hits(b)] == []
    log = main_env.log()
    assert "deployment event" in log  # events were attempted with the platform token...
    assert hits(log) == []  # ...and neither token was ever logged


def test_check_output_masks_secrets(main_env):
    env = {**os.environ, "PYTHONPATH": str(REPO / "environment")}
    env.update({k: v for k, v in main_env.extra_env.items() if k.startswith(("MLOPS_", "DATAROBOT_"))})
    done = subprocess.run(
        [sys.executable, "-m", "vllm_dropin", "check", "--code-dir", str(main_env.code_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: ready to launch" in done.stdout and "vLLM command:" in done.stdout
    assert hits(done.stdout + done.stderr) == []
