"""Startup failures stop before or at launch with one clear error; shutdown leaves no process behind."""

from __future__ import annotations

import json
import re
import signal
import threading
import time

import psutil
import pytest

from demo.running import RunningEnvironment, runtime_param_env
from tests.helpers import CPU_ENGINE_ARGS, ENDLESS_HOOK, make_model_folder

pytestmark = pytest.mark.integration

LAUNCH_LINE = "deployment event: vLLM launching"


def run_to_exit(tmp_path, params, engine_args=CPU_ENGINE_ARGS, custom_py=None, raw_engine=None, timeout=300):
    folder = make_model_folder(tmp_path, engine_args=engine_args, custom_py=custom_py)
    if raw_engine is not None:
        (folder / "engine_config.json").write_bytes(raw_engine)
    env = RunningEnvironment(folder, tmp_path / "environment.log", env=runtime_param_env(params))
    code = env.wait_exit(timeout)
    env.stop()
    return code, env.log()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"args": ["--dtype" "float32"]}', "engine_config.json: invalid JSON at line 1 column 21"),
        (json.dumps({"args": ["--dtype", 32]}).encode(), "engine_config.json: $.args[1]: expected type string, got 32"),
        (json.dumps({"flags": []}).encode(), "engine_config.json: $: expected no keys other than 'args'"),
    ],
)
def test_bad_engine_config_stops_before_launch(tmp_path, tiny_model, raw, expected):
    code, log = run_to_exit(tmp_path, {"model": str(tiny_model)}, raw_engine=raw)
    assert code == 2
    assert expected in log
    assert LAUNCH_LINE not in log
    assert "[vllm]" not in log


def test_load_model_failure_shows_the_hooks_own_traceback(tmp_path, tiny_model):
    custom = "def load_model(code_dir):\n    raise RuntimeError('bucket s3://models/x is unreachable')\n"
    code, log = run_to_exit(tmp_path, {}, custom_py=custom)
    assert code == 3
    assert "raise RuntimeError('bucket s3://models/x is unreachable')" in log  # the hook's source line
    assert "load_model in" in log and "raised RuntimeError" in log
    assert LAUNCH_LINE not in log


def test_a_stop_while_load_model_runs_ends_at_once_and_leaves_no_process(tmp_path, tiny_model):
    """A hook cannot be stopped: the process ends without it, the flag check's process with it."""
    folder = make_model_folder(tmp_path, custom_py=ENDLESS_HOOK)
    env = RunningEnvironment(folder, tmp_path / "environment.log", env=runtime_param_env({"model": str(tiny_model)}))
    try:
        env.wait_log(lambda log: "load_model hook started" in log, 60)
        deadline = time.monotonic() + 60
        processes = _ours(env)
        while not any("--check-flags" in line for line in _alive(processes)):
            assert time.monotonic() < deadline, "the flag check never started"
            time.sleep(0.1)  # the poll's interval
            processes = _ours(env)
        env.proc.send_signal(signal.SIGTERM)
        assert env.wait_exit(15) == 0
        assert _alive(processes) == []
    finally:
        env.stop()


def test_a_first_start_finds_vllms_model_info_from_the_install(tmp_path, tiny_model):
    """An empty cache_dir: vLLM reads its architecture's info from the cache the install filled
    instead of inspecting the class in a process that imports vLLM again."""
    folder = make_model_folder(tmp_path)
    params = {"model": str(tiny_model), "cache_dir": str(tmp_path / "cache")}
    env = RunningEnvironment(
        folder, tmp_path / "environment.log", env={**runtime_param_env(params), "VLLM_LOGGING_LEVEL": "DEBUG"}
    )
    try:
        env.wait_ready()
        assert "Loaded model info for class vllm.model_executor.models.llama.LlamaForCausalLM from cache" in env.log()
    finally:
        env.stop()


def _ours(env: RunningEnvironment) -> list[psutil.Process]:
    return [psutil.Process(env.proc.pid), *psutil.Process(env.proc.pid).children(recursive=True)]


def _alive(processes: list[psutil.Process]) -> list[str]:
    alive = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(" ".join(p.cmdline()))
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.fixture
def started(tmp_path, tiny_model):
    folder = make_model_folder(tmp_path)
    env = RunningEnvironment(
        folder, tmp_path / "environment.log", env=runtime_param_env({"model": str(tiny_model), "max_tokens": 64})
    )
    env.wait_ready()
    yield env
    env.stop()


def test_sigterm_drains_the_batch_in_flight_and_leaves_no_process(started):
    import requests

    processes = _ours(started)
    assert len(processes) >= 4  # entrypoint, vLLM (+ engine core), gunicorn master and worker
    port = re.search(r"--port (\d+)", started.log()).group(1)
    result = {}
    csv = "promptText\n" + "\n".join(f"prompt {i}" for i in range(64)) + "\n"
    sender = threading.Thread(
        target=lambda: result.update(
            r=requests.post(f"{started.url}/predictions/", data=csv, headers={"Content-Type": "text/csv"}, timeout=120)
        )
    )
    sender.start()
    while "r" not in result:  # wait until vLLM is working on the batch, then ask to stop
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        if any(
            line.startswith("vllm:num_requests_running") and not line.endswith(" 0.0") for line in metrics.splitlines()
        ):
            break
    started.proc.send_signal(signal.SIGTERM)
    sender.join(timeout=120)
    assert result["r"].status_code == 200
    assert len(result["r"].json()["predictions"]) == 64
    assert started.wait_exit(60) == 0
    assert _alive(processes) == []


def test_vllm_dying_later_stops_everything_non_zero(started):
    processes = _ours(started)
    vllm = next(p for p in processes[1:] if "vllm_dropin.launch.vllm_entry" in " ".join(p.cmdline()))
    vllm.send_signal(signal.SIGKILL)
    assert started.wait_exit(60) == 1
    assert "vLLM exited unexpectedly" in started.log()
    assert _alive(processes) == []


def test_vllm_killed_mid_batch_fails_the_batch_fast_and_exits_non_zero(started):
    """In-flight rows get a clear error at once (no hang), DRUM stops answering within 5 s, exit 1."""
    import time

    import requests

    processes = _ours(started)
    port = re.search(r"--port (\d+)", started.log()).group(1)
    result = {}
    csv = "promptText\n" + "\n".join(f"prompt {i}" for i in range(64)) + "\n"

    def send():
        try:
            result["r"] = requests.post(
                f"{started.url}/predictions/", data=csv, headers={"Content-Type": "text/csv"}, timeout=120
            )
        except requests.RequestException as exc:
            result["r"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    while True:  # wait until vLLM is working on the batch
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        if any(
            line.startswith("vllm:num_requests_running") and not line.endswith(" 0.0") for line in metrics.splitlines()
        ):
            break
    vllm = next(p for p in processes[1:] if "vllm_dropin.launch.vllm_entry" in " ".join(p.cmdline()))
    killed = time.monotonic()
    vllm.send_signal(signal.SIGKILL)
    sender.join(timeout=30)
    assert not sender.is_alive(), "the batch hung after vLLM died"
    reply = result["r"]
    if isinstance(reply, requests.Response):  # answered before DRUM stopped: a clear 5xx
        assert reply.status_code == 503, reply.text[:300]
        assert reply.json()["message"].startswith("vLLM server is not reachable (")
    while time.monotonic() - killed < 5:
        try:
            requests.get(f"{started.url}/v1/models", timeout=1)
        except requests.RequestException:
            break
    else:
        pytest.fail("DRUM still answered 5 s after vLLM died")
    assert started.wait_exit(60) == 1
    assert _alive(processes) == []


def test_unwritable_cache_dir_is_a_clear_error(tmp_path, tiny_model):
    blocker = tmp_path / "a-file"  # a file in the path: not writable as a folder, even for root
    blocker.write_text("")
    cache = blocker / "cache"
    code, log = run_to_exit(tmp_path, {"model": str(tiny_model), "cache_dir": str(cache)})
    assert code == 2
    assert "runtime parameter 'cache_dir': cannot create" in log
    assert LAUNCH_LINE not in log
