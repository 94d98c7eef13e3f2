"""How the model is spread over the visible GPUs: tensor parallel where it must, data parallel where it can.

Pure: (mode, GPU inventory, the model's weights, the user's flags as vLLM's parser read them) ->
flags and the reason. It runs once, in the vLLM process, where the parser is loaded; DRUM's workers
and the supervisor learn the layout from what that process reports (`contract.Layout`).

Rule of `auto`: a model whose weights take at most half of vLLM's share of one GPU
(`gpu_memory_utilization` x the GPU's memory) runs whole on each GPU, data parallel over all of
them: no per-token communication, and each replica keeps the other half for its KV cache.
Otherwise the smallest
tensor-parallel size that divides the attention heads and brings each GPU's share of the weights
under that half, with data parallel over the GPUs left. The user's -tp/-pp/-dp always win.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vllm_dropin.errors import ConfigError
from vllm_dropin.model.footprint import Weights
from vllm_dropin.planning.gpus import GpuInventory

SIZE_DESTS = ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size")
SHORT_FLAGS = {"-tp": "tensor_parallel_size", "-pp": "pipeline_parallel_size", "-dp": "data_parallel_size"}
WEIGHT_SHARE = 0.5  # of vLLM's share of one GPU that the weights may take; the rest is KV cache
DEFAULT_UTILIZATION = 0.9  # vLLM's --gpu-memory-utilization default


@dataclass(frozen=True)
class ParallelInputs:
    """What the supervisor knows for the planner; the vLLM process decides with the parsed flags."""

    mode: str  # runtime parameter 'parallelism'
    gpus: GpuInventory
    weights: Weights | None  # None: a hub model, or a folder that does not tell
    utilization: float | None  # runtime parameter 'gpu_memory_utilization'
    nodes: int = 1  # Ray nodes (runtime parameter ray_nodes); `gpus` then counts the whole cluster's
    cpus: int | None = None  # CPU cores this process may run on (None: not known)
    one_api_server: bool = False  # adapters are loaded while serving, which vLLM allows on one API server only


@dataclass(frozen=True)
class ParallelPlan:
    tensor: int
    pipeline: int
    data: int
    flags: list[str]  # what the environment adds to vLLM's argv (none for what the user set)
    reason: str
    api_servers: int | None = None  # the count the environment sets; None: vLLM's (or the user's)


def _flags(tp: int, dp: int) -> list[str]:
    return [
        *(["--tensor-parallel-size", str(tp)] if tp > 1 else []),
        *(["--data-parallel-size", str(dp)] if dp > 1 else []),
    ]


GPU_API_SERVERS = 2  # vLLM API server processes for one engine on a GPU, on hosts with the cores for them
GPU_API_SERVERS_MIN_CPUS = 8  # the engine core, the API servers and DRUM's workers each want a core
# Flags with which vLLM runs no API server here or balances replicas itself: a count would clash.
OWN_FRONT_END = ("headless", "data_parallel_external_lb", "data_parallel_hybrid_lb", "data_parallel_rank")


def api_servers(planned: ParallelPlan, inputs: ParallelInputs) -> int:
    """vLLM API server processes: one per data-parallel replica (one HTTP front end limits several
    engines), and GPU_API_SERVERS for a single engine on GPUs where the host has the cores: one
    Python front end, not the GPU, limits an engine serving many short requests (bench/README.md)."""
    enough_cpus = inputs.cpus is not None and inputs.cpus >= GPU_API_SERVERS_MIN_CPUS
    return max(planned.data, GPU_API_SERVERS if inputs.gpus.count and enough_cpus else 1)


def with_api_servers(planned: ParallelPlan, inputs: ParallelInputs, explicit: Mapping[str, object]) -> ParallelPlan:
    """The plan with `api_servers` of them unless the user sets a count (or a front-end mode); one,
    set even where vLLM would run one per replica, when adapters are loaded while serving."""
    if inputs.one_api_server:
        return _one_api_server(planned, explicit)
    count = api_servers(planned, inputs)
    own_front_end = any(flag in explicit and explicit[flag] is not False for flag in OWN_FRONT_END)  # rank 0 too
    if count <= 1 or "api_server_count" in explicit or own_front_end:
        return planned
    flags = [*planned.flags, "--api-server-count", str(count)]
    reason = f"{planned.reason}; {count} vLLM API servers"
    return ParallelPlan(planned.tensor, planned.pipeline, planned.data, flags, reason, count)


def _one_api_server(planned: ParallelPlan, explicit: Mapping[str, object]) -> ParallelPlan:
    count = explicit.get("api_server_count")
    if count is not None and str(count) != "1":
        raise ConfigError(
            f"engine_config.json: --api-server-count {count} cannot serve lora_adapters_uri: vLLM loads adapters "
            "while serving with one API server only; remove the flag or lora_adapters_uri"
        )
    if count is not None or planned.data == 1:
        return ParallelPlan(planned.tensor, planned.pipeline, planned.data, planned.flags, planned.reason, 1)
    flags = [*planned.flags, "--api-server-count", "1"]
    reason = f"{planned.reason}; one vLLM API server (lora_adapters_uri)"
    return ParallelPlan(planned.tensor, planned.pipeline, planned.data, flags, reason, 1)


def _tensor_sizes(gpus: int, heads: int | None) -> list[int]:
    """Tensor-parallel sizes vLLM accepts on these GPUs: divisors of the attention heads, at most `gpus`."""
    return [tp for tp in range(1, gpus + 1) if heads is None or heads % tp == 0]


def _size(explicit: Mapping[str, object], dest: str) -> int | None:
    """A size the user set, as a whole number >= 1; ConfigError naming the flag for anything else
    (read without vLLM's parser, a flag may hold the next flag or nothing)."""
    value = explicit.get(dest)
    if value is None:
        return None
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str) and value.isdigit():
        number = int(value)
    if number is None or number < 1:
        shown = "nothing" if value is True else repr(value)[:40]
        raise ConfigError(f"engine_config.json: --{dest.replace('_', '-')} needs a whole number >= 1, got {shown}")
    return number


def _user(explicit: Mapping[str, object], gpus: int) -> ParallelPlan:
    tp_set = _size(explicit, "tensor_parallel_size")
    pp = _size(explicit, "pipeline_parallel_size") or 1
    dp = _size(explicit, "data_parallel_size") or 1
    tp = tp_set if tp_set is not None else max(1, gpus // (pp * dp))
    needed = tp * pp * dp
    if needed > gpus:
        raise ConfigError(
            f"engine_config.json: tensor parallel {tp} x pipeline parallel {pp} x data parallel {dp} needs "
            f"{needed} GPUs but {gpus} are visible (CUDA_VISIBLE_DEVICES / nvidia-smi -L); lower -tp, -pp or -dp"
        )
    flags = ["--tensor-parallel-size", str(tp)] if tp_set is None and tp > 1 else []
    return ParallelPlan(tp, pp, dp, flags, "engine_config.json sets the parallel sizes; the rest fills the GPUs")


def plan(inputs: ParallelInputs, explicit: Mapping[str, object]) -> ParallelPlan:
    """The parallel sizes for the mode (auto | tensor | data), with an API server per replica;
    ConfigError for impossible user sizes.

    `explicit`: the engine flags as vLLM's parser read them (they win; a flag's utilization too)."""
    if inputs.nodes > 1:
        return _over_nodes(inputs, explicit)
    return with_api_servers(_sizes(inputs, explicit), inputs, explicit)


RAY_EXECUTOR = ["--distributed-executor-backend", "ray"]


def _over_nodes(inputs: ParallelInputs, explicit: Mapping[str, object]) -> ParallelPlan:
    """A Ray cluster: one engine over every node's GPUs through vLLM's Ray executor. 'auto' follows
    vLLM's advice for several nodes (tensor parallel within a node, pipeline parallel across them);
    data parallel replicas would be separate deployments, so they are not planned here."""
    gpus, nodes = inputs.gpus.count, inputs.nodes
    executor = [] if "distributed_executor_backend" in explicit else RAY_EXECUTOR
    if set(SIZE_DESTS) & explicit.keys():
        user = _user(explicit, gpus)
        return ParallelPlan(user.tensor, user.pipeline, user.data, [*user.flags, *executor], user.reason)
    if inputs.mode == "data":
        raise ConfigError(
            "runtime parameter 'parallelism': 'data' over a Ray cluster is not planned (each replica would be "
            "its own deployment); use 'auto' or 'tensor', or set -tp/-pp/-dp in engine_config.json"
        )
    if inputs.mode == "tensor":
        tp, pp, why = gpus, 1, f"parallelism=tensor over {nodes} Ray nodes: tensor parallel {gpus}"
    else:
        tp, pp = max(1, gpus // nodes), nodes
        why = f"{nodes} Ray nodes, {gpus} GPUs: tensor parallel {tp} within each node x pipeline parallel {pp}"
    flags = [*(["--tensor-parallel-size", str(tp)] if tp > 1 else [])]
    flags += ["--pipeline-parallel-size", str(pp)] if pp > 1 else []
    return ParallelPlan(tp, pp, 1, [*flags, *executor], why)


def _sizes(inputs: ParallelInputs, explicit: Mapping[str, object]) -> ParallelPlan:
    mode, gpus = inputs.mode, inputs.gpus
    dtype = explicit.get("dtype")
    model = inputs.weights.served(dtype if isinstance(dtype, str) else None) if inputs.weights else None
    utilization = explicit.get("gpu_memory_utilization") or inputs.utilization
    if gpus.count <= 0:
        return ParallelPlan(1, 1, 1, [], "no GPU visible: vLLM's own defaults")
    if set(SIZE_DESTS) & explicit.keys():
        return _user(explicit, gpus.count)
    heads = model.attention_heads if model else None
    sizes = _tensor_sizes(gpus.count, heads)
    if mode == "data":
        return ParallelPlan(1, 1, gpus.count, _flags(1, gpus.count), f"parallelism=data: data parallel {gpus.count}")
    if mode == "tensor" or model is None or gpus.memory_gib is None:
        tp = max(sizes)
        why = (
            "parallelism=tensor"
            if mode == "tensor"
            else "model size or GPU memory unknown (a hub model is not read before launch)"
        )
        dp = gpus.count // tp
        return ParallelPlan(
            tp, 1, dp, _flags(tp, dp), f"{why}: tensor parallel {tp}" + (f" x data parallel {dp}" if dp > 1 else "")
        )
    budget = gpus.memory_gib * float(utilization or DEFAULT_UTILIZATION) * WEIGHT_SHARE
    weights = model.weight_gib
    about = f"{model.describe()}; {gpus.describe()}, weights may take {budget:.1f} GiB of each"
    for tp in sizes:
        if weights / tp <= budget:
            dp = gpus.count // tp
            if tp == 1:
                return ParallelPlan(1, 1, dp, _flags(1, dp), f"{about}: fits one GPU → data parallel {dp}")
            return ParallelPlan(
                tp,
                1,
                dp,
                _flags(tp, dp),
                f"{about}: needs tensor parallel {tp} → tensor parallel {tp} x data parallel {dp}",
            )
    tp = max(sizes)
    return ParallelPlan(
        tp,
        1,
        1,
        _flags(tp, 1),
        f"{about}: does not fit even over {tp} GPUs → tensor parallel {tp} (may run out of memory)",
    )
