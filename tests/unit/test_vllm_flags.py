"""vLLM flags understood through the installed vLLM's own `vllm serve` parser."""

import pytest

from vllm_dropin.config import vllm_flags
from vllm_dropin.config.settings import PARAMETERS
from vllm_dropin.errors import ConfigError


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--max-model-len", "512"], {"max_model_len": 512}),
        (["--max-model-len=512"], {"max_model_len": 512}),
        (["--max_model_len", "512"], {"max_model_len": 512}),
        (["-tp", "2"], {"tensor_parallel_size": 2}),
        (["--tensor-parallel-size=2", "-pp", "2"], {"tensor_parallel_size": 2, "pipeline_parallel_size": 2}),
        (["--gpu-memory-utilization", "0.5"], {"gpu_memory_utilization": 0.5}),
        (["--trust-remote-code"], {"trust_remote_code": True}),
        (["--served-model-name", "a", "b"], {"served_model_name": ["a", "b"]}),
        (["--dtype", "float32", "--enforce-eager"], {"dtype": "float32", "enforce_eager": True}),
        ([], {}),
    ],
)
def test_explicit_destinations_whatever_the_spelling(args, expected):
    assert vllm_flags.parse(args, "engine_config.json") == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-modl-len", "512"], "unknown vLLM flag --max-modl-len (did you mean --max-model-len?)"),
        (["--gpu-memory-utilisation=0.5"], "did you mean --gpu-memory-utilization?"),
        (["--max-model-len", "lots"], "argument --max-model-len"),
        (["--dtype", "float7"], "argument --dtype"),
        (["--port", "9000"], "--port cannot be set"),
        (["--host=0.0.0.0"], "--host cannot be set"),
        (["--api-key", "k"], "--api-key cannot be set"),
        (["--help"], "help and version flags are not allowed"),
    ],
)
def test_bad_flags_are_rejected_before_launch(args, message, capsys):
    with pytest.raises(ConfigError) as err:
        vllm_flags.parse(args, "engine_config.json")
    assert str(err.value).startswith("engine_config.json: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert capsys.readouterr().out == ""  # argparse printed nothing (no usage, no help)


@pytest.mark.parametrize(
    ("args", "model", "rest"),
    [
        (["--model", "m", "--dtype", "half"], "m", ["--dtype", "half"]),
        (["--dtype", "half", "--model=m"], "m", ["--dtype", "half"]),
        (["--dtype", "half"], None, ["--dtype", "half"]),
    ],
)
def test_split_model(args, model, rest):
    assert vllm_flags.split_model(args) == (model, rest)


def test_every_declared_flag_exists_in_installed_vllm():
    for param in PARAMETERS:
        if param.feeds == "vllm_flag":
            assert vllm_flags.dest_of(param.vllm_flag) == param.name
