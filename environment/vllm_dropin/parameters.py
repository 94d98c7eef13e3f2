"""Every runtime parameter, declared once: type, default, bounds, help, and what it feeds.

Parsing (`runtime_params`), vLLM argument building (`plan`), the `check` report, the model
template's `model-metadata.yaml` and the README table are derived from or tested against this
table, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ParamType = Literal["string", "numeric", "boolean", "credential"]
Feeds = Literal["model", "hf_token", "vllm_flag", "vllm_env", "batch", "platform", "launch"]


@dataclass(frozen=True)
class Parameter:
    """One runtime parameter (env `MLOPS_RUNTIME_PARAM_<name>`)."""

    name: str
    type: ParamType
    help: str
    feeds: Feeds
    default: Any = None
    integer: bool = False
    minimum: float | None = None
    minimum_exclusive: bool = False
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    vllm_flag: str | None = None  # for feeds == "vllm_flag": the `vllm serve` flag it sets
    env_var: str | None = None  # for feeds == "vllm_env": the variable it sets in vLLM's environment

    def bounds_text(self) -> str:
        """Human-readable range, used in error messages and docs."""
        low = "" if self.minimum is None else f"{'>' if self.minimum_exclusive else '>='} {self.minimum:g}"
        high = "" if self.maximum is None else f"<= {self.maximum:g}"
        return " and ".join(part for part in (low, high) if part)


PARAMETERS: tuple[Parameter, ...] = (
    Parameter(
        "model",
        "string",
        feeds="model",
        help="Hugging Face model id or a local folder to serve. Used when engine_config.json has "
        "no --model and load_model did not fill ${CODE_DIR}/vllm/.",
    ),
    Parameter(
        "HuggingFaceToken",
        "credential",
        feeds="hf_token",
        help="API token credential for gated Hugging Face models. Reaches vLLM only through its "
        "environment (HF_TOKEN), only when the model comes from the hub.",
    ),
    Parameter(
        "max_model_len",
        "numeric",
        feeds="vllm_flag",
        vllm_flag="--max-model-len",
        integer=True,
        minimum=1,
        help="Context length (prompt + output tokens). Unset: the model's own maximum. Lower it "
        "when the KV cache does not fit in GPU memory.",
    ),
    Parameter(
        "gpu_memory_utilization",
        "numeric",
        feeds="vllm_flag",
        vllm_flag="--gpu-memory-utilization",
        minimum=0,
        minimum_exclusive=True,
        maximum=1,
        help="Fraction of each GPU's memory vLLM may use, in (0, 1]. Unset: vLLM's default (0.9).",
    ),
    Parameter(
        "trust_remote_code",
        "boolean",
        feeds="vllm_flag",
        vllm_flag="--trust-remote-code",
        default=False,
        help="Run Python code shipped with the model (needed by some architectures). Off unless "
        "you trust the model's source.",
    ),
    Parameter(
        "system_prompt",
        "string",
        feeds="batch",
        help="System message put before every prompt of a batch prediction. Unset: none.",
    ),
    Parameter(
        "prompt_column_name",
        "string",
        feeds="batch",
        default="promptText",
        help="Column of the batch CSV that holds the prompts.",
    ),
    Parameter(
        "max_tokens",
        "numeric",
        feeds="batch",
        default=256,
        integer=True,
        minimum=1,
        help="Maximum number of tokens generated per row of a batch prediction.",
    ),
    Parameter(
        "n",
        "numeric",
        feeds="batch",
        default=1,
        integer=True,
        minimum=1,
        help="Completions per row. The first goes to the target column, the others to extra "
        "columns choice_2 ... choice_n.",
    ),
    Parameter(
        "temperature",
        "numeric",
        feeds="batch",
        minimum=0,
        help="Sampling temperature for batch predictions; 0 means greedy (deterministic). "
        "Unset: the model's generation_config default.",
    ),
    Parameter(
        "verifySSL",
        "boolean",
        feeds="platform",
        default=True,
        help="Verify TLS certificates when posting deployment status events to DataRobot.",
    ),
    Parameter(
        "startup_timeout_seconds",
        "numeric",
        feeds="launch",
        default=1800,
        integer=True,
        minimum=1,
        help="How long vLLM may take to become healthy (download, load, compile) before startup "
        "fails with the tail of its log.",
    ),
    Parameter(
        "max_concurrent_rows",
        "numeric",
        feeds="batch",
        default=256,
        integer=True,
        minimum=1,
        help="How many rows of one batch prediction are in flight to vLLM at once; vLLM's "
        "continuous batching needs many.",
    ),
    Parameter(
        "row_errors",
        "string",
        feeds="batch",
        default="fail",
        choices=("fail", "column"),
        help="'fail': a batch with a bad row (empty prompt, rejected by vLLM) fails with an error "
        "naming each such row. 'column': bad rows get their reason in an extra 'error' column.",
    ),
    Parameter(
        "cache_dir",
        "string",
        feeds="launch",
        help="Writable folder for Hugging Face downloads and vLLM's compile cache. Keep it on a "
        "persistent volume to restart faster. Unset: $HF_HOME / $VLLM_CACHE_ROOT if set, else "
        "a folder under the system temp dir.",
    ),
    Parameter(
        "cpu_kvcache_space_gib",
        "numeric",
        feeds="vllm_env",
        env_var="VLLM_CPU_KVCACHE_SPACE",
        integer=True,
        minimum=1,
        help="CPU variant only: GiB of memory for vLLM's KV cache; keep it well below the "
        "container's memory. Unset: the image's VLLM_CPU_KVCACHE_SPACE (4). GPUs: use "
        "gpu_memory_utilization.",
    ),
    Parameter(
        "cpu_omp_threads_bind",
        "string",
        feeds="vllm_env",
        env_var="VLLM_CPU_OMP_THREADS_BIND",
        help="CPU variant only: cores vLLM's OpenMP threads are pinned to: 'auto' (one per "
        "physical core of a NUMA node), 'nobind', or a core list such as '0-15'. "
        "Unset: the image's VLLM_CPU_OMP_THREADS_BIND (auto).",
    ),
    Parameter(
        "cpu_reserved_cores",
        "numeric",
        feeds="vllm_env",
        env_var="VLLM_CPU_NUM_OF_RESERVED_CPU",
        integer=True,
        minimum=0,
        help="CPU variant only: cores left out of vLLM's OpenMP threads, for its API server and "
        "DRUM. Unset: vLLM's default.",
    ),
)

BY_NAME: dict[str, Parameter] = {p.name: p for p in PARAMETERS}
DEFAULT_SERVED_ALIAS = "datarobot-deployed-llm"


def metadata_definition(param: Parameter) -> dict[str, Any]:
    """The parameter as a `runtimeParameterDefinitions` entry of model-metadata.yaml."""
    entry: dict[str, Any] = {"fieldName": param.name, "type": param.type}
    if param.type == "credential":
        entry["credentialType"] = "api_token"
    if param.default is not None:
        entry["defaultValue"] = param.default
    if param.minimum is not None:
        entry["minValue"] = param.minimum
    if param.maximum is not None:
        entry["maxValue"] = param.maximum
    entry["allowEmpty"] = True
    entry["description"] = param.help
    return entry
