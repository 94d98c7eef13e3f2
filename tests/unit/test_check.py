"""`check` runs serve's pipeline with its side effects described: each stage says what it would do,
and what must happen first (the model's load_model) is named in the verdict."""

import os
import subprocess
import sys

from demo.running import runtime_param_env
from tests.helpers import CPU_ENGINE_ARGS, make_model_folder

FILLING_HOOK = """def load_model(code_dir):
    raise RuntimeError("check must not run load_model")
"""


def check(folder, params):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_RUNTIME_PARAM_")}
    env |= runtime_param_env(params) | {"CUDA_VISIBLE_DEVICES": ""}
    argv = [sys.executable, "-m", "vllm_dropin", "check", "--code-dir", str(folder)]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_check_with_a_hook_that_must_fill_the_folder_plans_on_it_without_running_it(tmp_path):
    folder = make_model_folder(tmp_path, CPU_ENGINE_ARGS, custom_py=FILLING_HOOK)
    done = check(folder, {"cache_dir": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    hook_dir = folder / "vllm"
    said = f"load_model: runs once before launch (check does not run it); if it fills {hook_dir}/, that is served"
    assert said in lines
    assert f"source: {hook_dir} (from {hook_dir}, if load_model fills it; hub access off)" in lines
    assert "preflight: runs once the model folder is filled" in lines
    assert any(line.startswith("vLLM command: vllm serve ") for line in lines)
    assert lines[-1] == f"OK: ready to launch if load_model fills {hook_dir}"


def test_check_on_a_served_folder_reads_it_and_plans(tmp_path, tiny_model):
    folder = make_model_folder(tmp_path, CPU_ENGINE_ARGS)
    done = check(folder, {"model": str(tiny_model), "cache_dir": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "preflight: passed" in lines
    assert any(line.startswith("model folder: ") and "safetensors headers" in line for line in lines)
    assert any(line.startswith("parallelism: no GPU visible") for line in lines)
    assert lines[-1] == "OK: ready to launch"


def test_check_lists_the_adapters_a_store_holds_and_what_is_cached(tmp_path, tiny_model):
    folder = make_model_folder(tmp_path, CPU_ENGINE_ARGS)
    store = tmp_path / "adapters"
    for name in ("support-v1", "support-v2"):
        (store / name).mkdir(parents=True)
    (store / "not a name").mkdir()
    params = {"model": str(tiny_model), "cache_dir": str(tmp_path / "cache"), "lora_adapters_uri": str(store)}
    done = check(folder, params)
    assert done.returncode == 0, done.stdout + done.stderr
    said = (
        f"LoRA adapters store: lora_adapters_uri {store}: 2 adapters (support-v1, support-v2), read in place; "
        "each is loaded when a request names it"
    )
    assert said in done.stdout.splitlines()
    assert "more from lora_adapters_uri, loaded when a request names them" in done.stdout
