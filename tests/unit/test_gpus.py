"""GPU inventory (count and memory, MIG-aware) and the parallelism planner: data parallel when the
model fits one GPU, the smallest tensor parallel that fits otherwise; the user's flags win."""

import json
import struct

import pytest

from tests.helpers import plan_of
from vllm_dropin.config import runtime_params, vllm_flags
from vllm_dropin.errors import ConfigError
from vllm_dropin.launch import vllm_command
from vllm_dropin.model import footprint
from vllm_dropin.model.footprint import Weights
from vllm_dropin.planning import gpus, parallel
from vllm_dropin.planning.gpus import GpuInventory
from vllm_dropin.planning.parallel import ParallelInputs

TWO = "GPU 0: NVIDIA H200 (UUID: GPU-a)\nGPU 1: NVIDIA H200 (UUID: GPU-b)\n"
TWO_MEMORY = "0, 143771\n1, 143771\n"
MIG = (
    "GPU 0: NVIDIA H100 (UUID: GPU-a)\n"
    "  MIG 3g.40gb     Device  0: (UUID: MIG-1)\n"
    "  MIG 3g.40gb     Device  1: (UUID: MIG-2)\n"
    "GPU 1: NVIDIA H100 (UUID: GPU-b)\n"
)
MIG_MEMORY = "0, 81559\n1, 81559\n"


@pytest.mark.parametrize(
    ("environ", "listing", "memory", "expected"),
    [
        ({}, None, None, GpuInventory(0, None)),  # no driver: CPU host
        ({}, TWO, TWO_MEMORY, GpuInventory(2, 143771 / 1024)),
        ({}, TWO, None, GpuInventory(2, None)),
        ({}, MIG, MIG_MEMORY, GpuInventory(3, 40.0)),  # two MIG instances + one whole GPU, not 4 lines
        ({"CUDA_VISIBLE_DEVICES": "MIG-2"}, MIG, MIG_MEMORY, GpuInventory(1, 40.0)),
        ({"CUDA_VISIBLE_DEVICES": "GPU-b"}, MIG, MIG_MEMORY, GpuInventory(1, 81559 / 1024)),
        ({"CUDA_VISIBLE_DEVICES": "0"}, TWO, TWO_MEMORY, GpuInventory(1, 143771 / 1024)),
        ({"CUDA_VISIBLE_DEVICES": "1,0"}, TWO, None, GpuInventory(2, None)),
        ({"CUDA_VISIBLE_DEVICES": ""}, TWO, None, GpuInventory(0, None)),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, TWO, None, GpuInventory(0, None)),
        ({"CUDA_VISIBLE_DEVICES": "0,-1,1"}, TWO, TWO_MEMORY, GpuInventory(1, 143771 / 1024)),  # CUDA stops there
        ({"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b"}, None, None, GpuInventory(2, None)),
    ],
)
def test_inventory(environ, listing, memory, expected):
    assert gpus.inventory(environ, listing, memory) == expected


def weights(gib: float, heads: int | None = 32) -> Weights:
    """bfloat16 weights of `gib` as served (two bytes a parameter)."""
    return Weights(int(gib * (1 << 29)), None, "bfloat16", heads, "test")


H100 = 79.6  # GiB as nvidia-smi reports an 80 GB H100
# (mode, GPUs, GiB each, weights GiB, heads, engine flags) -> (tp, pp, dp)
PLANS = [
    ("auto", 2, H100, 2.0, 32, [], (1, 1, 2)),  # the ~1B model: data parallel over both
    ("auto", 4, H100, 15.0, 32, [], (1, 1, 4)),  # 8B bf16 fits one H100 with room
    ("auto", 4, H100, 40.0, 32, [], (2, 1, 2)),  # 20B: must split in two, two replicas
    ("auto", 8, H100, 131.0, 64, [], (4, 1, 2)),  # 70B bf16
    ("auto", 8, H100, 240.0, 64, [], (8, 1, 1)),  # split over all 8
    ("auto", 8, H100, 900.0, 64, [], (8, 1, 1)),  # does not fit at all: all GPUs, vLLM will say OOM
    ("auto", 4, H100, 40.0, 3, [], (3, 1, 1)),  # tp must divide the heads: 2 does not, 3 does
    ("auto", 3, 40.0, 2.0, 32, [], (1, 1, 3)),  # MIG slices count as GPUs
    ("auto", 2, None, 2.0, 32, [], (2, 1, 1)),  # memory unknown: tensor parallel as before
    ("auto", 1, H100, 2.0, 32, [], (1, 1, 1)),
    ("auto", 0, None, 2.0, 32, [], (1, 1, 1)),  # CPU
    ("tensor", 4, H100, 2.0, 32, [], (4, 1, 1)),
    ("data", 4, H100, 40.0, 32, [], (1, 1, 4)),
    ("auto", 8, H100, 2.0, 32, ["-tp", "2"], (2, 1, 1)),  # the user's flags win
    ("auto", 8, H100, 2.0, 32, ["-pp", "2"], (4, 2, 1)),  # ... and tp fills the rest, as before
    ("data", 8, H100, 2.0, 32, ["--pipeline-parallel-size=2", "-dp", "2"], (2, 2, 2)),
    ("auto", 8, H100, 2.0, 32, ["--tensor_parallel_size=4"], (4, 1, 1)),
    ("auto", 2, H100, 40.0, 32, ["--gpu-memory-utilization", "0.5"], (2, 1, 1)),  # a lower share: must split
]


@pytest.mark.parametrize(("mode", "count", "memory", "gib", "heads", "engine", "sizes"), PLANS)
def test_planner(mode, count, memory, gib, heads, engine, sizes):
    inputs = ParallelInputs(mode, GpuInventory(count, memory), weights(gib, heads), None)
    planned = parallel.plan(inputs, vllm_flags.parse(engine, "engine_config.json"))
    assert (planned.tensor, planned.pipeline, planned.data) == sizes, planned.reason
    assert planned.tensor * planned.pipeline * planned.data <= max(count, 1)


def test_the_reason_says_why_in_numbers():
    inputs = ParallelInputs(
        "auto",
        GpuInventory(2, H100),
        Weights(990_000_000, None, "bfloat16", 32, "safetensors headers"),
        None,
    )
    planned = parallel.plan(inputs, {})
    assert planned.flags == ["--data-parallel-size", "2", "--api-server-count", "2"]
    assert planned.reason == (
        "0.99B params, bfloat16 = 2.0 GB of weights (safetensors headers); 2 GPUs of 79.6 GiB, weights may take "
        "35.8 GiB of each: fits one GPU → data parallel 2; 2 vLLM API servers"
    )


@pytest.mark.parametrize(
    ("engine", "count"),
    [(["-tp", "4"], 2), (["-tp", "2", "-pp", "2"], 2), (["-pp", "4"], 2), (["-dp", "2", "-tp", "2"], 3)],
)
def test_more_gpus_than_visible_is_a_clear_error(engine, count, tmp_path):
    settings = runtime_params.parse({"model": "m"})
    with pytest.raises(ConfigError, match=f"GPUs but {count} are visible .* lower -tp, -pp or -dp"):
        vllm_command.build(plan_of(settings, engine, tmp_path, GpuInventory(count, H100)))


def of_folder(folder):
    return footprint.weights(footprint.read_config(folder), footprint.read_tensors(folder))


def _safetensors(path, tensors):
    header = json.dumps(
        {name: {"dtype": dtype, "shape": shape, "data_offsets": [0, 0]} for name, (dtype, shape) in tensors.items()}
    ).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)


def test_footprint_counts_parameters_from_safetensors_headers_only(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "float32", "num_attention_heads": 4}))
    _safetensors(tmp_path / "a.safetensors", {"w": ("F32", [1000, 1000]), "b": ("F32", [1000])})
    _safetensors(tmp_path / "b.safetensors", {"e": ("F32", [10, 100])})
    weights = of_folder(tmp_path)
    found = weights.served(None)  # --dtype auto: float32 is served as bfloat16
    assert (found.parameters, found.dtype, found.weight_bytes, found.attention_heads) == (
        1_002_000,
        "bfloat16",
        2_004_000,
        4,
    )
    assert weights.served("float32").weight_bytes == 4_008_000  # --dtype float32


def test_footprint_of_the_tiny_model_and_the_plan_in_check(tiny_model, tmp_path):
    found = of_folder(tiny_model)
    assert found.parameters and found.source == "safetensors headers"
    settings = runtime_params.parse({"model": str(tiny_model)})
    launch = plan_of(settings, [], tmp_path, GpuInventory(2, H100))
    command = vllm_command.build(launch)
    assert "--data-parallel-size" in command.argv and "fits one GPU → data parallel 2" in command.layout.reason


def test_footprint_estimated_from_config_without_safetensors(tmp_path):
    config = {"hidden_size": 4096, "num_hidden_layers": 32, "vocab_size": 128256, "num_attention_heads": 32,
              "num_key_value_heads": 8, "intermediate_size": 14336, "torch_dtype": "bfloat16"}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    found = of_folder(tmp_path)
    assert 7.9e9 < found.parameters < 8.1e9  # Llama-3-8B has 8.03B
    assert found.source == "estimated from config.json"


@pytest.mark.parametrize(
    ("count", "engine", "params", "rows", "api"),
    [
        (2, [], {}, 1024, ["--api-server-count", "2"]),  # two replicas: 512 rows each, an API server each
        (1, [], {}, 512, []),
        (0, [], {}, 256, []),  # CPU vLLM: 256 a replica
        (2, ["--api-server-count", "1"], {}, 1024, []),  # the user's count wins
        (2, [], {"max_concurrent_rows": 100}, 100, ["--api-server-count", "2"]),  # the user's rows win
        (4, ["-tp", "2"], {}, 512, []),  # the user's tp leaves one replica
    ],
)
def test_rows_in_flight_and_api_servers_follow_the_replicas(tiny_model, tmp_path, count, engine, params, rows, api):
    settings = runtime_params.parse({"model": str(tiny_model), **params})
    launch = plan_of(settings, engine, tmp_path, GpuInventory(count, H100 if count else None))  # cores unknown
    assert launch.batch.max_concurrent_rows == params.get("max_concurrent_rows")  # decided in the vLLM process
    command = vllm_command.build(launch)
    assert command.layout.rows_in_flight == rows
    argv = command.argv
    assert (argv[argv.index("--api-server-count") : argv.index("--api-server-count") + 2] if api else []) == api


@pytest.mark.parametrize(
    ("gpus", "cpus", "engine", "api"),
    [
        (1, 16, [], "2"),  # one engine on a GPU: a second Python front end
        (1, 8, [], "2"),
        (1, 7, [], None),  # too few cores to give it one
        (1, None, [], None),  # cores not known
        (0, 16, [], None),  # no GPU: vLLM on CPU keeps one front end
        (4, 16, [], "4"),  # four replicas: one each
        (1, 16, ["--api-server-count", "1"], None),  # the user's count wins
        (2, 16, ["-dp", "2", "--data-parallel-external-lb"], None),  # vLLM's own front-end modes
        (2, 16, ["-dp", "2", "--data-parallel-rank", "0"], None),  # rank 0 is set too
        (1, 16, ["-tp", "1"], "2"),  # the user's sizes leave one engine on a GPU
    ],
)
def test_a_gpu_engine_gets_a_second_api_server_where_the_host_has_the_cores(
    tiny_model, tmp_path, gpus, cpus, engine, api
):
    settings = runtime_params.parse({"model": str(tiny_model)})
    command = vllm_command.build(plan_of(settings, engine, tmp_path, GpuInventory(gpus, H100), cpus=cpus))
    argv = command.argv
    given = argv[argv.index("--api-server-count") + 1] if "--api-server-count" in argv else None
    assert given == (api if api or "--api-server-count" not in engine else "1")
    if api:
        assert command.layout.reason.endswith(f"; {api} vLLM API servers")
    assert command.layout.api_servers == int(api or given or 1)


@pytest.mark.parametrize(("count", "tensor", "data", "fits"), [(8, 4, 2, True), (4, 4, 1, True), (2, 2, 1, False)])
def test_a_70b_shaped_model_is_split_over_the_fewest_gpus_that_hold_it(tmp_path, count, tensor, data, fits):
    """Llama-3-70B's shape (70.55B parameters, bf16: 141 GB): half of vLLM's share of an H100 holds
    35.8 GiB, so each replica takes 4 GPUs; over 2 it is planned anyway, and the plan says it may not fit."""
    config = {"hidden_size": 8192, "num_hidden_layers": 80, "vocab_size": 128256, "num_attention_heads": 64,
              "num_key_value_heads": 8, "intermediate_size": 28672, "torch_dtype": "bfloat16"}  # fmt: skip
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    settings = runtime_params.parse({"model": str(tmp_path / "model")})
    layout = vllm_command.build(plan_of(settings, [], tmp_path, GpuInventory(count, H100), cpus=64)).layout
    assert (layout.tensor, layout.data, layout.api_servers) == (tensor, data, max(data, 2))
    assert layout.reason.startswith("70.55B params, bfloat16 = 141.1 GB of weights (estimated from config.json)")
    assert ("does not fit even over" in layout.reason) is not fits
