"""Every runtime parameter, declared once: a field of `Settings` with its type, default, bounds,
help and what it feeds.

The field's annotation is the parameter's type (`int` = a whole number, `float` a number,
`bool`, `str`, `Credential`), its default the declared default, its `declare(...)` metadata
the rest. Parsing (`runtime_params`), the plan, the `check` report, the template's
`model-metadata.yaml` and the README table all derive from `PARAMETERS`, the view of these
fields, so they cannot drift apart. Consumers read values by attribute: `settings.max_tokens`.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from vllm_dropin.errors import ConfigError

ParamType = Literal["string", "numeric", "boolean", "credential"]
Feeds = Literal["model", "hf_token", "artifact", "vllm_flag", "vllm_env", "batch", "platform", "launch"]
Credential = Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class Rule:
    """What a parameter declares beyond its type and default."""

    help: str
    feeds: Feeds  # where the value goes: batch parameters become `BatchSettings` fields of the same name
    minimum: float | None = None
    minimum_exclusive: bool = False
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    credential_type: str | None = None  # a credential the platform offers of one type only
    vllm_flag: str | None = None  # feeds == "vllm_flag": the `vllm serve` flag it sets
    env_var: str | None = None  # feeds == "vllm_env": the variable it sets in vLLM's environment


def declare(default: Any = None, *, secret: bool = False, **rule: Any) -> Any:
    """A `Settings` field: its default plus the `Rule` kept in the field's metadata."""
    return field(default=default, repr=not secret, metadata={"rule": Rule(**rule)})


@dataclass(frozen=True)
class Settings:
    """The runtime parameters of a deployment (env `MLOPS_RUNTIME_PARAM_<field name>`), typed.

    A null payload means unset: the field keeps its default."""

    model: str | None = declare(
        feeds="model",
        help="Hugging Face model id or a local folder to serve. Used when engine_config.json has "
        "no --model and load_model did not fill ${CODE_DIR}/vllm/.",
    )
    HuggingFaceToken: Credential | None = declare(
        secret=True,
        feeds="hf_token",
        credential_type="api_token",
        help="API token credential for gated Hugging Face models. Reaches vLLM only through its "
        "environment (HF_TOKEN), only when the model comes from the hub.",
    )
    artifact_uri: str | None = declare(
        feeds="artifact",
        help="Where the model's files are, fetched once before launch into cache_dir (in parallel, "
        "verified, resumed after a restart): s3://bucket/prefix, gs://bucket/prefix, az://container/prefix "
        "or https://ACCOUNT.blob.core.windows.net/container/prefix, hf://org/name[@revision] (from "
        "hub_mirror_url), an http(s) URL of a .tar(.gz|.xz)/.tgz/.zip archive, or a local folder "
        "(served in place) or archive. A load_model that fills ${CODE_DIR}/vllm/ wins.",
    )
    artifact_endpoint_url: str | None = declare(
        feeds="artifact",
        help="Endpoint of an S3-compatible store (MinIO, Ceph: http://minio:9000) or of a GCS-compatible "
        "API for artifact_uri. Unset: AWS S3 / Google Cloud Storage.",
    )
    artifact_credential: Credential | None = declare(
        secret=True,
        feeds="artifact",
        help="Credential for artifact_uri's store: s3 (awsAccessKeyId, awsSecretAccessKey, optional "
        "awsSessionToken), gcp (gcpKey: a service account key), azure (azureConnectionString) or "
        "api_token (a bearer token for http(s) and hub mirrors). Unset: the store's default chain "
        "(instance roles, workload identity) or anonymous access.",
    )
    hub_mirror_url: str | None = declare(
        feeds="artifact",
        help="URL of an internal Hugging Face hub mirror, for hf:// artifact URIs and hub ids in 'model' "
        "(vLLM downloads through it). Unset: huggingface.co.",
    )
    stream_weights: bool = declare(
        False,
        feeds="artifact",
        help="With an s3:// artifact_uri: vLLM streams the weights (safetensors) straight from the store into "
        "memory (the Run:ai model streamer) instead of the environment fetching them into cache_dir first; "
        "the other files are fetched as before. Every start reads the weights from the store again.",
    )
    max_model_len: int | None = declare(
        feeds="vllm_flag",
        vllm_flag="--max-model-len",
        minimum=1,
        help="Context length (prompt + output tokens). Unset: the model's own maximum. Lower it "
        "when the KV cache does not fit in GPU memory.",
    )
    gpu_memory_utilization: float | None = declare(
        feeds="vllm_flag",
        vllm_flag="--gpu-memory-utilization",
        minimum=0,
        minimum_exclusive=True,
        maximum=1,
        help="Fraction of each GPU's memory vLLM may use, in (0, 1]. Unset: vLLM's default (0.9).",
    )
    parallelism: str = declare(
        "auto",
        feeds="launch",
        choices=("auto", "tensor", "data"),
        help="How the model is spread over the GPUs. 'auto': data parallel (one whole copy per GPU) when "
        "the weights take at most half of one GPU's share, else the smallest tensor parallel that fits, "
        "data parallel over the rest. 'tensor': tensor parallel over all GPUs. 'data': one copy per GPU. "
        "-tp/-pp/-dp in engine_config.json win.",
    )
    ray_nodes: int | None = declare(
        feeds="launch",
        minimum=1,
        help="Serve across a Ray cluster of this many nodes: this container starts the Ray head on "
        "ray_port and waits (startup_timeout_seconds) for the others, started from the same image as "
        "`start_server.sh ray-worker --head THIS_HOST:ray_port`; vLLM then runs its Ray executor over "
        "every node's GPUs ('auto': tensor parallel within a node, pipeline parallel across nodes). "
        "Unset: one machine, no Ray.",
    )
    ray_port: int = declare(
        6379,
        feeds="launch",
        minimum=1,
        maximum=65535,
        help="Port of the Ray head (with ray_nodes) that worker nodes join.",
    )
    trust_remote_code: bool = declare(
        False,
        feeds="vllm_flag",
        vllm_flag="--trust-remote-code",
        help="Run Python code shipped with the model (needed by some architectures). Off unless "
        "you trust the model's source.",
    )
    lora_adapters_uri: str | None = declare(
        feeds="artifact",
        help="Where more LoRA adapters are, one sub-folder each, named by the folder: s3://bucket/prefix, "
        "gs://bucket/prefix, az://container/prefix (or Azure's https URL), hf://org (its repositories) "
        "or a local folder; artifact_endpoint_url and artifact_credential apply. A request (chat, any "
        "OpenAI route, a batch row) naming an adapter that is not loaded has it fetched into cache_dir "
        "once, checked against the base model and loaded while serving. Unset: only ${CODE_DIR}/adapters/.",
    )
    lora_adapter: str | None = declare(
        feeds="batch",
        help="LoRA adapter (a folder name under ${CODE_DIR}/adapters/, or under lora_adapters_uri) that "
        "answers batch predictions. Unset: the base model.",
    )
    lora_adapter_column: str | None = declare(
        feeds="batch",
        help="Column of the batch request that names each row's LoRA adapter; an empty cell uses "
        "lora_adapter (or the base model).",
    )
    max_lora_rank: int | None = declare(
        feeds="vllm_flag",
        vllm_flag="--max-lora-rank",
        minimum=1,
        help="Largest LoRA rank vLLM reserves for. Unset with adapters in the model folder: the "
        "smallest of vLLM's choices that holds the largest adapter's rank; with lora_adapters_uri, "
        "at least vLLM's default, 16 (a larger adapter from the store is refused, naming this parameter).",
    )
    max_loras: int | None = declare(
        feeds="vllm_flag",
        vllm_flag="--max-loras",
        minimum=1,
        help="How many LoRA adapters one engine batch may mix (each holds a slot of GPU memory). Unset "
        "with adapters in the model folder: all of them (at most 8); with lora_adapters_uri: 8.",
    )
    max_cpu_loras: int | None = declare(
        feeds="vllm_flag",
        vllm_flag="--max-cpu-loras",
        minimum=1,
        help="How many LoRA adapters vLLM keeps in CPU memory; beyond it the least recently used is "
        "dropped and read again from its folder (cache_dir, never the store) when next asked for. "
        "Unset: max_loras.",
    )
    system_prompt: str | None = declare(
        feeds="batch",
        help="System message put before every prompt of a batch prediction. Unset: none.",
    )
    prompt_column_name: str = declare(
        "promptText",
        feeds="batch",
        help="Column of the batch CSV that holds the prompts.",
    )
    prompt_template: str | None = declare(
        feeds="batch",
        help="Prompt of each batch row made from its columns: text with {column name} placeholders "
        "({{ and }} for literal braces), e.g. 'Classify this review: {review text}'. Unset: the "
        "prompt column as it is.",
    )
    response_schema: str | None = declare(
        feeds="batch",
        help="JSON Schema every batch answer must match (vLLM's structured outputs): inline JSON, or "
        "the name of a .json file in the model folder. The target column then holds JSON.",
    )
    response_choices: str | None = declare(
        feeds="batch",
        help='Labels every batch answer must be exactly one of, as a JSON list: ["positive", "negative"].',
    )
    row_details: bool = declare(
        False,
        feeds="batch",
        help="Add per-row columns prompt_tokens, completion_tokens and finish_reason (finish_reason_2 "
        "... for n > 1): 'length' means the answer was cut by max_tokens.",
    )
    max_tokens: int = declare(
        256,
        feeds="batch",
        minimum=1,
        help="Maximum number of tokens generated per row of a batch prediction.",
    )
    n: int = declare(
        1,
        feeds="batch",
        minimum=1,
        help="Completions per row. The first goes to the target column, the others to extra "
        "columns choice_2 ... choice_n.",
    )
    temperature: float | None = declare(
        feeds="batch",
        minimum=0,
        help="Sampling temperature for batch predictions; 0 means greedy (deterministic). "
        "Unset: the model's generation_config default.",
    )
    verifySSL: bool = declare(
        True,
        feeds="platform",
        help="Verify TLS certificates when posting deployment status events to DataRobot.",
    )
    request_log: bool = declare(
        True,
        feeds="launch",
        help="Log one JSON line per request (route, status, seconds, time to first token, prompt and "
        "completion tokens, model or adapter, batch rows, association id; never request or answer "
        "text), for operators who aggregate logs. Off: no per-request lines.",
    )
    startup_timeout_seconds: int = declare(
        1800,
        feeds="launch",
        minimum=1,
        help="How long vLLM may take to become healthy (download, load, compile) before startup "
        "fails with the tail of its log.",
    )
    max_concurrent_rows: int | None = declare(
        feeds="batch",
        minimum=1,
        help="How many batch prediction rows are in flight to vLLM at once, over all batch requests "
        "of the deployment (concurrent requests share it); vLLM's continuous batching needs many. "
        "Unset: 512 per vLLM replica on GPUs (vLLM's largest CUDA graph batch; more in flight runs "
        "slower) and 256 per replica on CPU.",
    )
    rows_per_request: int | None = declare(
        feeds="batch",
        minimum=1,
        help="Rows of a batch prediction sent to vLLM in one request (its /v1/chat/completions/batch: "
        "each row still its own chat completion, the chat template applied by vLLM): our adapter's "
        "per-row cost falls about 8x. A request's rows finish together, so answers of different "
        "lengths hold finished rows' places until the longest ends, while other rows wait. Unset: a "
        "batch of at most max_concurrent_rows rows (all in flight at once: none waits) goes in 8 "
        "requests; a longer one 8 rows to a request with response_choices (answers are labels, short "
        "and alike), else 1. Always 1 with n > 1 or row_details.",
    )
    row_errors: str = declare(
        "fail",
        feeds="batch",
        choices=("fail", "column"),
        help="'fail': a batch with a bad row (empty prompt, rejected by vLLM) fails with an error "
        "naming each such row. 'column': bad rows get their reason in an extra 'error' column.",
    )
    cache_dir: str | None = declare(
        feeds="launch",
        help="Writable folder for Hugging Face downloads and vLLM's compile cache. Keep it on a "
        "persistent volume to restart faster. Unset: $HF_HOME / $VLLM_CACHE_ROOT if set, else "
        "a folder under the system temp dir.",
    )
    cpu_kvcache_space_gib: int | None = declare(
        feeds="vllm_env",
        env_var="VLLM_CPU_KVCACHE_SPACE",
        minimum=1,
        help="CPU variant only: GiB of memory for vLLM's KV cache; keep it well below the "
        "container's memory. Unset: the image's VLLM_CPU_KVCACHE_SPACE (4). GPUs: use "
        "gpu_memory_utilization.",
    )
    cpu_omp_threads_bind: str | None = declare(
        feeds="vllm_env",
        env_var="VLLM_CPU_OMP_THREADS_BIND",
        help="CPU variant only: cores vLLM's OpenMP threads are pinned to: 'auto' (one per "
        "physical core of a NUMA node), 'nobind', or a core list such as '0-15'. "
        "Unset: the image's VLLM_CPU_OMP_THREADS_BIND (auto).",
    )
    cpu_reserved_cores: int | None = declare(
        feeds="vllm_env",
        env_var="VLLM_CPU_NUM_OF_RESERVED_CPU",
        minimum=0,
        help="CPU variant only: cores left out of vLLM's OpenMP threads, for its API server and "
        "DRUM. Unset: vLLM's default.",
    )

    @property
    def hf_token(self) -> str | None:
        """The API token inside the HuggingFaceToken credential, if one is set."""
        cred = self.HuggingFaceToken
        if not cred:
            return None
        token = cred.get("apiToken") or cred.get("token")
        if not isinstance(token, str) or not token:
            raise ConfigError(
                "runtime parameter 'HuggingFaceToken': expected an api_token credential with a non-empty apiToken"
            )
        return token


@dataclass(frozen=True, kw_only=True)
class Parameter(Rule):
    """One runtime parameter as the platform sees it, derived from its `Settings` field."""

    name: str
    type: ParamType
    integer: bool = False
    default: Any = None

    def bounds_text(self) -> str:
        """Human-readable range, used in error messages and docs."""
        low = "" if self.minimum is None else f"{'>' if self.minimum_exclusive else '>='} {self.minimum:g}"
        high = "" if self.maximum is None else f"<= {self.maximum:g}"
        return " and ".join(part for part in (low, high) if part)


_PLATFORM_TYPES: dict[Any, tuple[ParamType, bool]] = {
    str: ("string", False),
    int: ("numeric", True),
    float: ("numeric", False),
    bool: ("boolean", False),
    Mapping: ("credential", False),
}


def _platform_type(annotation: Any) -> tuple[ParamType, bool]:
    """(platform type, whole numbers only) of a field annotation such as `int | None`."""
    if isinstance(annotation, types.UnionType):
        (annotation,) = (a for a in typing.get_args(annotation) if a is not type(None))
    return _PLATFORM_TYPES[typing.get_origin(annotation) or annotation]


def _parameters() -> tuple[Parameter, ...]:
    hints = typing.get_type_hints(Settings)
    out = []
    for f in fields(Settings):
        kind, integer = _platform_type(hints[f.name])
        rule = vars(f.metadata["rule"])
        out.append(Parameter(name=f.name, type=kind, integer=integer, default=f.default, **rule))
    return tuple(out)


PARAMETERS: tuple[Parameter, ...] = _parameters()
BY_NAME: dict[str, Parameter] = {p.name: p for p in PARAMETERS}


def metadata_definition(param: Parameter) -> dict[str, Any]:
    """The parameter as a `runtimeParameterDefinitions` entry of model-metadata.yaml."""
    entry: dict[str, Any] = {"fieldName": param.name, "type": param.type}
    if param.credential_type is not None:
        entry["credentialType"] = param.credential_type
    if param.default is not None:
        entry["defaultValue"] = param.default
    if param.minimum is not None:
        entry["minValue"] = param.minimum
    if param.maximum is not None:
        entry["maxValue"] = param.maximum
    entry["allowEmpty"] = True
    entry["description"] = param.help
    return entry
