"""The launch plan: runtime parameters, engine_config flags and the model source, combined once.

Pure: the same inputs give the same plan. Built in the supervisor without vLLM (its parser
takes seconds to import); the vLLM process receives it as JSON and turns it into vLLM's argv
with vLLM's own parser (`vllm_command`). `check` and `serve` build it with the same `prepare()`.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import adapters, batch_config, footprint, model_source, parallel, vllm_flags
from .adapters import Adapter
from .artifacts import fetch as artifacts
from .contract import BatchSettings
from .errors import ConfigError
from .footprint import ModelFootprint
from .gpus import GpuInventory
from .model_source import ModelSource
from .parallel import ParallelInputs
from .settings import PARAMETERS, Settings

DEFAULT_CACHE_DIR = Path(tempfile.gettempdir()) / "vllm-dropin-cache"
NO_GPU = GpuInventory(0, None)
CPU_ROWS_PER_REPLICA = 256  # rows of a batch in flight per CPU vLLM replica: enough for its continuous batching
# On GPUs, vLLM's largest CUDA graph batch by default (min(2 x max_num_seqs, 512)): decode steps of more
# sequences run without graphs (H100, ~1B model, 128 tokens a row, bench/README.md session 8: 1024 in
# flight 0.80x the rows/s of 512 on 2048 rows; 512 against 256: 1.24x on 2048 rows, 1.13x on 1024,
# 0.96x on 512).
GPU_ROWS_PER_REPLICA = 512


@dataclass(frozen=True)
class LaunchPlan:
    """Everything `serve` launches with; the HF token is the only part that never travels as JSON."""

    model: ModelSource
    engine_args: list[str]  # engine_config.json's flags as written; they override param_flags
    param_flags: dict[str, list[str]]  # runtime parameter -> the `vllm serve` flag (and value) it sets
    parallel: ParallelInputs  # the planner decides in the vLLM process, with the parsed flags
    batch: BatchSettings
    cache_dir: Path
    startup_timeout: int
    verify_ssl: bool
    engine_env: dict[str, str] = field(default_factory=dict)  # from parameters that feed vLLM's env
    adapters: list[Adapter] = field(default_factory=list)  # LoRA adapters found in the model folder
    hub_mirror: str | None = None  # HF_ENDPOINT for vLLM's own hub downloads
    hf_token: str | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> str:
        data = asdict(self)
        del data["hf_token"]
        data["cache_dir"] = str(self.cache_dir)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> LaunchPlan:
        data = json.loads(text)
        parallel = data["parallel"]
        found = [Adapter(**{**a, "target_modules": _modules(a["target_modules"])}) for a in data["adapters"]]
        footprint = parallel["model"] and ModelFootprint(**parallel["model"])
        return cls(
            **{
                **data,
                "model": ModelSource(**data["model"]),
                "parallel": ParallelInputs(
                    **{**parallel, "gpus": GpuInventory(**parallel["gpus"]), "model": footprint}
                ),
                "batch": BatchSettings(**data["batch"]),
                "cache_dir": Path(data["cache_dir"]),
                "adapters": found,
            }
        )


def _modules(value: list[str] | str) -> tuple[str, ...] | str:
    return value if isinstance(value, str) else tuple(value)


def _check_lora_choice(settings: Settings, found: list[Adapter], engine_args: list[str]) -> None:
    """The batch's adapter must be one vLLM will serve (unless engine_config.json lists its own)."""
    if settings.lora_adapter is None or vllm_flags.long_flag(engine_args, "lora_modules") is not None:
        return
    names = [a.name for a in found]
    if settings.lora_adapter not in names:
        served = ", ".join(names) or f"none: add folders under ${{CODE_DIR}}/{adapters.ADAPTERS_DIR}/"
        raise ConfigError(f"runtime parameter 'lora_adapter': no such adapter; adapters found: {served}")


def _param_flags(settings: Settings) -> dict[str, list[str]]:
    flags: dict[str, list[str]] = {}
    for param in PARAMETERS:
        value = getattr(settings, param.name)
        if param.vllm_flag is None or value is None or value is False:
            continue
        flags[param.name] = [param.vllm_flag] if value is True else [param.vllm_flag, str(value)]
    return flags


def _parallel(
    settings: Settings, engine_args: list[str], model: ModelSource, gpus: GpuInventory, cpus: int | None
) -> ParallelInputs:
    """The planner's inputs; the weights are read only where there are GPUs to plan for."""
    dtype = vllm_flags.long_flag(engine_args, "dtype")
    folder = Path(model.ref)
    weights = (
        footprint.of_folder(folder, dtype if isinstance(dtype, str) else None)
        if gpus.count and model.local and folder.is_dir()
        else None
    )
    return ParallelInputs(settings.parallelism, gpus, weights, settings.gpu_memory_utilization, cpus=cpus)


def _batch(
    settings: Settings, inputs: ParallelInputs, engine_args: list[str], code_dir: Path, hook_pending: bool = False
) -> BatchSettings:
    """The batch parameters, checked and resolved (batch_config); rows in flight default to
    GPU_ROWS_PER_REPLICA (CPU_ROWS_PER_REPLICA without GPUs) for each data-parallel replica."""
    values = {p.name: getattr(settings, p.name) for p in PARAMETERS if p.feeds == "batch"}
    values |= batch_config.resolve(settings, code_dir, hook_pending)
    if values["max_concurrent_rows"] is None:
        try:
            replicas = parallel.plan(inputs, parallel.sizes_in(engine_args)).data
        except ConfigError:
            replicas = 1  # the vLLM process names impossible sizes with vLLM's own reading of the flags
        per_replica = GPU_ROWS_PER_REPLICA if inputs.gpus.count else CPU_ROWS_PER_REPLICA
        values["max_concurrent_rows"] = per_replica * replicas
    return BatchSettings(**values)


def _from_folder(
    settings: Settings, engine_args: list[str], code_dir: Path, gpus: GpuInventory, hook_pending: bool, cpus: int | None
) -> dict:
    """The parts of the plan that depend on what the model folder holds (which load_model may change)."""
    engine_model, _ = vllm_flags.split_model(engine_args)
    uri = artifacts.uri_of(settings)
    artifact = (artifacts.place(uri, cache_dir(settings)), uri.shown) if uri else None
    model = model_source.resolve(engine_model, code_dir, settings.model, hook_pending, artifact)
    inputs = _parallel(settings, engine_args, model, gpus, cpus)
    found = adapters.discover(code_dir)
    if not hook_pending:  # else checked once load_model, which may place adapters, has run
        _check_lora_choice(settings, found, engine_args)
    batch = _batch(settings, inputs, engine_args, code_dir, hook_pending)
    return {"model": model, "parallel": inputs, "batch": batch, "adapters": found}


def cache_dir(settings: Settings) -> Path:
    return Path(settings.cache_dir) if settings.cache_dir else DEFAULT_CACHE_DIR


def build(
    settings: Settings,
    engine_args: list[str],
    code_dir: Path,
    gpus: GpuInventory = NO_GPU,
    hook_pending: bool = False,
    cpus: int | None = None,
) -> LaunchPlan:
    """The plan, or ConfigError on any problem found without vLLM's parser.

    `hook_pending`: load_model has yet to run; `settle_model` decides the model once it has.
    `cpus`: the cores the deployment may use (None: not known)."""
    return LaunchPlan(
        **_from_folder(settings, engine_args, code_dir, gpus, hook_pending, cpus),
        engine_args=list(engine_args),
        param_flags=_param_flags(settings),
        cache_dir=cache_dir(settings),
        startup_timeout=settings.startup_timeout_seconds,
        verify_ssl=settings.verifySSL,
        engine_env={
            p.env_var: str(getattr(settings, p.name))
            for p in PARAMETERS
            if p.env_var and getattr(settings, p.name) is not None
        },
        hub_mirror=settings.hub_mirror_url,
        hf_token=settings.hf_token,
    )


def settle_model(plan: LaunchPlan, settings: Settings, code_dir: Path) -> LaunchPlan:
    """The plan once load_model has run: the model source no longer assumes the hook fills its folder,
    and adapters or a schema file it placed are read."""
    parts = _from_folder(
        settings, plan.engine_args, code_dir, plan.parallel.gpus, hook_pending=False, cpus=plan.parallel.cpus
    )
    return dataclasses.replace(plan, **parts)
