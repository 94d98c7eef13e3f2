"""The launch plan: model precedence, engine_config overriding runtime parameters, env hygiene."""

import dataclasses
import shlex

import pytest

from tests.helpers import plan_of
from vllm_dropin.config import runtime_params
from vllm_dropin.config.settings import PARAMETERS
from vllm_dropin.contract import REQUESTS_FOR_A_BATCH_IN_FLIGHT, BatchSettings
from vllm_dropin.errors import ConfigError
from vllm_dropin.launch import process_env, vllm_command, vllm_entry
from vllm_dropin.planning import plan
from vllm_dropin.planning.gpus import GpuInventory

TOKEN = "hf_TOPSECRET123"
TWO_GPUS = GpuInventory(2, 80.0)
CRED = {"credentialType": "api_token", "apiToken": TOKEN}


def values(**raw):
    return runtime_params.parse(raw)


def full(settings, engine, code_dir, **kw):
    """The plan and vLLM's command, as the vLLM process builds it."""
    p = plan_of(settings, engine, code_dir, **kw)
    return p, vllm_command.build(p)


def args_of(command):
    """The flags after `vllm serve <model>`."""
    return command.argv[3:]


@pytest.fixture
def code_dir(tmp_path):
    return tmp_path


def fill(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    return folder


@pytest.mark.parametrize(
    ("engine", "hook_filled", "param", "expected_ref", "expected_origin"),
    [
        (["--model", "engine/model"], True, "param/model", "engine/model", "--model in engine_config.json"),
        (["--model=engine/model"], False, None, "engine/model", "--model in engine_config.json"),
        ([], True, "param/model", "HOOK", "filled by load_model"),
        ([], False, "param/model", "param/model", "runtime parameter 'model'"),
    ],
)
def test_model_precedence(code_dir, engine, hook_filled, param, expected_ref, expected_origin):
    if hook_filled:
        fill(code_dir / "vllm")
    else:
        (code_dir / "vllm").mkdir()  # an empty folder does not count
    p, a = full(values(model=param), engine, code_dir)
    assert p.model.ref == (str(code_dir / "vllm") if expected_ref == "HOOK" else expected_ref)
    assert expected_origin in p.model.origin
    assert a.argv[:3] == ["vllm", "serve", p.model.ref]
    assert "--model" not in a.argv  # the model is positional, exactly once


def test_no_model_is_a_clear_error(code_dir):
    with pytest.raises(ConfigError, match="no model to serve: set runtime parameter 'model'"):
        plan_of(values(), [], code_dir)


def test_the_folder_load_model_filled_is_served_under_its_name(code_dir):
    fill(code_dir / "vllm")
    p = plan_of(values(), [], code_dir)
    assert p.model.ref == str(code_dir / "vllm")
    assert p.model.name == "vllm"
    assert p.model.origin.endswith("(filled by load_model or shipped)")


def test_the_plan_travels_as_json_without_the_token(code_dir):
    p = plan_of(
        values(model="org/gated", HuggingFaceToken=CRED, max_model_len=512), ["-tp", "2"], code_dir, gpus=TWO_GPUS
    )
    text = p.to_json()
    assert TOKEN not in text
    assert plan.LaunchPlan.from_json(text) == dataclasses.replace(p, hf_token=None)


def test_batch_settings_are_the_batch_parameters():
    declared = {p.name for p in PARAMETERS if p.feeds == "batch"}
    assert {f.name for f in dataclasses.fields(BatchSettings)} == declared


@pytest.mark.parametrize(
    "engine",
    [["--max-model-len", "512"], ["--max-model-len=512"], ["--max_model_len", "512"], ["--max_model_len=512"]],
)
def test_engine_config_overrides_runtime_parameter_whatever_the_spelling(code_dir, engine):
    _, a = full(values(model="m", max_model_len=4096), engine, code_dir)
    joined = " ".join(a.argv)
    assert "4096" not in joined
    assert a.overridden == {"max_model_len": "--max-model-len"}
    assert sum(t.split("=")[0].replace("_", "-") == "--max-model-len" for t in a.argv) == 1


def test_short_alias_overrides_too(code_dir):
    _, a = full(values(model="m", gpu_memory_utilization=0.5), ["--gpu-memory-utilization=0.8"], code_dir)
    assert "0.5" not in a.argv
    assert a.overridden == {"gpu_memory_utilization": "--gpu-memory-utilization"}


def test_runtime_parameters_become_flags(code_dir):
    _, a = full(
        values(model="m", max_model_len=2048.0, gpu_memory_utilization=0.85, trust_remote_code=True), [], code_dir
    )
    assert args_of(a)[:5] == ["--max-model-len", "2048", "--gpu-memory-utilization", "0.85", "--trust-remote-code"]


def test_trust_remote_code_is_off_unless_asked(code_dir):
    assert "--trust-remote-code" not in full(values(model="m"), [], code_dir)[1].argv


def test_user_parallelism_is_kept_as_given(code_dir):
    _, a = full(values(model="m"), ["-tp", "2", "-pp", "2"], code_dir)
    assert args_of(a)[:4] == ["-tp", "2", "-pp", "2"]


@pytest.mark.parametrize(
    ("engine", "param", "names"),
    [
        ([], "org/model", ["org/model", "datarobot-deployed-llm"]),
        (["--served-model-name", "mine"], "org/model", ["mine", "datarobot-deployed-llm"]),
        (["--served_model_name=a"], "org/model", ["a", "datarobot-deployed-llm"]),
        (["--served-model-name", "datarobot-deployed-llm", "x"], "m", ["datarobot-deployed-llm", "x"]),
    ],
)
def test_served_names_always_include_the_platform_alias(code_dir, engine, param, names):
    _, a = full(values(model=param), engine, code_dir)
    assert a.served_names == names
    i = a.argv.index("--served-model-name")
    assert a.argv[i + 1 :] == names
    assert a.argv.count("--served-model-name") == 1


def test_stray_positional_is_rejected(code_dir):
    with pytest.raises(ConfigError, match="stray value 'some/model' is not a flag"):
        full(values(model="m"), ["some/model"], code_dir)


def test_runtime_values_are_checked_by_vllm_too(code_dir):
    # valid for us (> 0) but vLLM's parser must accept the combined command as well
    _, a = full(values(model="m", max_model_len=1), [], code_dir)
    assert "--max-model-len" in a.argv


def test_local_model_runs_offline_and_gets_no_token(code_dir):
    model = fill(code_dir / "weights")
    p = plan_of(values(model=str(model), HuggingFaceToken=CRED), [], code_dir)
    env = process_env.vllm_env(p, {"PATH": "/bin", "HF_TOKEN": TOKEN}, "key123")
    assert env["HF_HUB_OFFLINE"] == "1"
    assert "HF_TOKEN" not in env
    assert env["VLLM_API_KEY"] == "key123"


def test_hub_model_gets_token_only_through_env(code_dir):
    p, a = full(values(model="org/gated", HuggingFaceToken=CRED), [], code_dir)
    env = process_env.vllm_env(p, {"PATH": "/bin"}, "key123")
    assert env["HF_TOKEN"] == TOKEN
    assert "HF_HUB_OFFLINE" not in env
    command = a.bound_to(8000)
    assert TOKEN not in shlex.join(command)
    assert "key123" not in shlex.join(command)
    assert TOKEN not in repr(p)


def test_secrets_of_the_platform_never_reach_vllm(code_dir):
    base = {
        "PATH": "/bin",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "DATAROBOT_API_TOKEN": "dr-secret",
        "DATAROBOT_ENDPOINT": "https://x",
        "MLOPS_RUNTIME_PARAM_HuggingFaceToken": '{"type": "credential", "payload": {}}',
        "AWS_SECRET_ACCESS_KEY": "aws",
        "SOME_API_KEY": "k",
    }
    env = process_env.vllm_env(plan_of(values(model="m"), [], code_dir), base, "key")
    assert {"PATH", "CUDA_VISIBLE_DEVICES"} <= set(env)
    assert not {k for k in base if k not in ("PATH", "CUDA_VISIBLE_DEVICES")} & set(env)


def test_describe_masks_secrets_and_shows_sampling(code_dir):
    p, a = full(values(model="org/gated", HuggingFaceToken=CRED, temperature=0, max_tokens=7), [], code_dir)
    lines = vllm_command.describe(p, a, process_env.vllm_env_additions(p, {}, "key123"), 1)
    text = "\n".join(lines)
    assert TOKEN not in text
    assert "key123" not in text
    assert "HF_TOKEN=***" in text
    assert "max_tokens=7" in text
    assert "temperature=0.0" in text
    assert "vLLM command: vllm serve org/gated" in text
    rows = a.layout.rows_in_flight
    assert f"rows_per_request=1 (a batch of at most {rows} rows: {REQUESTS_FOR_A_BATCH_IN_FLIGHT} requests)" in text
    p = dataclasses.replace(p, batch=dataclasses.replace(p.batch, rows_per_request=4))
    assert "rows_per_request=4 " in " ".join(vllm_command.describe(p, a, {}, 1)) + " "


def test_caches_stay_out_of_the_users_home(code_dir, tmp_path):
    p = plan_of(values(model="m", cache_dir=str(tmp_path / "c")), [], code_dir)
    env = process_env.cache_env(p.cache_dir)
    assert all(v.startswith(str(tmp_path / "c")) for v in env.values())
    assert {"HOME", "HF_HOME", "VLLM_CACHE_ROOT"} <= set(env)


def test_the_vllm_process_builds_the_same_command_from_the_json_plan(code_dir):
    p, a = full(
        values(model="org/gated", HuggingFaceToken=CRED, max_model_len=512), ["-tp", "2"], code_dir, gpus=TWO_GPUS
    )
    command, _ = vllm_entry.planned(plan.LaunchPlan.from_json(p.to_json()), 8000)
    assert command == a


def test_the_vllm_process_rejects_unknown_flags_before_vllm_runs(code_dir):
    p = plan_of(values(model="m"), ["--max-modle-len", "64"], code_dir)
    with pytest.raises(ConfigError, match=r"unknown vLLM flag --max-modle-len \(did you mean --max-model-len\?\)"):
        vllm_entry.planned(p, 8000)


def test_cpu_parameters_feed_vllms_environment_and_unset_ones_keep_the_images(code_dir):
    fill(code_dir / "vllm")
    vals = values(cpu_kvcache_space_gib=2, cpu_omp_threads_bind="0-1")
    env = process_env.vllm_env(plan_of(vals, [], code_dir), {"VLLM_CPU_NUM_OF_RESERVED_CPU": "1"}, "key")
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0-1"
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "1"  # unset parameter: the image's ENV default stays


def test_batch_sampling_settings_that_fail_every_row_stop_startup_naming_them(code_dir):
    p = plan_of(values(model="m", n=2, temperature=0), [], code_dir)
    with pytest.raises(ConfigError) as err:
        vllm_entry.planned(p, 8000)
    assert str(err.value) == (
        "runtime parameters 'n' = 2, 'temperature' = 0.0, 'max_tokens' = 256 (batch predictions) conflict: vLLM "
        'rejects them with "n must be 1 when using greedy sampling, got 2."; change one of them'
    )
    vllm_entry.planned(plan_of(values(model="m", n=2, temperature=0.5), [], code_dir), 8000)
