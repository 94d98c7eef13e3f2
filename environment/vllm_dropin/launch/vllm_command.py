"""Turn a LaunchPlan into `vllm serve`'s argv and the parallel layout, with vLLM's own parser
(run in the vLLM process, where vLLM is imported anyway).

engine_config.json's flags win over runtime parameters however they are spelled; the planner
(`planning.parallel`) fills in what they leave open; the platform's served-name alias is always
added.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from vllm_dropin.config import vllm_flags
from vllm_dropin.contract import DEFAULT_SERVED_ALIAS, REQUESTS_FOR_A_BATCH_IN_FLIGHT, BatchSettings, Layout
from vllm_dropin.errors import ConfigError
from vllm_dropin.launch.process_env import is_secret_name
from vllm_dropin.model import lora
from vllm_dropin.model.artifacts import streaming
from vllm_dropin.planning import parallel
from vllm_dropin.planning.plan import LaunchPlan, rows_in_flight

# With a response schema, JSON without free whitespace: a model may otherwise emit whitespace
# between tokens until max_tokens (the random demo model always does). vLLM takes this per engine
# only, and only with a named backend; engine_config.json's --structured-outputs-config wins.
STRUCTURED_OUTPUTS_FOR_SCHEMA = {"backend": "xgrammar", "disable_any_whitespace": True}


@dataclass(frozen=True)
class VllmCommand:
    """`vllm serve <model> ...` without host, port or key, checked by vLLM's parser."""

    argv: list[str]
    served_names: list[str]
    overridden: dict[str, str]  # runtime parameter -> engine_config flag that overrides it
    layout: Layout  # the parallel sizes vLLM runs with, and why

    def bound_to(self, port: int | str) -> list[str]:
        """The argv bound to loopback; holds no secret."""
        return [*self.argv, "--host", "127.0.0.1", "--port", str(port)]


def _drop_dest(args: list[str], dest: str) -> list[str]:
    """Remove every occurrence of the flag(s) for `dest`, with the values that follow, from args."""
    out: list[str] = []
    skipping = False
    for token in args:
        if token.startswith("-"):
            hit = vllm_flags.dest_of_token(token) == dest
            skipping = hit and "=" not in token
            if hit:
                continue
        elif skipping:
            continue
        out.append(token)
    return out


MAX_LORAS_DEFAULT_CAP = 8  # adapters one engine batch mixes unless max_loras says: each costs memory
VLLM_DEFAULT_LORA_RANK = 16  # vLLM's --max-lora-rank default


def _default_rank(plan: LaunchPlan) -> int:
    """The rank reserved unless set: what the shipped adapters need, and with a store of adapters
    (ranks unknown before they are asked for) at least vLLM's default."""
    shipped = lora.rank_for(plan.adapters) if plan.adapters else 0
    return max(shipped, VLLM_DEFAULT_LORA_RANK if plan.adapter_store else 0)


def lora_flags(plan: LaunchPlan, explicit: Mapping[str, object]) -> list[str]:
    """LoRA on, each adapter of the model folder under its name, rank and count from what was found
    (and the store, when adapters come from lora_adapters_uri); runtime parameters (max_lora_rank,
    max_loras) and engine_config.json flags win."""
    if not plan.adapters and not plan.adapter_store:
        return []
    set_elsewhere = set(explicit) | {name for name in plan.param_flags}
    flags = [] if "enable_lora" in set_elsewhere else ["--enable-lora"]
    if "lora_modules" not in set_elsewhere and plan.adapters:
        flags += ["--lora-modules", *(f"{a.name}={a.path}" for a in plan.adapters)]
    if "max_lora_rank" not in set_elsewhere:
        flags += ["--max-lora-rank", str(_default_rank(plan))]
    if "max_loras" not in set_elsewhere:
        count = MAX_LORAS_DEFAULT_CAP if plan.adapter_store else min(len(plan.adapters), MAX_LORAS_DEFAULT_CAP)
        flags += ["--max-loras", str(count)]
    return flags


def engine_flags(engine_args: list[str]) -> dict[str, Any]:
    """engine_config.json's flags as vLLM's parser reads them; ConfigError naming the flag."""
    explicit = vllm_flags.parse(engine_args, "engine_config.json")
    if "model_tag" in explicit:
        raise ConfigError(
            f"engine_config.json: $.args: stray value {explicit['model_tag']!r} is not a flag; "
            'give the model as "--model", "<id or path>"'
        )
    return explicit


def check_flags(engine_args: list[str], param_flags: dict[str, list[str]], batch: BatchSettings) -> None:
    """What can be checked before the model is known: engine_config.json's flags, the runtime
    parameters' flags with them, and the batch sampling settings; ConfigError on the first problem."""
    engine_flags(engine_args)
    _, rest = vllm_flags.split_model(engine_args)
    params = [token for flag in param_flags.values() for token in flag]
    vllm_flags.parse([*params, *rest], "vLLM arguments from runtime parameters and engine_config.json")
    check_batch_sampling(batch)


def _layout(
    planned: parallel.ParallelPlan, explicit: Mapping[str, Any], plan: LaunchPlan, served: Mapping[str, Any]
) -> Layout:
    """What vLLM runs: the planned sizes, the API servers as set or planned, the rows in flight,
    and the largest LoRA rank it takes, as its whole argv (`served`, parsed) sets them."""
    servers = explicit.get("api_server_count") or planned.api_servers or 1
    rows = rows_in_flight(plan.batch, planned.data, plan.parallel.gpus.count)
    rank = int(served.get("max_lora_rank") or VLLM_DEFAULT_LORA_RANK) if served.get("enable_lora") else None
    return Layout(planned.tensor, planned.pipeline, planned.data, int(servers), rows, planned.reason, rank)


def build(plan: LaunchPlan) -> VllmCommand:
    """vLLM's argv, validated by its own parser: engine_config flags win over runtime parameters."""
    explicit = engine_flags(plan.engine_args)
    _, rest = vllm_flags.split_model(plan.engine_args)
    flags: list[str] = []
    overridden: dict[str, str] = {}
    for name, (flag, *value) in plan.param_flags.items():
        if vllm_flags.dest_of(flag) in explicit:
            overridden[name] = flag
        else:
            flags += [flag, *value]
    planned = parallel.plan(plan.parallel, explicit)
    flags += planned.flags
    flags += lora_flags(plan, explicit)
    if plan.batch.response_schema is not None and "structured_outputs_config" not in explicit:
        flags += ["--structured-outputs-config", json.dumps(STRUCTURED_OUTPUTS_FOR_SCHEMA)]
    flags += streamer_flags(plan, explicit)
    names = list(explicit.get("served_model_name") or [plan.model.name])
    if DEFAULT_SERVED_ALIAS not in names:
        names.append(DEFAULT_SERVED_ALIAS)
    args = [*flags, *_drop_dest(rest, "served_model_name"), "--served-model-name", *names]
    model = plan.model.weights or plan.model.ref
    served = vllm_flags.parse([model, *args], "vLLM arguments from runtime parameters and engine_config.json")
    return VllmCommand(["vllm", "serve", model, *args], names, overridden, _layout(planned, explicit, plan, served))


def streamer_flags(plan: LaunchPlan, explicit: Mapping[str, object]) -> list[str]:
    """With stream_weights: vLLM's model is the store's URI, its weights read by the Run:ai streamer,
    its tokenizer the fetched folder's; ConfigError where vLLM's Python lacks the streamer."""
    if plan.model.weights is None:
        return []
    if importlib.util.find_spec("runai_model_streamer") is None:
        raise ConfigError(
            f"runtime parameter '{streaming.PARAM}': vLLM's Python has no runai-model-streamer; install "
            "'runai-model-streamer[s3]' beside vLLM, or unset stream_weights"
        )
    flags = [] if "load_format" in explicit else ["--load-format", streaming.LOAD_FORMAT]
    return flags + ([] if "tokenizer" in explicit else ["--tokenizer", plan.model.ref])


def check_batch_sampling(batch: BatchSettings) -> None:
    """The batch defaults through vLLM's own SamplingParams rules, so settings that would fail every
    row (n=2 with temperature=0: greedy has one answer) stop startup instead, naming them; with a
    response schema or labels, also that this vLLM has a structured-output backend for them."""
    from vllm import SamplingParams

    given = {"n": batch.n, "temperature": batch.temperature, "max_tokens": batch.max_tokens}
    given = {name: value for name, value in given.items() if value is not None}
    try:
        SamplingParams(**given)
    except Exception as exc:  # ValueError in older vLLMs, VLLMValidationError (no ValueError) in newer ones
        named = ", ".join(f"'{name}' = {value}" for name, value in given.items())
        raise ConfigError(
            f"runtime parameters {named} (batch predictions) conflict: vLLM rejects them with "
            f'"{_first_line(exc)}"; change one of them'
        ) from None
    if batch.response_schema is not None or batch.response_choices is not None:
        _check_structured_outputs(batch)


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _check_structured_outputs(batch: BatchSettings) -> None:
    import importlib.util

    from vllm.sampling_params import SamplingParams, StructuredOutputsParams

    name = "response_schema" if batch.response_schema is not None else "response_choices"
    backends = [b for b in ("xgrammar", "llguidance") if importlib.util.find_spec(b) is not None]
    if not backends:
        raise ConfigError(
            f"runtime parameter '{name}': this vLLM has no structured-output backend (xgrammar, llguidance)"
        )
    schema = batch.response_schema
    wanted = {"json": json.loads(schema)} if schema is not None else {"choice": batch.response_choices}
    try:
        params = SamplingParams(max_tokens=batch.max_tokens, structured_outputs=StructuredOutputsParams(**wanted))
        # A schema runs on xgrammar (STRUCTURED_OUTPUTS_FOR_SCHEMA); labels on vLLM's "auto", which
        # falls back to guidance where xgrammar cannot.
        if schema is not None or backends == ["xgrammar"]:
            from vllm.v1.structured_output.backend_xgrammar import validate_xgrammar_grammar

            validate_xgrammar_grammar(params)
    except Exception as exc:
        raise ConfigError(
            f"runtime parameter '{name}': vLLM's structured outputs cannot use it: {_first_line(exc)}"
        ) from None


def _rows_per_request_shown(batch: BatchSettings) -> str:
    """rows_per_request resolved; where a batch that fits in flight goes otherwise, both."""
    longer = batch.rows_to_a_request(batch.max_concurrent_rows + 1)
    fits = batch.rows_to_a_request(batch.max_concurrent_rows)
    if fits == longer:
        return str(longer)
    return f"{longer} (a batch of at most {batch.max_concurrent_rows} rows: {REQUESTS_FOR_A_BATCH_IN_FLIGHT} requests)"


def describe(
    plan: LaunchPlan, command: VllmCommand, added_env: Mapping[str, str], port: int | str = "<free port>"
) -> list[str]:
    """Human-readable plan for logs and `check`; secrets masked."""
    shown = " ".join(f"{k}={'***' if is_secret_name(k) else v}" for k, v in sorted(added_env.items()))
    batch = replace(plan.batch, max_concurrent_rows=command.layout.rows_in_flight)
    shown_batch = {**asdict(batch), "rows_per_request": _rows_per_request_shown(batch)}
    sampling = " ".join(
        f"{k}={'(model default)' if v is None and k == 'temperature' else v}" for k, v in shown_batch.items()
    )
    lines = [
        f"model: {plan.model.ref} (from {plan.model.origin}; hub access {'off' if plan.model.local else 'on'})",
        f"served model names: {', '.join(command.served_names)}",
        f"parallelism: {command.layout.reason}",
        "LoRA adapters: "
        + (", ".join(f"{a.name} (rank {a.rank}, {a.path})" for a in plan.adapters) or f"none in {lora.ADAPTERS_DIR}/")
        + ("; more from lora_adapters_uri, loaded when a request names them" if plan.adapter_store else ""),
        f"vLLM command: {shlex.join(command.bound_to(port))}",
        f"vLLM environment additions: {shown}",
        f"batch prediction defaults: {sampling}",
    ]
    lines += [
        f"runtime parameter '{name}' is overridden by {flag} in engine_config.json"
        for name, flag in command.overridden.items()
    ]
    return lines
