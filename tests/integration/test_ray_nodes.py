"""A real Ray cluster on this host (CPU nodes): the head as the supervisor starts it, a worker node
through `start_server.sh ray-worker`, the supervisor's wait for the nodes, and the node watch that
stops a deployment when a node dies. vLLM over the cluster needs GPUs: bench/ray_proof.py."""

from __future__ import annotations

import os
import signal
import time

import pytest

from demo.running import START_SERVER, Service, free_port
from vllm_dropin.errors import ExitCode, StartupError
from vllm_dropin.launch import ray_cluster, vllm_server

pytest.importorskip("ray")
pytestmark = pytest.mark.integration
# Ray's defaults declare a node dead after 5 missed checks 3 s apart; the test need not wait that long.
FAST_DEATH = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "3"}


def wait_exit(child, timeout_s: float) -> int | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = child.poll()
        if code is not None:
            return code
        time.sleep(0.2)
    return None


@pytest.fixture
def head(monkeypatch):
    for name, value in FAST_DEATH.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    child = ray_cluster.start_head(port)
    yield child, f"{ray_cluster.node_ip()}:{port}"
    child.stop(10)


def test_a_lost_node_stops_the_deployment_with_its_address(head, tmp_path):
    child, address = head
    worker = Service(
        ["bash", str(START_SERVER), "ray-worker", "--head", address],
        dict(os.environ),
        tmp_path / "worker.log",
        name="ray worker",
    )
    watch = None
    try:
        assert ray_cluster.wait_for_nodes(address, 2, 120, lambda: False, child) == (2, 0)
        watch = ray_cluster.start_watch(address, 2)
        assert wait_exit(watch, 5) is None  # both nodes alive: the watch stays
        worker.signal(signal.SIGKILL)  # the node's whole process group: raylet, its workers
        code = wait_exit(watch, 60)
        assert code == 1, watch.tail()
        error = vllm_server.exited(watch, code, startup=False)
        assert "the Ray node watch exited unexpectedly with code 1: RayNodeError: Ray node" in str(error)
        assert "left the cluster: 1 of 2 nodes alive" in str(error) and "the platform restarts" in str(error)
        assert error.exit_code == ExitCode.SERVING_FAILED
    finally:
        if watch is not None:
            watch.stop(2)
        worker.stop(5, sweep=True)


def test_nodes_that_do_not_join_are_one_line_naming_the_parameters(head):
    child, address = head
    with pytest.raises(StartupError) as raised:
        ray_cluster.wait_for_nodes(address, 2, 8, lambda: False, child)
    assert str(raised.value).startswith("runtime parameter 'ray_nodes': 1 of 2 Ray nodes joined within 8 s")
    assert f"start_server.sh ray-worker --head <this host>:{address.rsplit(':', 1)[1]}" in str(raised.value)
