"""Serving across Ray nodes: the plan over the cluster's GPUs, Ray's commands, the worker mode's
route through start_server.sh (a GPU host proved the whole path: bench/README.md)."""

import subprocess
import sys

import pytest

from demo.running import START_SERVER
from tests.helpers import plan_of
from vllm_dropin.config import runtime_params, vllm_flags
from vllm_dropin.errors import ConfigError
from vllm_dropin.launch import ray_cluster, ray_nodes, vllm_server
from vllm_dropin.model.footprint import Weights
from vllm_dropin.planning import parallel, plan
from vllm_dropin.planning.gpus import GpuInventory
from vllm_dropin.planning.parallel import ParallelInputs

SMALL = Weights(1_000_000_000, None, "bfloat16", 32, "safetensors headers")


@pytest.mark.parametrize(
    ("mode", "nodes", "count", "engine", "sizes", "flags"),
    [
        ("auto", 2, 2, [], (1, 2, 1), ["--pipeline-parallel-size", "2"]),  # a GPU per node
        ("auto", 2, 16, [], (8, 2, 1), ["--tensor-parallel-size", "8", "--pipeline-parallel-size", "2"]),
        ("tensor", 2, 2, [], (2, 1, 1), ["--tensor-parallel-size", "2"]),
        ("auto", 2, 2, ["-tp", "2"], (2, 1, 1), []),  # the user's sizes win; Ray's executor still comes
    ],
)
def test_over_ray_nodes_vllm_runs_its_ray_executor_over_every_gpu(mode, nodes, count, engine, sizes, flags):
    inputs = ParallelInputs(mode, GpuInventory(count, 79.6), SMALL, None, nodes)
    planned = parallel.plan(inputs, vllm_flags.parse(engine, "engine_config.json"))
    assert (planned.tensor, planned.pipeline, planned.data) == sizes, planned.reason
    assert planned.flags == [*flags, "--distributed-executor-backend", "ray"]


def test_data_parallel_over_ray_nodes_is_one_clear_line():
    inputs = ParallelInputs("data", GpuInventory(2, 79.6), SMALL, None, 2)
    with pytest.raises(ConfigError, match="'parallelism': 'data' over a Ray cluster is not planned"):
        parallel.plan(inputs, {})


def test_the_cluster_reaches_vllm_through_the_plan(tmp_path):
    settings = runtime_params.parse({"model": str(tmp_path), "ray_nodes": 2})
    built = plan_of(settings, [], tmp_path, GpuInventory(1, 79.6))
    clustered = ray_cluster.with_cluster(built, "127.0.0.1:6379", 2, 2)
    again = plan.LaunchPlan.from_json(clustered.to_json())  # as the vLLM process receives it
    assert again.parallel.nodes == 2 and again.parallel.gpus == GpuInventory(2, 79.6)
    assert again.engine_env["RAY_ADDRESS"] == "127.0.0.1:6379"


def test_ray_commands():
    assert ray_cluster.head_command("py", 6379)[:6] == [
        "py",
        "-m",
        "ray.scripts.scripts",
        "start",
        "--head",
        "--port=6379",
    ]
    assert "--block" in ray_cluster.head_command("py", 6379)
    assert ray_cluster.worker_command("py", "10.0.0.5:6379")[3:6] == ["start", "--address=10.0.0.5:6379", "--block"]


def test_start_server_routes_ray_worker():
    done = subprocess.run(
        ["bash", str(START_SERVER), "ray-worker", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "--head HEAD" in done.stdout


def test_ray_nodes_without_ray_in_vllms_python_is_one_line(tmp_path, monkeypatch):
    bare = tmp_path / "python-without-site-packages"
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    monkeypatch.setenv(vllm_server.VLLM_PYTHON_VAR, str(bare))
    with pytest.raises(ConfigError, match=r"^runtime parameter 'ray_nodes': vLLM's Python \(.*\) has no Ray: build"):
        ray_cluster.require_ray()


@pytest.mark.parametrize(
    ("alive", "needed", "line"),
    [
        ({"a", "b"}, 2, None),
        ({"a"}, 2, "RayNodeError: Ray node 10.0.0.2 left the cluster: 1 of 2 nodes alive"),
        (set(), 2, "RayNodeError: Ray node 10.0.0.1, 10.0.0.2 left the cluster: 0 of 2 nodes alive"),
        (
            {"a", "c"},
            2,
            "RayNodeError: Ray node 10.0.0.2 left the cluster: 2 of 2 nodes alive",
        ),  # vLLM's workers were on b
    ],
)
def test_the_watch_names_the_nodes_that_left(alive, needed, line):
    def node(node_id, ip):
        return {"NodeID": node_id, "Alive": node_id in alive, "NodeManagerAddress": ip, "Resources": {"GPU": 1.0}}

    known = ray_nodes.alive(
        [{"NodeID": n, "Alive": True, "NodeManagerAddress": f"10.0.0.{i}"} for i, n in ((1, "a"), (2, "b"))]
    )
    now = [node("a", "10.0.0.1"), node("b", "10.0.0.2"), node("c", "10.0.0.3")]
    assert ray_nodes.lost_line(known, now, needed) == line
    assert ray_nodes.census(now) == {"nodes": len(alive), "gpus": len(alive)}
