"""`serve`: resolve the plan, run the hook, start vLLM and DRUM together, and own their lifecycle.

DRUM starts alongside vLLM (its startup overlaps vLLM's) and its workers wait for vLLM's health
before they serve. If either child dies, the other is stopped and we exit non-zero so the
platform restarts the container. SIGTERM/SIGINT stop DRUM first (it drains in-flight
requests), then vLLM; exit 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import traceback
from pathlib import Path

from .. import engine_config, events, hook, runtime_params
from .. import plan as plan_mod
from ..errors import ConfigError
from . import drum_server, vllm_server
from .processes import Child

log = logging.getLogger("vllm_dropin")

GRACE_S = {"drum": 25.0, "vllm": 15.0}  # DRUM drains in-flight requests; vLLM then exits
WATCH_S = 0.5


def _install_signal_handlers(stop: threading.Event) -> dict[int, object]:
    def handler(signum: int, _frame: object) -> None:
        log.info("received %s: shutting down", signal.Signals(signum).name)
        stop.set()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def _watch(children: list[Child], stop: threading.Event) -> Child | None:
    """Block until a child exits (returned) or `stop` is set (None)."""
    while not stop.wait(WATCH_S):
        for child in children:
            if child.poll() is not None:
                return child
    return None


def serve(code_dir: Path, address: str) -> int:
    reporter = events.from_environ()
    stop = threading.Event()
    previous = _install_signal_handlers(stop)
    children: list[Child] = []
    try:
        values = runtime_params.read()
        reporter.set_verify_ssl(values["verifySSL"])
        engine_args = engine_config.load(code_dir)
        user_hook = hook.find(code_dir)
        if user_hook is not None:
            # Fail on a bad flag before a long load_model: vLLM's parser, in vLLM's Python.
            early = plan_mod.build(values, engine_args, code_dir, assume_hook_fills=True)
            vllm_server.check(early, values, engine_args, code_dir, assume_hook_fills=True)
            reporter.report("load_model hook started", f"running load_model from {code_dir / hook.CUSTOM_FILE}")
            hook.run(user_hook, code_dir)
            reporter.report("load_model hook finished")
            if stop.is_set():  # asked to stop while the hook ran: launch nothing
                return 0
        plan = plan_mod.build(values, engine_args, code_dir)
        vllm_server.prepare_cache(plan)

        vllm, endpoint = vllm_server.start(plan, values, engine_args, code_dir)
        children.append(vllm)
        reporter.report("vLLM launching", f"serving {plan.model.ref}")
        drum = drum_server.start(plan, endpoint, address)
        children.append(drum)
        waited = vllm_server.wait_healthy(vllm, endpoint, plan.startup_timeout, stop, others=[drum])
        if waited is None:
            return 0
        reporter.report("vLLM ready", f"healthy after {waited:.1f} s")
        log.info("DRUM serving on %s once its workers see vLLM healthy", address)
        dead = _watch(children, stop)
        if dead is None:
            return 0
        reason = f"{dead.name} exited unexpectedly with code {dead.poll()}"
        log.error("%s; last log lines:\n%s", reason, dead.tail())
        reporter.report("Deployment failed", reason)
        return 1
    except ConfigError as exc:
        log.error("%s", exc)
        reporter.report("Deployment failed", str(exc))
        return 2
    except hook.HookError as exc:
        cause = exc.__cause__
        traceback.print_exception(type(cause), cause, cause.__traceback__ if cause else None)
        log.error("%s", exc)
        reporter.report("Deployment failed", str(exc))
        return 3
    except vllm_server.StartupError as exc:
        log.error("%s", exc)
        reporter.report("Deployment failed", str(exc).splitlines()[0])
        return 4
    finally:
        for child in reversed(children):
            code = child.stop(GRACE_S[child.name])
            log.info("%s stopped (exit code %s)", child.name, code)
        reporter.close()
        for sig, old in previous.items():
            signal.signal(sig, old)
