"""The environments the children get: vLLM's scrubbed of secrets, caches kept out of the user's home.

Pure functions of the plan and the base environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from vllm_dropin.contract import UPSTREAM_KEEPALIVE_S
from vllm_dropin.model.artifacts import streaming
from vllm_dropin.planning.plan import LaunchPlan

SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "API_KEY", "APIKEY", "ACCESS_KEY", "CREDENTIAL", "PRIVATE_KEY")
SECRET_PREFIXES = ("MLOPS_RUNTIME_PARAM_", "DATAROBOT_")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding vllm_dropin/


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


def with_package_path(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with this package importable first (children run `-m vllm_dropin...` in any Python)."""
    path = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path}


def vllm_env_additions(plan: LaunchPlan, base: Mapping[str, str], api_key: str) -> dict[str, str]:
    """The variables the environment sets for vLLM on top of the scrubbed base environment."""
    env = {**plan.engine_env, **cache_env(plan.cache_dir)}
    env.update(VLLM_API_KEY=api_key, VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
    env["VLLM_HTTP_TIMEOUT_KEEP_ALIVE"] = str(UPSTREAM_KEEPALIVE_S)
    if plan.model.weights:  # vLLM streams them from the store: its endpoint and keys, else the default chain
        env.update(
            plan.store_env
            if "AWS_ACCESS_KEY_ID" in plan.store_env
            else {**streaming.default_chain(base), **plan.store_env}
        )
    if plan.adapter_store:  # adapters from lora_adapters_uri, loaded by the supervisor as requests name them
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "1"
    if plan.model.local:
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    else:
        if plan.hub_mirror:
            env["HF_ENDPOINT"] = plan.hub_mirror
        token = plan.hf_token or base.get("HF_TOKEN")
        if token:
            env["HF_TOKEN"] = token
    return env


def without_secrets(base: Mapping[str, str]) -> dict[str, str]:
    """`base` minus every variable whose name marks a secret (or the platform's parameters)."""
    return {k: v for k, v in base.items() if not is_secret_name(k)}


def vllm_env(plan: LaunchPlan, base: Mapping[str, str], api_key: str) -> dict[str, str]:
    """vLLM's environment: the base minus every secret, plus exactly what vLLM needs."""
    env = without_secrets(base)
    env.update(vllm_env_additions(plan, base, api_key))
    return env
