"""Start `drum server` (textgeneration) with the environment's adapter as its custom model."""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from gunicorn.util import parse_address

from vllm_dropin.config.settings import PARAMETERS
from vllm_dropin.contract import DEFAULT_TARGET, MULTIPROC_DIR_VAR, TARGET_VAR, VllmEndpoint, WorkerContract
from vllm_dropin.errors import StartupError
from vllm_dropin.launch import process_env
from vllm_dropin.launch.processes import Child
from vllm_dropin.planning.plan import LaunchPlan

DRUM_CODE_DIR = Path(__file__).resolve().parents[1] / "drum" / "drum_code"

# DRUM's gunicorn reads these as runtime parameters. A sync worker answers one request at a
# time; gevent lets one worker hold many chat streams and batch requests while they wait on
# vLLM. DRUM's gevent worker closes a new connection whose first byte has not been read within
# 2 s; a worker busy relaying hundreds of streams reads late, and those clients get ReadError.
# Keep-alive (DRUM: off)
# spares a client a new connection per request. Users who set them keep their values.
DRUM_SERVER_DEFAULTS = {
    "DRUM_GUNICORN_WORKER_CLASS": {"type": "string", "payload": "gevent"},
    "DRUM_WORKER_CONNECTIONS": {"type": "numeric", "payload": 1024},
    "DRUM_GUNICORN_FIRST_BYTE_TIMEOUT": {"type": "numeric", "payload": 30},
    "DRUM_GUNICORN_KEEP_ALIVE": {"type": "numeric", "payload": 5},
}

# gunicorn's command-line settings from the environment; ours is reuse_port: each DRUM worker
# listens on a socket of its own (SO_REUSEPORT) and the kernel spreads new connections over them.
# On gunicorn's one shared socket the worker that wakes first accepts a burst of connections
# alone, and a keep-alive client stays where it landed, so a few workers carry most of the load.
# A user's GUNICORN_CMD_ARGS replaces ours.
GUNICORN_ARGS_VAR = "GUNICORN_CMD_ARGS"
URL_PREFIX_VAR = "URL_PREFIX"  # DRUM's prefix of its routes (its URL_PREFIX_ENV_VAR_NAME)
GUNICORN_ARGS = "--reuse-port"


def tcp_address(address: str) -> tuple[str, int] | None:
    """(host, port) that gunicorn binds for `address` (its own reading: 0.0.0.0:8080, [::]:8080,
    tcp://...); None for unix:/fd:// addresses, or one gunicorn itself rejects (it names it)."""
    try:
        bound = parse_address(address)
    except RuntimeError:
        return None
    return bound if isinstance(bound, tuple) else None


def local_url(address: str, path: str) -> str | None:
    """The URL of DRUM's `path` (under its URL_PREFIX) from this host, for a TCP `address`."""
    bound = tcp_address(address)
    if bound is None:
        return None
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bound[0], bound[0])
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{bound[1]}{os.environ.get(URL_PREFIX_VAR, '')}{path}"


def check_address(address: str) -> None:
    """DRUM's TCP address is free, known before vLLM's minutes of startup. With reuse_port, gunicorn's
    workers bind, not its master, and a worker that cannot bind is started again and again instead
    of DRUM exiting; a plain bind here finds any listener, sharing or not."""
    bound = tcp_address(address)
    if bound is None:
        return
    family = socket.AF_INET6 if ":" in bound[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds: TIME_WAIT is no listener
        try:
            probe.bind(bound)
        except OSError as exc:
            fix = "another process listens there: stop it, or give" if exc.errno == errno.EADDRINUSE else "give"
            raise StartupError(
                f"DRUM's address {address} cannot be bound ({exc.strerror}); {fix} the entrypoint "
                "a free address of this host with --address (or $ADDRESS)"
            ) from None


def default_workers(cpus: int | None) -> int:
    """DRUM worker processes when the user sets none: one per 2 cores, 1 to 8.

    One gevent worker holds thousands of connections but starts its requests one after another
    and re-encodes every streamed chunk on one core, so a wave of new chats waits in line behind
    each worker; more workers shorten the line (bench/README.md) for a process each. 2-core CPU
    hosts keep one: vLLM's engine needs the cores there."""
    return max(1, min(8, (cpus or 1) // 2))


def drum_env(
    plan: LaunchPlan, endpoint: VllmEndpoint, base: Mapping[str, str], address: str, layout_file: Path
) -> dict[str, str]:
    """DRUM's environment: the platform's (it needs DATAROBOT_* and runtime params) plus the worker
    contract, minus our credential parameters (the workers need none: the contract carries vLLM's key)."""
    secrets = {f"MLOPS_RUNTIME_PARAM_{p.name}" for p in PARAMETERS if p.type == "credential"}
    env = {k: v for k, v in base.items() if k not in secrets}
    env.update(process_env.cache_env(plan.cache_dir))
    if tcp_address(address) is not None:  # gunicorn's unix socket would be unlinked by each worker's bind
        env.setdefault(GUNICORN_ARGS_VAR, GUNICORN_ARGS)
    # The cores the deployment may use, as the plan counted them for vLLM's API servers (a container
    # pinned to 4 cores of a 64-core host gets 2 workers, not 8); CUSTOM_MODEL_WORKERS still wins.
    env.setdefault("MAX_WORKERS", str(default_workers(plan.parallel.cpus)))
    # Workers wait in load_model until vLLM is healthy; gunicorn kills a worker that has not
    # booted within its timeout, so that timeout must outlast vLLM's startup.
    defaults = {
        **DRUM_SERVER_DEFAULTS,
        "DRUM_CLIENT_REQUEST_TIMEOUT": {"type": "numeric", "payload": min(3600, plan.startup_timeout + 60)},
    }
    for name, payload in defaults.items():
        env.setdefault(f"MLOPS_RUNTIME_PARAM_{name}", json.dumps(payload))
    contract = WorkerContract(
        endpoint,
        plan.batch,
        plan.startup_timeout,
        str(layout_file),
        base.get(TARGET_VAR) or DEFAULT_TARGET,
        str(adapter_socket(layout_file)) if plan.adapter_store else None,
        plan.request_log,
    )
    env.update(contract.to_env())
    # the workers' Prometheus values, added up at each scrape (drum.telemetry); fresh per launch
    env[MULTIPROC_DIR_VAR] = str(metrics_dir(layout_file))
    return process_env.with_package_path(env)


def metrics_dir(layout_file: Path) -> Path:
    """Where DRUM's workers keep their Prometheus values: beside the layout, in the launch's folder."""
    return layout_file.parent / "drum-metrics"


def adapter_socket(layout_file: Path) -> Path:
    """Where the supervisor's adapter loader answers DRUM's workers: in the launch's folder."""
    return layout_file.parent / "adapters.sock"


def drum_command(address: str) -> list[str]:
    beside = Path(sys.executable).with_name("drum")
    drum = str(beside) if beside.exists() else "drum"
    return [
        drum,
        "server",
        "--code-dir",
        str(DRUM_CODE_DIR),
        "--target-type",
        "textgeneration",
        "--address",
        address,
    ]


def start(plan: LaunchPlan, endpoint: VllmEndpoint, address: str, layout_file: Path) -> Child:
    env = drum_env(plan, endpoint, os.environ, address, layout_file)
    metrics_dir(layout_file).mkdir(exist_ok=True)
    return Child("drum", drum_command(address), env, secrets=[endpoint.api_key])
