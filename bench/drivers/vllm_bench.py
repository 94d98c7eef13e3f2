"""vLLM's own load generator, `vllm bench serve`, as a driver: a client nobody here wrote, reading
the answers as vLLM's users' tools do (its figures are its own, from its saved JSON)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench import servers

FIGURES = ("completed", "failed", "request_throughput", "output_throughput", "median_ttft_ms", "p99_ttft_ms",
           "median_itl_ms")  # fmt: skip


def serve(
    endpoint: servers.Endpoint,
    tokenizer: Path,
    in_flight: int,
    requests: int,
    input_len: int,
    output_len: int,
    out: Path,
    route: str = "/v1/completions",
) -> dict:
    """`vllm bench serve` of `requests` random prompts (`input_len` tokens, `output_len` generated,
    EOS ignored), `in_flight` at a time, against `endpoint` (a base URL ending in /v1): its figures.
    A chat `route` is driven by vLLM's chat client, each prompt one user message."""
    backend = "openai-chat" if route.endswith("/chat/completions") else "openai"
    out.mkdir(parents=True, exist_ok=True)
    result = out / "result.json"
    result.unlink(missing_ok=True)
    argv = [
        sys.executable, "-m", "vllm.entrypoints.cli.main", "bench", "serve",
        "--backend", backend, "--base-url", endpoint.base_url.removesuffix("/v1"), "--endpoint", route,
        "--model", "datarobot-deployed-llm", "--tokenizer", str(tokenizer),
        "--dataset-name", "random", "--random-input-len", str(input_len), "--random-output-len", str(output_len),
        "--num-prompts", str(requests), "--max-concurrency", str(in_flight), "--ignore-eos",
        "--disable-tqdm", "--save-result", "--result-dir", str(out), "--result-filename", result.name,
    ]  # fmt: skip
    env = {**os.environ, "OPENAI_API_KEY": endpoint.api_key}
    with (out / "vllm-bench.log").open("w") as log:
        subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, check=True, timeout=3600)
    figures = json.loads(result.read_text())
    return {name: figures.get(name) for name in FIGURES}
