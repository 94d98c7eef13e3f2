"""The servers a benchmark compares, each its own process group logging to a file.

- our environment: `environment/start_server.sh`, exactly as the image starts it;
- bare `vllm serve` with the same model and engine flags (time-to-ready baseline);
- DRUM's built-in `drum server --gpu-predictor vllm` (the platform's stock path);
- our DRUM adapter in front of the instant stand-in upstream (`bench.standin`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from demo.running import RunningEnvironment, Service, free_port, runtime_param_env
from vllm_dropin.contract import BatchSettings, Layout, VllmEndpoint
from vllm_dropin.launch import drum_server
from vllm_dropin.launch.process_env import cache_env
from vllm_dropin.model.source import ModelSource
from vllm_dropin.planning.parallel import ParallelInputs
from vllm_dropin.planning.plan import CPU_ROWS_PER_REPLICA, NO_GPU, LaunchPlan


@dataclass
class Endpoint:
    """An OpenAI-compatible base URL (ending in /v1) and the key it wants."""

    base_url: str
    api_key: str = "unused"


def cpu_env(cache: Path) -> dict[str, str]:
    """What every vLLM here needs: a KV cache size on CPU (ignored on GPU); every cache under `cache`
    (as our environment does), so a cold start is cold."""
    for folder in cache_env(cache).values():
        Path(folder).mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        **cache_env(cache),
        "HF_HUB_OFFLINE": "1",
    }


def model_folder(model: Path, engine_args: list[str], work: Path) -> Path:
    """A custom-model folder with the model already in vllm/ (as after load_model) and the engine flags."""
    folder = work / "model-folder"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "vllm").symlink_to(model.resolve(), target_is_directory=True)
    (folder / "engine_config.json").write_text(json.dumps({"args": engine_args}))
    return folder


def our_environment(folder: Path, params: dict, work: Path, cache: Path) -> RunningEnvironment:
    env = runtime_param_env({**params, "cache_dir": str(cache)})
    return RunningEnvironment(folder, work / "our-environment.log", env=env)


@contextlib.contextmanager
def deployment(model: Path, engine_args: str, work: Path, params: dict, env: list[str]) -> Iterator[RunningEnvironment]:
    """Our environment serving `model` (`engine_args` in its engine_config.json) with runtime
    parameters `params` and NAME=VALUE variables `env`, once ready; stopped after."""
    folder = model_folder(model, engine_args.split(), work)
    variables = runtime_param_env({"cache_dir": str(work / "cache"), **params})
    variables |= dict(item.split("=", 1) for item in env)
    service = RunningEnvironment(folder, work / "environment.log", env=variables)
    try:
        service.wait_ready(900)
        yield service
    finally:
        service.stop()


def timings_line(environment: RunningEnvironment, timeout_s: float = 30) -> str:
    """The environment's own account of its time to ready, by phase: logged once a DRUM worker
    answers, so possibly just after the benchmark saw it ready."""
    marker = "time to ready "
    text = environment.wait_log(lambda log: marker in log, timeout_s)
    lines = [line for line in text.splitlines() if marker in line]
    return marker + lines[-1].split(marker, 1)[1] if lines else "(not logged)"


def vllm_endpoint_of(environment: RunningEnvironment) -> Endpoint:
    """The vLLM server inside our environment, for a direct client on the same server.

    Its deployment key is read from the vLLM process's environment, which only the same user on
    the same host can do: a benchmark's privilege, not an interface."""
    for proc in psutil.Process(environment.proc.pid).children(recursive=True):
        try:
            argv, variables = proc.cmdline(), proc.environ()
        except psutil.Error:
            continue
        if "--port" in argv and "VLLM_API_KEY" in variables:
            port = argv[argv.index("--port") + 1]
            return Endpoint(f"http://127.0.0.1:{port}/v1", variables["VLLM_API_KEY"])
    raise RuntimeError("vLLM process of the environment not found")


def bare_vllm(model: Path, engine_args: list[str], work: Path, cache: Path) -> tuple[Service, Endpoint]:
    port = free_port()
    argv = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", str(model), *engine_args]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--served-model-name", "bench"]
    service = Service(argv, cpu_env(cache), work / "bare-vllm.log", name="bare vllm serve")
    return service, Endpoint(f"http://127.0.0.1:{port}/v1")


def stock_drum(folder: Path, params: dict, work: Path, cache: Path) -> tuple[Service, str]:
    """DRUM's own vLLM predictor on the same model folder (it launches vLLM itself)."""
    port = free_port()
    env = {
        **cpu_env(cache),
        **runtime_param_env(params),
        "TARGET_NAME": "resultText",
        "OPENAI_PORT": str(free_port()),
    }
    env.pop("VIRTUAL_ENV", None)  # DRUM strips "$VIRTUAL_ENV/bin:" from PATH for its vLLM child
    argv = [drum_server.drum_command(f"127.0.0.1:{port}")[0], "server", "--code-dir", str(folder)]
    argv += ["--target-type", "textgeneration", "--gpu-predictor", "vllm", "--address", f"127.0.0.1:{port}"]
    return Service(argv, env, work / "stock-drum.log", name="stock DRUM vllm"), f"http://127.0.0.1:{port}"


def standin(work: Path, pace_ms: str | None = None, hold_ms: float = 0.0) -> tuple[Service, Endpoint]:
    port = free_port()
    argv = [sys.executable, "-m", "bench.standin", "--port", str(port), "--hold-ms", str(hold_ms)]
    argv += ["--pace-ms", pace_ms] if pace_ms else []
    return Service(argv, os.environ, work / "standin.log", name="stand-in"), Endpoint(f"http://127.0.0.1:{port}/v1")


def adapter_only(upstream: Endpoint, batch: BatchSettings, work: Path, model: str = "standin") -> tuple[Service, str]:
    """Our DRUM adapter, started as the entrypoint starts it, in front of any upstream serving `model`;
    the layout a vLLM process would report is written here (one replica, the batch's rows in flight)."""
    port = free_port()
    layout = work / "layout.json"
    rows = batch.max_concurrent_rows or CPU_ROWS_PER_REPLICA
    Layout(1, 1, 1, 1, rows, "stand-in upstream").write(layout)
    plan = LaunchPlan(
        model=ModelSource("standin", False, "benchmark", "standin"),
        engine_args=[],
        param_flags={},
        parallel=ParallelInputs("auto", NO_GPU, None, None),
        batch=batch,
        cache_dir=work / "adapter-cache",
        startup_timeout=60,
        verify_ssl=True,
    )
    endpoint = VllmEndpoint(upstream.base_url, upstream.api_key, model)
    address = f"127.0.0.1:{port}"
    env = drum_server.drum_env(plan, endpoint, os.environ, address, layout)
    drum_server.metrics_dir(layout).mkdir(exist_ok=True)
    argv = drum_server.drum_command(address)
    return Service(argv, env, work / "adapter-only.log", name="adapter"), f"http://127.0.0.1:{port}"
