"""GPU counting and tensor-parallel defaults: the user's flags win; never more GPUs than visible."""

import pytest

from vllm_dropin import gpus, plan, runtime_params, vllm_command, vllm_flags
from vllm_dropin.errors import ConfigError

TWO = "GPU 0: NVIDIA H200 (UUID: GPU-a)\nGPU 1: NVIDIA H200 (UUID: GPU-b)\n"
MIG = (
    "GPU 0: NVIDIA H100 (UUID: GPU-a)\n"
    "  MIG 3g.40gb     Device  0: (UUID: MIG-1)\n"
    "  MIG 3g.40gb     Device  1: (UUID: MIG-2)\n"
    "GPU 1: NVIDIA H100 (UUID: GPU-b)\n"
)


@pytest.mark.parametrize(
    ("environ", "listing", "expected"),
    [
        ({}, None, 0),  # no driver: CPU host
        ({}, TWO, 2),
        ({}, MIG, 3),  # two MIG instances + one whole GPU, not 4 lines
        ({"CUDA_VISIBLE_DEVICES": "0"}, TWO, 1),
        ({"CUDA_VISIBLE_DEVICES": "1,0"}, TWO, 2),
        ({"CUDA_VISIBLE_DEVICES": ""}, TWO, 0),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, TWO, 0),
        ({"CUDA_VISIBLE_DEVICES": "0,-1,1"}, TWO, 1),  # CUDA stops at the first invalid entry
        ({"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b"}, None, 2),
    ],
)
def test_count_visible(environ, listing, expected):
    assert gpus.count_visible(environ, listing) == expected


@pytest.mark.parametrize(
    ("engine", "visible", "expected_flags"),
    [
        ([], 0, []),
        ([], 1, []),
        ([], 2, ["--tensor-parallel-size", "2"]),
        ([], 8, ["--tensor-parallel-size", "8"]),
        (["-pp", "2"], 8, ["--tensor-parallel-size", "4"]),
        (["--pipeline-parallel-size=2", "-dp", "2"], 8, ["--tensor-parallel-size", "2"]),
        (["-tp", "1"], 8, []),  # the user's choice wins
        (["--tensor-parallel-size", "2", "-pp", "2"], 4, []),
        (["--tensor_parallel_size=4"], 8, []),
    ],
)
def test_parallelism_defaults(engine, visible, expected_flags):
    explicit = vllm_flags.parse(engine, "engine_config.json")
    assert vllm_command.parallelism_flags(explicit, visible) == expected_flags


def test_default_tensor_parallel_reaches_vllms_arguments(tmp_path):
    settings = runtime_params.parse({"model": "m"})
    args = vllm_command.build(plan.build(settings, [], tmp_path, visible_gpus=4)).argv
    i = args.index("--tensor-parallel-size")
    assert args[i + 1] == "4"


@pytest.mark.parametrize(
    ("engine", "visible"),
    [(["-tp", "4"], 2), (["-tp", "2", "-pp", "2"], 2), (["-pp", "4"], 2), (["-dp", "2", "-tp", "2"], 3)],
)
def test_more_gpus_than_visible_is_a_clear_error(engine, visible, tmp_path):
    settings = runtime_params.parse({"model": "m"})
    with pytest.raises(ConfigError, match=f"GPUs but {visible} are visible .* lower -tp, -pp or -dp"):
        vllm_command.build(plan.build(settings, engine, tmp_path, visible))
