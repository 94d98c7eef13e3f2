"""DRUM's environment: worker defaults that scale with the host, the user's settings kept."""

import pytest

from vllm_dropin import plan, runtime_params
from vllm_dropin.contract import VllmEndpoint, WorkerContract
from vllm_dropin.launch import drum_server


@pytest.mark.parametrize(("cpus", "workers"), [(None, 1), (1, 1), (2, 1), (8, 2), (16, 4), (64, 8), (128, 8)])
def test_default_workers(cpus, workers):
    assert drum_server.default_workers(cpus) == workers


@pytest.mark.parametrize(("user", "cpus", "workers"), [({}, 16, "4"), ({}, 4, "1"), ({"MAX_WORKERS": "3"}, 16, "3")])
def test_workers_follow_the_cores_the_plan_counted_and_the_users_count_wins(tmp_path, user, cpus, workers):
    settings = runtime_params.parse({"model": "m"})
    launch = plan.build(settings, [], tmp_path, cpus=cpus)  # prepare() counts the cores it may run on
    env = drum_server.drum_env(launch, VllmEndpoint("http://x/v1", "k", "m"), user)
    assert env["MAX_WORKERS"] == workers


def test_workers_read_back_what_the_supervisor_wrote(tmp_path):
    launch = plan.build(runtime_params.parse({"model": "m", "max_tokens": 7}), [], tmp_path)
    endpoint = VllmEndpoint("http://127.0.0.1:1/v1", "key")
    contract = WorkerContract.from_env(drum_server.drum_env(launch, endpoint, {"TARGET_NAME": "answer"}))
    assert contract == WorkerContract(endpoint, launch.batch, launch.startup_timeout, "answer")
    assert contract.batch.max_tokens == 7
