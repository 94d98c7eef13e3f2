"""Combine runtime parameters, engine_config flags and the model source into a launch.

Pure: the same inputs give the same result. Two parts, because only the second needs vLLM's
argument parser (importing it takes seconds): the LaunchPlan (model source, batch defaults,
caches, timeouts) that the supervisor needs, and the VllmArgs that only the vLLM process
needs, built there where vLLM is imported anyway. `check` prints both; nothing else builds
vLLM's argv or environment.
"""

from __future__ import annotations

import json
import shlex
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import model_source, runtime_params, vllm_args
from .errors import ConfigError
from .parameters import DEFAULT_SERVED_ALIAS, PARAMETERS
from .runtime_params import Values

SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "API_KEY", "APIKEY", "CREDENTIAL", "PRIVATE_KEY")
SECRET_PREFIXES = ("MLOPS_RUNTIME_PARAM_", "DATAROBOT_")
# vLLM closes idle keep-alive connections after this (its default, 5 s, races the adapter's
# pooled connections: a request sent as the server closes fails with "Server disconnected").
# The adapter's clients drop idle connections after half of it, so they never meet a closing one.
VLLM_KEEPALIVE_S = 60


@dataclass(frozen=True)
class BatchSettings:
    """What `score()` needs to turn rows into chat completions; travels to DRUM as JSON."""

    prompt_column: str
    system_prompt: str | None
    max_tokens: int
    n: int
    temperature: float | None
    max_concurrent_rows: int
    row_errors: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> BatchSettings:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class LaunchPlan:
    """What the supervisor needs to launch and serve; built without importing vLLM."""

    model: model_source.ModelSource
    batch: BatchSettings
    cache_dir: Path
    startup_timeout: int
    verify_ssl: bool
    engine_env: dict[str, str] = field(default_factory=dict)  # from parameters that feed vLLM's env
    hf_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class VllmArgs:
    """vLLM's arguments after `serve <model>` (no host, port or key), checked by its own parser."""

    args: list[str]
    served_names: list[str]
    overridden: dict[str, str]  # runtime parameter -> engine_config flag that overrides it


def _drop_dest(args: list[str], dest: str) -> list[str]:
    """Remove every occurrence of the flag(s) for `dest`, with the values that follow, from args."""
    out: list[str] = []
    skipping = False
    for token in args:
        if token.startswith("-"):
            hit = vllm_args.dest_of_token(token) == dest
            skipping = hit and "=" not in token
            if hit:
                continue
        elif skipping:
            continue
        out.append(token)
    return out


def _runtime_flags(values: Values, explicit: Mapping[str, object]) -> tuple[list[str], dict[str, str]]:
    """vLLM flags fed by runtime parameters, minus those engine_config sets (it wins)."""
    flags: list[str] = []
    overridden: dict[str, str] = {}
    for param in PARAMETERS:
        value = values.get(param.name)
        if param.vllm_flag is None or value is None or value is False:
            continue
        if vllm_args.dest_of(param.vllm_flag) in explicit:
            overridden[param.name] = param.vllm_flag
            continue
        flags += [param.vllm_flag] if value is True else [param.vllm_flag, str(value)]
    return flags, overridden


def _default_name(ref: str) -> str:
    """A hub id names itself; a local folder is named by its last path component."""
    return Path(ref).name if Path(ref).is_dir() else ref


def build(values: Values, engine_args: list[str], code_dir: Path, assume_hook_fills: bool = False) -> LaunchPlan:
    """The launch minus vLLM's argv; ConfigError on any problem found without vLLM's parser."""
    engine_model, _ = vllm_args.split_model(engine_args)
    cache = values["cache_dir"] or Path(tempfile.gettempdir()) / "vllm-dropin-cache"
    return LaunchPlan(
        model=model_source.resolve(engine_model, code_dir, values["model"], assume_hook_fills),
        batch=BatchSettings(
            prompt_column=values["prompt_column_name"],
            system_prompt=values["system_prompt"],
            max_tokens=values["max_tokens"],
            n=values["n"],
            temperature=values["temperature"],
            max_concurrent_rows=values["max_concurrent_rows"],
            row_errors=values["row_errors"],
        ),
        cache_dir=Path(cache),
        startup_timeout=values["startup_timeout_seconds"],
        verify_ssl=values["verifySSL"],
        engine_env={p.env_var: str(values[p.name]) for p in PARAMETERS if p.env_var and values[p.name] is not None},
        hf_token=runtime_params.hf_token(values),
    )


def parallelism_flags(explicit: Mapping[str, object], visible_gpus: int) -> list[str]:
    """Tensor parallel over every visible GPU unless engine_config sets it; never more GPUs than visible.

    The user's -tp/-pp/-dp always win; the default divides the GPUs by pipeline x data parallel."""
    if visible_gpus <= 0:
        return []  # CPU: vLLM's own defaults
    tp = explicit.get("tensor_parallel_size")
    pp = int(explicit.get("pipeline_parallel_size") or 1)
    dp = int(explicit.get("data_parallel_size") or 1)
    flags = []
    if tp is None:
        tp = max(1, visible_gpus // (pp * dp))
        if tp > 1:
            flags = ["--tensor-parallel-size", str(tp)]
    needed = int(tp) * pp * dp
    if needed > visible_gpus:
        raise ConfigError(
            f"engine_config.json: tensor parallel {tp} x pipeline parallel {pp} x data parallel {dp} needs "
            f"{needed} GPUs but {visible_gpus} are visible (CUDA_VISIBLE_DEVICES / nvidia-smi -L); "
            "lower -tp, -pp or -dp"
        )
    return flags


def vllm_arguments(plan: LaunchPlan, values: Values, engine_args: list[str], visible_gpus: int = 0) -> VllmArgs:
    """vLLM's argv, validated by its own parser: engine_config flags win over runtime parameters."""
    explicit = vllm_args.parse(engine_args, "engine_config.json")
    if "model_tag" in explicit:
        raise ConfigError(
            f"engine_config.json: $.args: stray value {explicit['model_tag']!r} is not a flag; "
            'give the model as "--model", "<id or path>"'
        )
    engine_model, rest = vllm_args.split_model(engine_args)
    flags, overridden = _runtime_flags(values, explicit)
    flags += parallelism_flags(explicit, visible_gpus)
    names = list(
        explicit.get("served_model_name") or [_default_name(engine_model or values["model"] or plan.model.ref)]
    )
    if DEFAULT_SERVED_ALIAS not in names:
        names.append(DEFAULT_SERVED_ALIAS)
    args = [*flags, *_drop_dest(rest, "served_model_name"), "--served-model-name", *names]
    vllm_args.parse([plan.model.ref, *args], "vLLM arguments from runtime parameters and engine_config.json")
    return VllmArgs(args, names, overridden)


def vllm_command(plan: LaunchPlan, vargs: VllmArgs, executable: list[str], port: int | str) -> list[str]:
    """argv of `vllm serve` bound to loopback; holds no secret."""
    return [*executable, "serve", plan.model.ref, *vargs.args, "--host", "127.0.0.1", "--port", str(port)]


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return upper.startswith(SECRET_PREFIXES) or any(marker in upper for marker in SECRET_MARKERS)


def cache_env(root: Path) -> dict[str, str]:
    """Where every child writes caches and its HOME under `root`, so nothing lands in the user's home."""
    return {
        "HOME": str(root / "home"),
        "XDG_CACHE_HOME": str(root / "xdg"),
        "HF_HOME": str(root / "huggingface"),
        "VLLM_CACHE_ROOT": str(root / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(root / "torchinductor"),
        "TRITON_CACHE_DIR": str(root / "triton"),
    }


def vllm_env_additions(plan: LaunchPlan, base: Mapping[str, str], api_key: str) -> dict[str, str]:
    """The variables the environment sets for vLLM on top of the scrubbed base environment."""
    env = {**plan.engine_env, **cache_env(plan.cache_dir)}
    env.update(VLLM_API_KEY=api_key, VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
    env["VLLM_HTTP_TIMEOUT_KEEP_ALIVE"] = str(VLLM_KEEPALIVE_S)
    if plan.model.local:
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    else:
        token = plan.hf_token or base.get("HF_TOKEN")
        if token:
            env["HF_TOKEN"] = token
    return env


def vllm_env(plan: LaunchPlan, base: Mapping[str, str], api_key: str) -> dict[str, str]:
    """vLLM's environment: the base minus every secret, plus exactly what vLLM needs."""
    env = {k: v for k, v in base.items() if not is_secret_name(k)}
    env.update(vllm_env_additions(plan, base, api_key))
    return env


def describe(plan: LaunchPlan, vargs: VllmArgs, command: list[str], added_env: Mapping[str, str]) -> list[str]:
    """Human-readable plan for logs and `check`; secrets masked."""
    shown = " ".join(f"{k}={'***' if is_secret_name(k) else v}" for k, v in sorted(added_env.items()))
    sampling = " ".join(
        f"{k}={'(model default)' if v is None and k == 'temperature' else v}" for k, v in asdict(plan.batch).items()
    )
    lines = [
        f"model: {plan.model.ref} (from {plan.model.origin}; hub access {'off' if plan.model.local else 'on'})",
        f"served model names: {', '.join(vargs.served_names)}",
        f"vLLM command: {shlex.join(command)}",
        f"vLLM environment additions: {shown}",
        f"batch prediction defaults: {sampling}",
    ]
    lines += [
        f"runtime parameter '{name}' is overridden by {flag} in engine_config.json"
        for name, flag in vargs.overridden.items()
    ]
    return lines
