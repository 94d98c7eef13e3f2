"""The planning stage: the config and the model's facts combined, once, into the `LaunchPlan`.

Pure: the same inputs give the same plan. Built in the supervisor without vLLM (its parser
takes seconds to import); the vLLM process receives it as JSON and turns it into vLLM's argv with
vLLM's own parser (`launch.vllm_command`), deciding the parallel layout there.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vllm_dropin.config import Config, vllm_flags
from vllm_dropin.config.batch import with_schema_file
from vllm_dropin.config.settings import PARAMETERS, Settings
from vllm_dropin.contract import BatchSettings
from vllm_dropin.errors import ConfigError
from vllm_dropin.model import lora, lora_store
from vllm_dropin.model.artifacts import streaming
from vllm_dropin.model.facts import ModelFacts
from vllm_dropin.model.footprint import Weights
from vllm_dropin.model.lora import Adapter
from vllm_dropin.model.source import ModelSource
from vllm_dropin.planning.gpus import GpuInventory
from vllm_dropin.planning.parallel import ParallelInputs

NO_GPU = GpuInventory(0, None)
CPU_ROWS_PER_REPLICA = 256  # rows of a batch in flight per CPU vLLM replica: enough for its continuous batching
# On GPUs: vLLM's largest CUDA graph batch by default (min(2 x max_num_seqs, 512)); decode steps of
# more sequences run without graphs.
GPU_ROWS_PER_REPLICA = 512


@dataclass(frozen=True)
class LaunchPlan:
    """Everything `serve` launches with; the HF token is the only part that never travels as JSON."""

    model: ModelSource
    engine_args: list[str]  # engine_config.json's flags as written; they override param_flags
    param_flags: dict[str, list[str]]  # runtime parameter -> the `vllm serve` flag (and value) it sets
    parallel: ParallelInputs  # the vLLM process decides the layout, with the parsed flags
    batch: BatchSettings  # max_concurrent_rows as set (None: the vLLM process decides)
    cache_dir: Path
    startup_timeout: int
    verify_ssl: bool
    request_log: bool = True  # DRUM's workers log a JSON line per request
    engine_env: dict[str, str] = field(default_factory=dict)  # from parameters that feed vLLM's env
    adapters: list[Adapter] = field(default_factory=list)  # LoRA adapters found in the model folder
    adapter_store: bool = False  # lora_adapters_uri is set: vLLM loads adapters while serving
    hub_mirror: str | None = None  # HF_ENDPOINT for vLLM's own hub downloads
    hf_token: str | None = field(default=None, repr=False, compare=False)
    store_env: dict[str, str] = field(default_factory=dict, repr=False, compare=False)  # the streamer's (keys)

    def to_json(self) -> str:
        data = asdict(self)
        del data["hf_token"], data["store_env"]
        data["cache_dir"] = str(self.cache_dir)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> LaunchPlan:
        data = json.loads(text)
        parallel = data["parallel"]
        found = [Adapter(**{**a, "target_modules": _modules(a["target_modules"])}) for a in data["adapters"]]
        weights = parallel["weights"] and Weights(**parallel["weights"])
        return cls(
            **{
                **data,
                "model": ModelSource(**data["model"]),
                "parallel": ParallelInputs(
                    **{**parallel, "gpus": GpuInventory(**parallel["gpus"]), "weights": weights}
                ),
                "batch": BatchSettings(**data["batch"]),
                "cache_dir": Path(data["cache_dir"]),
                "adapters": found,
            }
        )


def _modules(value: list[str] | str) -> tuple[str, ...] | str:
    return value if isinstance(value, str) else tuple(value)


def rows_in_flight(batch: BatchSettings, data_parallel: int, gpus: int) -> int:
    """A batch's rows in flight: as set, else GPU_ROWS_PER_REPLICA (CPU_ROWS_PER_REPLICA without GPUs)
    for each data-parallel replica vLLM runs."""
    if batch.max_concurrent_rows is not None:
        return batch.max_concurrent_rows
    return (GPU_ROWS_PER_REPLICA if gpus else CPU_ROWS_PER_REPLICA) * data_parallel


def _check_lora_choice(settings: Settings, found: list[Adapter], engine_args: list[str], store: bool) -> None:
    """The batch's adapter must be one vLLM will serve (unless engine_config.json lists its own, or
    it may come from lora_adapters_uri)."""
    if settings.lora_adapter is None or store or vllm_flags.long_flag(engine_args, "lora_modules") is not None:
        return
    names = [a.name for a in found]
    if settings.lora_adapter not in names:
        served = ", ".join(names) or f"none: add folders under ${{CODE_DIR}}/{lora.ADAPTERS_DIR}/"
        raise ConfigError(f"runtime parameter 'lora_adapter': no such adapter; adapters found: {served}")


def build(config: Config, facts: ModelFacts, gpus: GpuInventory = NO_GPU, cpus: int | None = None) -> LaunchPlan:
    """The plan, or ConfigError on any problem found without vLLM's parser.

    `cpus`: the cores the deployment may use (None: not known)."""
    settings = config.settings
    store = lora_store.store_uri(settings) is not None
    _check_lora_choice(settings, facts.adapters, config.engine_args, store)
    return LaunchPlan(
        model=facts.source,
        engine_args=list(config.engine_args),
        param_flags=config.param_flags,
        parallel=ParallelInputs(
            settings.parallelism, gpus, facts.weights, settings.gpu_memory_utilization, cpus=cpus, one_api_server=store
        ),
        batch=with_schema_file(config.batch, settings, facts.schema_text),
        cache_dir=config.cache_dir,
        startup_timeout=settings.startup_timeout_seconds,
        verify_ssl=settings.verifySSL,
        request_log=settings.request_log,
        engine_env={
            p.env_var: str(getattr(settings, p.name))
            for p in PARAMETERS
            if p.env_var and getattr(settings, p.name) is not None
        },
        adapters=facts.adapters,
        adapter_store=store,
        hub_mirror=settings.hub_mirror_url,
        hf_token=settings.hf_token,
        store_env=streaming.vllm_env(settings) if facts.source.weights else {},
    )
