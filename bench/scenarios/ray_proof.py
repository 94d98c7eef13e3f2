"""python -m bench.scenarios.ray_proof: serving across two Ray nodes, proven on one host with two GPUs.

A worker node (`start_server.sh ray-worker`, CUDA_VISIBLE_DEVICES=1, node address 127.0.0.2 so
that the two nodes differ, as vLLM requires) and our environment as the head (CUDA_VISIBLE_DEVICES=0,
runtime parameters ray_nodes=2 and parallelism): once ready, a batch and a chat are answered; then
the worker node is killed and the environment must exit non-zero, naming what died. Prints one
JSON object with what happened.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import time
from pathlib import Path

import openai

from bench import servers
from bench.drivers.predictions import post_batch
from bench.scenarios.deployments import SIZES
from bench.workload import prompts
from demo.running import START_SERVER, RunningEnvironment, Service, free_port, runtime_param_env
from vllm_dropin.launch import ray_cluster

DRUM_PORT = 8471


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", type=Path, required=True)
    # vLLM turns its custom all-reduce off by itself when a group spans hosts; two nodes on one host
    # look like one to its shared-memory test, and it would then reach for the other node's GPU.
    p.add_argument("--engine-args", default="--max-model-len 2048 --enforce-eager --disable-custom-all-reduce")
    p.add_argument("--parallelism", default="tensor")
    p.add_argument("--out", type=Path, default=Path(".build/ray-proof"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    folder = servers.model_folder(args.model, args.engine_args.split(), args.out)
    worker_env = {**os.environ, "CUDA_VISIBLE_DEVICES": "1", "VLLM_HOST_IP": "127.0.0.2"}  # vLLM wants an IP per node
    argv = [
        "bash",
        str(START_SERVER),
        "ray-worker",
        "--head",
        f"{ray_cluster.node_ip()}:{port}",
        "--node-ip",
        "127.0.0.2",
    ]
    worker = Service(argv, worker_env, args.out / "ray-worker.log", name="ray worker")
    params = {"ray_nodes": 2, "ray_port": port, "parallelism": args.parallelism, "max_tokens": 32,
              "temperature": 0.0, "cache_dir": str(args.out / "cache")}  # fmt: skip
    # DRUM's port outside the ephemeral range: Ray's processes bind OS-assigned ports from it, and
    # one took a port picked (and released) before Ray started. The image's 8080 is outside it too.
    env = {**runtime_param_env(params), "CUDA_VISIBLE_DEVICES": "0", "ADDRESS": f"127.0.0.1:{DRUM_PORT}"}
    head = RunningEnvironment(folder, args.out / "environment.log", env=env)
    head.url = f"http://127.0.0.1:{DRUM_PORT}"
    result: dict = {}
    try:
        result["ready_s"] = round(head.wait_ready(900), 1)
        log = head.log()
        result["plan"] = next(
            (line.split("parallelism: ", 1)[1] for line in log.splitlines() if "parallelism: " in line), ""
        )
        result["vllm_sizes"] = dict(SIZES.findall(log))
        result["ray_nodes_line"] = next((line for line in log.splitlines() if "Ray cluster ready" in line), "")
        batch = post_batch("batch", head.url, prompts(64))
        result["batch_answered"] = sum(1 for t in batch.texts or [] if t)
        chat = openai.OpenAI(base_url=f"{head.url}/v1", api_key="x").chat.completions.create(
            model="datarobot-deployed-llm", messages=[{"role": "user", "content": "Hello"}], max_tokens=8)  # fmt: skip
        result["chat_answered"] = bool(chat.choices[0].message.content)
        killed = time.monotonic()
        worker.signal(signal.SIGKILL)
        result["exit_code_after_node_killed"] = head.wait_exit(300)
        result["exit_after_s"] = round(time.monotonic() - killed, 1)
        errors = re.findall(r"ERROR vllm_dropin: (.*)", head.log())
        result["error_line"] = errors[-1] if errors else ""
        result["watch_lines"] = [line for line in head.log().splitlines() if line.startswith("[ray-nodes]")][-3:]
    finally:
        head.stop(timeout_s=30, sweep=True)
        worker.stop(timeout_s=10, sweep=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
