"""LoRA adapters: found in the model folder, checked against the base model before launch, served
under their folder names with the rank and count they need; the user's settings win."""

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from tests.helpers import make_lora, plan_of
from vllm_dropin import pipeline
from vllm_dropin.config import runtime_params, vllm_flags
from vllm_dropin.errors import ConfigError
from vllm_dropin.launch import vllm_command
from vllm_dropin.model import footprint
from vllm_dropin.model import lora as adapters


@pytest.fixture(scope="module")
def lora8(tiny_model, tmp_path_factory):
    return make_lora(tiny_model, tmp_path_factory.mktemp("lora") / "a", rank=8)


def folder_with(tmp_path, **named):
    for name, source in named.items():
        shutil.copytree(source, tmp_path / "adapters" / name)
    return tmp_path


def test_no_adapters_changes_nothing(tmp_path):
    launch = plan_of(runtime_params.parse({"model": "m"}), [], tmp_path)
    assert launch.adapters == []
    assert "--enable-lora" not in vllm_command.build(launch).argv


def test_adapters_are_served_under_their_folder_names(tmp_path, lora8, tiny_model):
    code_dir = folder_with(tmp_path, tone=lora8, domain=lora8)
    launch = plan_of(runtime_params.parse({"model": str(tiny_model)}), [], code_dir)
    assert [(a.name, a.rank) for a in launch.adapters] == [("domain", 8), ("tone", 8)]
    argv = vllm_command.build(launch).argv
    i = argv.index("--lora-modules")
    assert argv[i + 1 : i + 3] == [f"domain={code_dir}/adapters/domain", f"tone={code_dir}/adapters/tone"]
    assert argv[argv.index("--max-lora-rank") + 1] == "8" and argv[argv.index("--max-loras") + 1] == "2"
    assert "--enable-lora" in argv
    assert adapters.check(launch.adapters, footprint.read_tensors(tiny_model), "tiny") == []


@pytest.mark.parametrize(
    ("params", "engine", "rank", "loras"),
    [
        ({"max_lora_rank": 64}, [], "64", "1"),
        ({}, ["--max-loras", "4"], "8", "4"),
        ({"max_loras": 2}, ["--max-loras=3"], "8", "3"),  # engine_config wins over the parameter
    ],
)
def test_the_users_settings_win(tmp_path, lora8, tiny_model, params, engine, rank, loras):
    code_dir = folder_with(tmp_path, tone=lora8)
    argv = vllm_command.build(
        plan_of(runtime_params.parse({"model": str(tiny_model), **params}), engine, code_dir)
    ).argv
    parsed = vllm_flags.parse(argv[2:], "argv")  # as vLLM reads it
    assert (str(parsed["max_lora_rank"]), str(parsed["max_loras"])) == (rank, loras)
    assert sum(t.startswith("--max-loras") for t in argv) == 1  # never given twice


def test_ranks_round_up_to_vllms_choices():
    found = [adapters.Adapter("a", "/a", 9, (), None), adapters.Adapter("b", "/b", 4, (), None)]
    assert adapters.rank_for(found) == 16


def _config(folder, **changes):
    path = folder / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "adapter_config.json").unlink(), "LoRA adapter tone .*: no adapter_config.json"),
        (lambda f: (f / "adapter_model.safetensors").unlink(), r"LoRA adapter tone .*: no weights \(adapter_model"),
        (lambda f: _config(f, r=1024), "LoRA adapter tone .*: rank 1024 is above vLLM's largest \\(512\\)"),
        (lambda f: _config(f, peft_type="IA3"), "is not a LoRA adapter's \\(peft_type 'IA3'\\)"),
    ],
)
def test_malformed_adapters_stop_startup_in_one_line(tmp_path, lora8, damage, message):
    code_dir = folder_with(tmp_path, tone=lora8)
    damage(code_dir / "adapters" / "tone")
    with pytest.raises(ConfigError, match=message):
        adapters.discover(code_dir)


def test_target_modules_the_base_model_lacks(tmp_path, lora8, tiny_model):
    code_dir = folder_with(tmp_path, tone=lora8)
    _config(code_dir / "adapters" / "tone", target_modules=["q_proj", "qkv_fused"])
    with pytest.raises(ConfigError, match="LoRA adapter tone: target modules qkv_fused are not in the base model"):
        adapters.check(adapters.discover(code_dir), footprint.read_tensors(tiny_model), "tiny")


def test_shapes_that_cannot_match_are_an_error_and_another_base_name_a_warning(tmp_path, lora8, tiny_model):
    code_dir = folder_with(tmp_path, tone=lora8)
    found = adapters.discover(code_dir)
    assert adapters.check(found, footprint.read_tensors(tiny_model), "other-name") == [
        f"LoRA adapter tone was trained on {str(tiny_model)!r}, served on 'other-name'; its shapes match"
    ]
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    save_file({key: torch.ones(8, 999)}, str(code_dir / "adapters" / "tone" / "adapter_model.safetensors"))
    with pytest.raises(ConfigError, match=r"model.layers.0.self_attn.q_proj has 999 inputs in the adapter but \d+ in"):
        adapters.check(found, footprint.read_tensors(tiny_model), "tiny")


def test_the_batch_adapter_must_be_one_that_is_served(tmp_path, lora8, tiny_model):
    code_dir = folder_with(tmp_path, tone=lora8)
    with pytest.raises(ConfigError, match="runtime parameter 'lora_adapter': no such adapter; adapters found: tone"):
        plan_of(runtime_params.parse({"model": str(tiny_model), "lora_adapter": "tones"}), [], code_dir)
    launch = plan_of(runtime_params.parse({"model": str(tiny_model), "lora_adapter": "tone"}), [], code_dir)
    assert launch.batch.lora_adapter == "tone"


class Recording:
    """The pipeline's effects as a test drives them: the hook places files, nothing is fetched."""

    def __init__(self, hook_places) -> None:
        self.hook_places = hook_places
        self.said: dict[str, str] = {}

    def check_flags(self, config) -> None:
        return None

    def run_hook(self, hook, config) -> bool:
        self.hook_places()
        return True

    def no_model(self, error, config):
        raise error

    def fetch(self, config, model) -> bool:
        raise AssertionError("nothing to fetch")

    def preflight(self, facts, config) -> None:
        return None

    def say(self, stage: str, text: str) -> None:
        self.said[stage] = text


def test_adapters_and_a_schema_file_placed_by_load_model_are_read_after_it_ran(tmp_path, lora8, tiny_model):
    (tmp_path / "custom.py").write_text("def load_model(code_dir):\n    pass\n")
    settings = runtime_params.parse(
        {"model": str(tiny_model), "lora_adapter": "tone", "response_schema": "answer.schema.json"}
    )

    def hook_places() -> None:
        folder_with(tmp_path, tone=lora8)
        (tmp_path / "answer.schema.json").write_text('{"type": "object"}')

    launch = pipeline.run(tmp_path, settings, {"CUDA_VISIBLE_DEVICES": ""}, Recording(hook_places))
    assert [a.name for a in launch.adapters] == ["tone"] and launch.batch.response_schema == '{"type": "object"}'
    assert "--lora-modules" in vllm_command.build(launch).argv
    shutil.rmtree(tmp_path / "adapters")
    with pytest.raises(ConfigError, match="'lora_adapter': no such adapter"):  # the hook placed nothing this time
        pipeline.run(tmp_path, settings, {"CUDA_VISIBLE_DEVICES": ""}, Recording(lambda: None))
