"""Start `drum server` (textgeneration) with the environment's adapter as its custom model."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from .. import plan as plan_mod
from ..plan import LaunchPlan
from .processes import Child
from .vllm_server import VllmEndpoint

ADAPTER_CODE_DIR = Path(__file__).resolve().parent.parent / "adapter" / "drum_code"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_TARGET = "resultText"

# DRUM's gunicorn reads these as runtime parameters. A sync worker answers one request at a
# time; gevent lets one worker hold many chat streams and batch requests while they wait on
# vLLM. Users who set them keep their values.
DRUM_SERVER_DEFAULTS = {
    "DRUM_GUNICORN_WORKER_CLASS": {"type": "string", "payload": "gevent"},
    "DRUM_WORKER_CONNECTIONS": {"type": "numeric", "payload": 1024},
}


def default_workers(cpus: int | None) -> int:
    """DRUM worker processes when the user sets none: one per 4 cores, 1 to 8.

    One gevent worker holds thousands of connections but re-encodes every streamed chunk on one
    core (measured on an H100 host: 64 streams through one worker at 0.46 of direct); GPU hosts
    have cores to spare, 2-core CPU hosts do not."""
    return max(1, min(8, (cpus or 1) // 4))


def drum_env(plan: LaunchPlan, endpoint: VllmEndpoint, base: Mapping[str, str]) -> dict[str, str]:
    """DRUM's environment: the platform's (it needs DATAROBOT_* and runtime params) plus the adapter's settings."""
    env = dict(base)
    env.update(plan_mod.cache_env(plan.cache_dir))
    env.setdefault("TARGET_NAME", DEFAULT_TARGET)
    env.setdefault("MAX_WORKERS", str(default_workers(os.cpu_count())))  # CUSTOM_MODEL_WORKERS still wins
    # Workers wait in load_model until vLLM is healthy; gunicorn kills a worker that has not
    # booted within its timeout, so that timeout must outlast vLLM's startup.
    defaults = {
        **DRUM_SERVER_DEFAULTS,
        "DRUM_CLIENT_REQUEST_TIMEOUT": {"type": "numeric", "payload": min(3600, plan.startup_timeout + 60)},
    }
    for name, payload in defaults.items():
        env.setdefault(f"MLOPS_RUNTIME_PARAM_{name}", json.dumps(payload))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), base.get("PYTHONPATH", "")) if p)
    env.update(
        DROPIN_UPSTREAM_URL=endpoint.base_url,
        DROPIN_UPSTREAM_KEY=endpoint.api_key,
        DROPIN_UPSTREAM_MODEL=endpoint.model,
        DROPIN_BATCH=plan.batch.to_json(),
        DROPIN_STARTUP_TIMEOUT=str(plan.startup_timeout),
    )
    return env


def drum_command(address: str) -> list[str]:
    beside = Path(sys.executable).with_name("drum")
    drum = str(beside) if beside.exists() else "drum"
    return [
        drum,
        "server",
        "--code-dir",
        str(ADAPTER_CODE_DIR),
        "--target-type",
        "textgeneration",
        "--address",
        address,
    ]


def start(plan: LaunchPlan, endpoint: VllmEndpoint, address: str) -> Child:
    return Child("drum", drum_command(address), drum_env(plan, endpoint, os.environ), secrets=[endpoint.api_key])
