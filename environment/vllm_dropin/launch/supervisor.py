"""`serve`: prepare the plan, run the model's hook, start vLLM and DRUM together, own their lifecycle.

DRUM starts alongside vLLM (its startup overlaps vLLM's) and its workers wait for vLLM's health
before they serve. If either child dies, the other is stopped and we exit non-zero so the
platform restarts the container. SIGTERM/SIGINT stop DRUM first (it drains in-flight
requests), then vLLM; exit 0. Every failure is a `DropinError` whose exit code is the
container's (README: exit codes).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import traceback
from pathlib import Path

from .. import events, preflight, runtime_params, user_hook
from .. import plan as plan_mod
from ..artifacts import fetch as artifacts
from ..errors import ArtifactError, DropinError, ExitCode, HookError
from ..plan import LaunchPlan
from ..prepare import prepare
from ..settings import Settings
from . import drum_server, ray_cluster, vllm_server
from .processes import Child

log = logging.getLogger("vllm_dropin")

# Stopping after the deployment was ready and asked to stop: DRUM drains in-flight requests,
# then vLLM exits. Any other stop (a failed start, a dead child) has nothing to drain.
DRAIN_GRACE_S = {"drum": 25.0, "vllm": 15.0, "ray-nodes": 2.0, "ray": 10.0}
FAILED_GRACE_S = 2.0
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


def report_failure(exc: DropinError, reporter: events.EventReporter | None = None) -> ExitCode:
    """The one handler of every failure: log its line (and detail), report it, give its exit code."""
    if isinstance(exc, HookError) and exc.__cause__ is not None:  # the user's own code: its traceback helps
        cause = exc.__cause__
        traceback.print_exception(type(cause), cause, cause.__traceback__)
    if exc.detail is not None:
        log.info("last log lines of the failed process:\n%s", exc.detail)
    log.error("%s", exc)  # last, so that it is the pod log's last line of ours
    if reporter is not None:
        reporter.report("Deployment failed", str(exc))
    return exc.exit_code


def _fetched(
    plan: LaunchPlan, settings: Settings, code_dir: Path, reporter: events.EventReporter, stop: threading.Event
) -> LaunchPlan | None:
    """The plan once artifact_uri is fetched into the cache; None if asked to stop meanwhile (what
    arrived whole stays cached)."""
    reporter.report("Fetching model", plan.model.artifact or "")
    try:
        artifacts.fetch(settings, plan.cache_dir, reporter, stop.is_set)
    except ArtifactError:
        if stop.is_set():
            return None
        raise
    return plan_mod.settle_model(plan, settings, code_dir)


def _over_ray_cluster(
    plan: LaunchPlan, settings: Settings, reporter: events.EventReporter, stop: threading.Event, children: list[Child]
) -> LaunchPlan | None:
    """Start the Ray head (a watched child), wait for every node, then watch that they stay (a child
    too); the plan over the cluster's GPUs. None if asked to stop meanwhile."""
    ray_cluster.require_ray()
    head = ray_cluster.start_head(settings.ray_port)
    children.append(head)
    address = f"{ray_cluster.node_ip()}:{settings.ray_port}"
    reporter.report("Ray head started", f"waiting for {settings.ray_nodes} nodes on port {settings.ray_port}")
    nodes = settings.ray_nodes or 1
    cluster = ray_cluster.wait_for_nodes(address, nodes, plan.startup_timeout, stop.is_set, head)
    if cluster is None:
        return None
    children.append(ray_cluster.start_watch(address, nodes))
    return ray_cluster.with_cluster(plan, address, *cluster)


def _run(
    code_dir: Path,
    address: str,
    reporter: events.EventReporter,
    stop: threading.Event,
    children: list[Child],
    ready: threading.Event,
) -> ExitCode:
    settings = runtime_params.read()
    reporter.set_verify_ssl(settings.verifySSL)
    prepared = prepare(code_dir, settings, os.environ)
    drum_server.check_address(address)  # before a long load_model or download, not after
    if prepared.load_model is not None or prepared.plan.model.assumed:
        # Fail on a bad flag before a long load_model or download: vLLM's parser, in vLLM's Python.
        vllm_server.check(prepared.plan)
    if prepared.load_model is not None:
        reporter.report("load_model hook started", f"running load_model from {code_dir / user_hook.CUSTOM_FILE}")
        user_hook.run(prepared.load_model, code_dir)
        reporter.report("load_model hook finished")
        if stop.is_set():  # asked to stop while the hook ran: launch nothing
            return ExitCode.OK
    plan = prepared.settled()
    if plan.model.artifact is not None:
        plan = _fetched(plan, settings, code_dir, reporter, stop)
        if plan is None:
            return ExitCode.OK
    preflight.check(plan, settings, os.environ)
    vllm_server.prepare_cache(plan)
    if settings.ray_nodes:
        plan = _over_ray_cluster(plan, settings, reporter, stop, children)
        if plan is None:
            return ExitCode.OK

    vllm, endpoint = vllm_server.start(plan)
    children.append(vllm)
    reporter.report("vLLM launching", f"serving {plan.model.ref}")
    children.append(drum_server.start(plan, endpoint, address))
    waited = vllm_server.wait_healthy(vllm, endpoint, plan.startup_timeout, stop.is_set, children)
    if waited is None:
        return ExitCode.OK
    reporter.report("vLLM ready", f"healthy after {waited:.1f} s")
    ready.set()
    log.info("DRUM serving on %s once its workers see vLLM healthy", address)
    dead = _watch(children, stop)
    if dead is None:
        return ExitCode.OK
    raise vllm_server.exited(dead, dead.poll(), startup=False)


def serve(code_dir: Path, address: str) -> int:
    reporter = events.EventReporter(os.environ)
    stop = threading.Event()
    previous = _install_signal_handlers(stop)
    children: list[Child] = []
    ready = threading.Event()
    try:
        return _run(code_dir, address, reporter, stop, children, ready)
    except DropinError as exc:
        return report_failure(exc, reporter)
    finally:
        draining = ready.is_set() and stop.is_set() and all(child.poll() is None for child in children)
        for child in reversed(children):
            code = child.stop(DRAIN_GRACE_S[child.name] if draining else FAILED_GRACE_S)
            log.info("%s stopped (exit code %s)", child.name, code)
        reporter.close()
        for sig, old in previous.items():
            signal.signal(sig, old)
