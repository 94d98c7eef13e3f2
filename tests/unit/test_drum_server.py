"""DRUM's environment: worker defaults that scale with the host, the user's settings kept."""

import os

import pytest

from vllm_dropin import plan, runtime_params
from vllm_dropin.launch import drum_server
from vllm_dropin.launch.vllm_server import VllmEndpoint


@pytest.mark.parametrize(("cpus", "workers"), [(None, 1), (1, 1), (2, 1), (8, 2), (16, 4), (64, 8), (128, 8)])
def test_default_workers(cpus, workers):
    assert drum_server.default_workers(cpus) == workers


@pytest.mark.parametrize("user", [{}, {"MAX_WORKERS": "3"}])
def test_user_worker_count_wins(tmp_path, user):
    vals = runtime_params.parse({"model": "m"})
    env = drum_server.drum_env(plan.build(vals, [], tmp_path), VllmEndpoint("http://x/v1", "k", "m"), user)
    assert env["MAX_WORKERS"] == user.get("MAX_WORKERS", str(drum_server.default_workers(os.cpu_count())))
