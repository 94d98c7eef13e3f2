"""`serve`: run the pipeline (hook, fetch, plan), then start vLLM and DRUM together and own their lifecycle.

DRUM starts alongside vLLM (its startup overlaps vLLM's) and its workers wait for vLLM's health
before they serve. If either child dies, the other is stopped and we exit non-zero so the
platform restarts the container. SIGTERM/SIGINT stop DRUM first (it drains in-flight
requests), then vLLM; exit 0. Every failure is a `DropinError` whose exit code is the
container's (README: exit codes).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future
from pathlib import Path

from vllm_dropin import events, health, pipeline
from vllm_dropin.config import Config, runtime_params
from vllm_dropin.config.settings import Settings
from vllm_dropin.contract import Layout, VllmEndpoint
from vllm_dropin.errors import ArtifactError, ConfigError, DropinError, ExitCode, report_failure
from vllm_dropin.launch import drum_server, ray_cluster, startup_timings, vllm_server
from vllm_dropin.launch.adapter_loader import AdapterLoader
from vllm_dropin.launch.adapter_service import AdapterService
from vllm_dropin.launch.processes import Child
from vllm_dropin.launch.startup_timings import StartupTimings
from vllm_dropin.launch.vllm_command import VLLM_DEFAULT_LORA_RANK
from vllm_dropin.model import hook as model_hook
from vllm_dropin.model import lora_store, preflight
from vllm_dropin.model.artifacts import fetch as artifacts
from vllm_dropin.model.facts import ModelFacts
from vllm_dropin.model.source import ModelSource
from vllm_dropin.planning.plan import LaunchPlan

log = logging.getLogger("vllm_dropin")

# Stopping after the deployment was ready and asked to stop: DRUM drains in-flight requests,
# then vLLM exits. Any other stop (a failed start, a dead child) has nothing to drain.
DRAIN_GRACE_S = {"drum": 25.0, "vllm": 15.0, "ray-nodes": 2.0, "ray": 10.0}
FAILED_GRACE_S = 2.0
WATCH_S = 0.5
LAYOUT_FILE = "layout.json"
DRUM_READY_TIMEOUT_S = 600  # after vLLM is healthy, how long the timings wait for a DRUM worker


def _install_signal_handlers(stop: threading.Event) -> dict[int, object]:
    def handler(signum: int, _frame: object) -> None:
        log.info("received %s: shutting down", signal.Signals(signum).name)
        stop.set()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def _in_background(name: str, work: Callable[[], None]) -> Future[None]:
    """`work` in a daemon thread; its end, or its error, in the Future returned."""
    done: Future[None] = Future()

    def run() -> None:
        try:
            work()
            done.set_result(None)
        except BaseException as exc:  # raised where the pipeline waits for it
            done.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return done


def _watch(children: list[Child], stop: threading.Event) -> Child | None:
    """Block until a child exits (returned) or `stop` is set (None)."""
    while not stop.wait(WATCH_S):
        for child in children:
            if child.poll() is not None:
                return child
    return None


class Serving:
    """The pipeline's effects as `serve` has them: done, reported to the platform, stoppable, timed."""

    def __init__(self, reporter: events.EventReporter, stop: threading.Event, timings: StartupTimings) -> None:
        self.reporter = reporter
        self.stop = stop
        self.timings = timings
        self.facts: ModelFacts | None = None  # the model as the pipeline read it (adapters are checked against it)
        self._flags: Future[None] | None = None  # vLLM's parser on the flags, run beside the hook and the fetch
        self._abandon_flags = threading.Event()
        self._hook: Future[None] | None = None  # load_model, run beside the flag check

    def check_flags(self, config: Config) -> None:
        """vLLM's parser checks the flags in the background (it imports vLLM: seconds a start) while
        the model arrives; a bad flag stops the fetch, and ends the start while a hook runs."""
        self._flags = _in_background("check-flags", lambda: vllm_server.check_flags(config, self._abandon_flags.is_set))

    def _flags_checked(self) -> None:
        """Wait for the flag check; its error, if any."""
        if self._flags is not None:
            self._flags.result()

    def _flags_settled(self) -> None:
        """Once the model has arrived: the check's error if it has one by now. A check still running
        is stopped instead of waited for: vLLM's process parses the same flags before it loads
        anything, with the same one-line error, so waiting would only put an import of vLLM first."""
        if self._flags is not None and not self._flags.done():
            self._abandon_flags.set()
        self._flags_checked()

    def _flags_failed(self) -> bool:
        return self._flags is not None and self._flags.done() and self._flags.exception() is not None

    def run_hook(self, hook: pipeline.Hook, config: Config) -> bool:
        """load_model beside the flag check, which would otherwise delay every start with a hook. A bad
        flag still ends the start as soon as it is known, and a stop request at once: a running hook
        cannot be stopped, so it is left to the process's end (`hook_running`)."""
        self.reporter.report(
            "load_model hook started", f"running load_model from {config.code_dir / model_hook.CUSTOM_FILE}"
        )
        began = time.monotonic()
        self._hook = _in_background("load-model", lambda: model_hook.run(hook, config.code_dir))
        while True:
            ran = futures.wait([self._hook], timeout=WATCH_S).done
            if self._flags_failed():
                self._flags_checked()  # a bad flag is the first thing to fix
            if ran:
                break
            if self.stop.is_set():
                return False  # asked to stop while the hook ran: launch nothing
        self._hook.result()
        self.timings.took("load_model", time.monotonic() - began)
        self.reporter.report("load_model hook finished")
        return not self.stop.is_set()

    def hook_running(self) -> bool:
        """load_model was left running (a bad flag or a stop request ended the start first)."""
        return self._hook is not None and not self._hook.done()

    def close(self) -> None:
        """Stop a flag check still running (its process with it) and wait for it to end."""
        if self._flags is not None:
            self._abandon_flags.set()
            futures.wait([self._flags])

    def no_model(self, error: ConfigError, config: Config) -> ModelSource:
        raise error

    def fetch(self, config: Config, model: ModelSource) -> bool:
        """artifact_uri into the cache; False if asked to stop meanwhile (what arrived whole stays cached)."""
        self.reporter.report("Fetching model", model.artifact or "")
        began = time.monotonic()
        try:
            folder = artifacts.fetch(
                config.settings, config.cache_dir, self.reporter, lambda: self.stop.is_set() or self._flags_failed()
            )
        except ArtifactError:
            self._flags_checked()  # a bad flag is the first thing to fix (and what stopped the fetch)
            if self.stop.is_set():
                return False
            raise
        self.timings.took("fetch", time.monotonic() - began, fetched(folder))
        self._flags_settled()
        return True

    def preflight(self, facts: ModelFacts, config: Config) -> None:
        self._flags_settled()  # the model is here (a hook's, or fetched): vLLM's process checks the flags too
        self.facts = facts
        preflight.check(facts, config.settings, config.engine_args, os.environ)
        self.say("preflight", "passed")

    def say(self, stage: str, text: str) -> None:
        log.info("%s: %s", stage, text)


def _over_ray_cluster(
    plan: LaunchPlan,
    reporter: events.EventReporter,
    stop: threading.Event,
    children: list[Child],
    port: int,
    nodes: int,
) -> LaunchPlan | None:
    """Start the Ray head (a watched child), wait for every node, then watch that they stay (a child
    too); the plan over the cluster's GPUs. None if asked to stop meanwhile."""
    ray_cluster.require_ray()
    head = ray_cluster.start_head(port)
    children.append(head)
    address = f"{ray_cluster.node_ip()}:{port}"
    reporter.report("Ray head started", f"waiting for {nodes} nodes on port {port}")
    cluster = ray_cluster.wait_for_nodes(address, nodes, plan.startup_timeout, stop.is_set, head)
    if cluster is None:
        return None
    children.append(ray_cluster.start_watch(address, nodes))
    return ray_cluster.with_cluster(plan, address, *cluster)


def _run(
    code_dir: Path,
    address: str,
    serving: Serving,
    children: list[Child],
    ready: threading.Event,
    run_dir: Path,
    services: list[AdapterService],
) -> ExitCode:
    reporter, stop, timings = serving.reporter, serving.stop, serving.timings
    settings = runtime_params.read()
    reporter.set_verify_ssl(settings.verifySSL)
    drum_server.check_address(address)  # before a long load_model or download, not after
    plan = pipeline.run(code_dir, settings, os.environ, serving)
    if plan is None:
        return ExitCode.OK
    vllm_server.prepare_cache(plan.cache_dir)
    if settings.ray_nodes:
        plan = _over_ray_cluster(plan, reporter, stop, children, settings.ray_port, settings.ray_nodes)
        if plan is None:
            return ExitCode.OK

    layout_file = run_dir / LAYOUT_FILE
    vllm, endpoint = vllm_server.start(plan, layout_file, timings.note)
    timings.vllm_launched()
    children.append(vllm)
    if plan.adapter_store:
        assert serving.facts is not None  # a plan comes after the pre-flight
        services.append(_adapter_service(plan, settings, serving.facts, endpoint, layout_file, reporter))
    reporter.report("vLLM launching", f"serving {plan.model.ref}")
    children.append(drum_server.start(plan, endpoint, address, layout_file))
    waited = vllm_server.wait_healthy(vllm, endpoint, plan.startup_timeout, stop.is_set, children)
    if waited is None:
        return ExitCode.OK
    reporter.report("vLLM ready", f"healthy after {waited:.1f} s; {Layout.read(layout_file).describe()}")
    timings.took(startup_timings.VLLM_PHASE, waited)
    ready.set()
    log.info("DRUM serving on %s once its workers see vLLM healthy", address)
    threading.Thread(target=_timed_to_ready, args=(address, timings, reporter, stop), daemon=True).start()
    dead = _watch(children, stop)
    if dead is None:
        return ExitCode.OK
    raise vllm_server.exited(dead, dead.poll(), startup=False)


def _adapter_service(
    plan: LaunchPlan,
    settings: Settings,
    facts: ModelFacts,
    endpoint: VllmEndpoint,
    layout_file: Path,
    reporter: events.EventReporter,
) -> AdapterService:
    """The loader of lora_adapters_uri's adapters (checked against the model's tensors as the pipeline
    read them), answering DRUM's workers before they start; the rank vLLM takes is read from the
    layout once an adapter is asked for (vLLM is healthy by then)."""
    uri = lora_store.store_uri(settings)
    assert uri is not None
    rank = lambda: _lora_rank(layout_file)  # noqa: E731
    loader = AdapterLoader(uri, settings, plan.cache_dir, plan.model, facts.tensors, endpoint, rank, reporter)
    return AdapterService(loader, drum_server.adapter_socket(layout_file))


def _lora_rank(layout_file: Path) -> int:
    return Layout.read(layout_file).lora_rank or VLLM_DEFAULT_LORA_RANK


def fetched(folder: Path) -> str:
    """The fetched model's size, as the timings show it."""
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    return f"{size / 1e9:.2f} GB"


def _timed_to_ready(
    address: str, timings: StartupTimings, reporter: events.EventReporter, stop: threading.Event
) -> None:
    """Once a DRUM worker answers (vLLM is healthy by then): where the time to ready went, logged
    and reported. Nothing for an address that is not TCP (DRUM cannot be asked there)."""
    url = drum_server.local_url(address, "/v1/models")
    if url is None:
        return
    try:
        answered = health.wait(url, DRUM_READY_TIMEOUT_S, stop.is_set)
    except TimeoutError:
        return
    if answered is not None:
        timings.took("DRUM answering", answered)
        line = timings.line()
        log.info("%s", line)
        reporter.report("Startup timings", line)


def serve(code_dir: Path, address: str) -> int:
    reporter = events.EventReporter(os.environ)
    stop = threading.Event()
    previous = _install_signal_handlers(stop)
    serving = Serving(reporter, stop, StartupTimings())
    children: list[Child] = []
    ready = threading.Event()
    run_dir = Path(tempfile.mkdtemp(prefix="vllm-dropin-run-"))  # this launch's files, gone when it ends
    services: list[AdapterService] = []
    try:
        exit_code = _run(code_dir, address, serving, children, ready, run_dir, services)
    except DropinError as exc:
        exit_code = report_failure(exc, reporter)
    finally:
        serving.close()
        draining = ready.is_set() and stop.is_set() and all(child.poll() is None for child in children)
        for child in reversed(children):
            code = child.stop(DRAIN_GRACE_S[child.name] if draining else FAILED_GRACE_S)
            log.info("%s stopped (exit code %s)", child.name, code)
        for service in services:
            service.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        reporter.close()
        for sig, old in previous.items():
            signal.signal(sig, old)
    if serving.hook_running():
        _exit_leaving_hook(exit_code)
    return exit_code


def _exit_leaving_hook(exit_code: int) -> None:
    """End the process now: an interpreter's normal exit would wait for the threads a running
    load_model started (a download's pool, say), which nothing can stop."""
    log.info("load_model is still running: the process ends without it")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)
