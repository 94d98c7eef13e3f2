"""Why a child died, in one line: the exception it died of, read from its output, plus a hint.

General over vLLM's output, not a list of special cases: the cause is the first exception of
the last failure (a chained or re-raised exception points back at it: vLLM's API server ends
with "Engine core initialization failed. See root cause above"). A recognised cause gets an
actionable hint; an unrecognised one still shows vLLM's own exception line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_CAUSE_CHARS = 500
# What a relayed line may start with before the text a process wrote: our relay's "[vllm] ",
# vLLM's per-process prefix "(EngineCore_DP0 pid=12) ", a log record's "ERROR 11-26 06:40:03 [x.py:12] ".
_PREFIXES = re.compile(r"^(?:\[\w+\] |\(\w+(?: pid=\d+)?\) |(?:ERROR|CRITICAL|WARNING|INFO) [\d\-: ]+\[[^\]]*\] )+")
_EXCEPTION = re.compile(
    r"^(?P<type>(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Failure|Fault))(?::\s?(?P<message>.*))?$"
)
_TRACEBACK = "Traceback (most recent call last):"
_NOISE = ("For further information visit",)
_DETAIL = re.compile(r"\s*\[type=[^\]]*\]")  # pydantic's "[type=..., input_value=..., ...]" (input values)

# (pattern over "Type: message", hint). The first match wins; patterns are case-insensitive.
HINTS: tuple[tuple[str, str], ...] = (
    (
        r"(max_model_len|max seq len|max_position_embeddings|maximum model length|model_max_length).*"
        r"(larger|greater|exceed|longer)|(larger|greater|exceed|longer).*(max_model_len|max_position_embeddings)",
        "the context is longer than the model (or the KV cache) allows: lower runtime parameter "
        "'max_model_len' (or --max-model-len in engine_config.json)",
    ),
    (
        r"out of memory|OutOfMemoryError|No available memory for the cache blocks|KV cache.*(not enough|insufficient)",
        "not enough accelerator memory: lower 'max_model_len', raise 'gpu_memory_utilization' if the GPU is "
        "not shared, use more GPUs (-tp) or a smaller/quantized model; on CPU set 'cpu_kvcache_space_gib' higher",
    ),
    (
        r"tokenizer|tokenizer\.json|tokenizer_config",
        "the model folder's tokenizer files are missing or unreadable: add tokenizer.json / tokenizer_config.json "
        "(or point --tokenizer in engine_config.json at a folder that has them)",
    ),
    (
        r"gated repo|401 Client Error|403 Client Error|Repository Not Found|not a valid model identifier",
        "the hub refused the model: check runtime parameter 'model' and set the HuggingFaceToken credential "
        "for gated models",
    ),
    (
        r"LocalEntryNotFoundError|offline mode|Max retries exceeded|Temporary failure in name resolution|"
        r"Failed to resolve|Connection(Error| refused)|couldn't connect to|Network is unreachable",
        "the model comes from the Hugging Face hub, which cannot be reached: air-gapped? fetch the model "
        "with artifact_uri or load_model, or mount it and set 'model' to its folder",
    ),
    (
        r"trust_remote_code",
        "the model ships its own code: set runtime parameter 'trust_remote_code' to true if you trust it",
    ),
    (
        r"Executor failed|died unexpectedly",
        "one of vLLM's worker processes died (out of memory, a GPU fault or, with ray_nodes, a node that "
        "left the cluster): see the lines above; the platform restarts the deployment",
    ),
    (
        r"RayNodeError",
        "a node of the Ray cluster is gone (its machine, pod or network) and vLLM cannot serve without its "
        "GPUs: the platform restarts the deployment; see that node's log (`start_server.sh ray-worker`)",
    ),
    (
        r"No CUDA GPUs are available|CUDA driver|no NVIDIA driver|Failed to infer device type",
        "vLLM sees no usable GPU: request a GPU for the deployment, or use the CPU environment",
    ),
)


def _strip(line: str) -> str:
    return _PREFIXES.sub("", line).rstrip()


def _message_lines(lines: Sequence[str], start: int) -> str:
    """The exception line at `start` and its indented continuation (pydantic puts the reason there)."""
    qualified = lines[start]
    head, colon, rest = qualified.partition(":")
    parts = [head.rsplit(".", 1)[-1] + colon + rest]  # pydantic_core._pydantic_core.ValidationError -> ValidationError
    for line in lines[start + 1 :]:
        if not line.startswith(" ") or line.startswith("  File "):
            break
        if not line.strip().startswith(_NOISE):
            parts.append(line.strip())
    return _DETAIL.sub("", " ".join(parts)).strip()


def exception_of(lines: Sequence[str]) -> str | None:
    """'Type: message' of the exception a process died of, from the end of its output; None if none shows.

    Each traceback ends with its exception line; the first traceback in the output's last lines
    is the root cause (later ones are raised because of it: chained, re-raised, or a parent
    process reporting its child's death)."""
    stripped = [_strip(line) for line in lines]
    found: list[int] = []  # where the exception line ending each traceback is, in order
    in_traceback = False
    for i, line in enumerate(stripped):
        if line == _TRACEBACK:
            in_traceback = True
        elif in_traceback and not line.startswith(" ") and _EXCEPTION.match(line):
            found.append(i)
            in_traceback = False
    if not found:  # no traceback: the last line that reads like an exception (a logged error)
        found = [i for i, line in enumerate(stripped) if ":" in line and _EXCEPTION.match(line)][-1:]
    if not found:
        return None
    cause = _message_lines(stripped, found[0])
    return cause if len(cause) <= MAX_CAUSE_CHARS else cause[: MAX_CAUSE_CHARS - 3] + "..."


def hint_for(cause: str) -> str | None:
    for pattern, hint in HINTS:
        if re.search(pattern, cause, flags=re.IGNORECASE):
            return hint
    return None


def summary(what: str, lines: Sequence[str]) -> str:
    """One line: what happened, the exception behind it and, when recognised, what to do."""
    cause = exception_of(lines)
    if cause is None:
        return f"{what} (no exception in its output; see its last log lines)"
    hint = hint_for(cause)
    return f"{what}: {cause}" + (f" → {hint}" if hint else "")
