"""Where the time to ready goes: the supervisor's own phases (the model's hook, the fetch, vLLM from
launch to healthy, DRUM until a worker answers) and those vLLM logs as it starts (when its Python
has imported vLLM and when its engine process is up, which tell the cost of starting processes;
weights read, model loaded, compile, graph capture, the engine set up, its API up), in one log
line and one platform event once the deployment answers. vLLM's figures are read from its output
as the supervisor relays it. Before a start, `check` says which phases will be cold
(`cold_or_warm`)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vllm_dropin.config import vllm_flags
from vllm_dropin.launch import model_infos, process_env
from vllm_dropin.planning.plan import LaunchPlan

# vLLM's own lines (v0.25-0.32) and the phase each times; a phase logged by several engines (data
# parallel) keeps the longest, the one the deployment waited for.
VLLM_PHASES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("weights read", re.compile(r"Loading weights took (?P<s>[\d.]+) seconds")),
    ("model loaded", re.compile(r"Model loading took (?P<gib>[\d.]+) GiB(?: memory)? and (?P<s>[\d.]+) seconds")),
    ("compile", re.compile(r"torch\.compile took (?P<s>[\d.]+) s in total")),
    ("graph capture", re.compile(r"Graph capturing finished in (?P<s>[\d.]+) secs")),
    ("engine set up", re.compile(r"init engine \(profile, create kv cache, warmup model\) took (?P<s>[\d.]+) s")),
)
# vLLM's lines that mark how far its start has come, timed from its launch, and whether the first
# such line counts (else the latest): the first API server has imported vLLM and read its flags;
# the engine processes (one per data-parallel rank) have imported vLLM in turn.
MILESTONES: tuple[tuple[str, str, bool], ...] = (
    ("imported", "non-default args:", True),
    ("engine process up", "Initializing a V1 LLM engine", False),
)
API_UP = "Application startup complete"  # uvicorn's, once per vLLM API server
VLLM_PHASE = "vLLM to healthy"  # ours, which vLLM's own phases detail


@dataclass
class StartupTimings:
    """The phases of one start, noted as they end (vLLM's from its relay thread)."""

    clock: Callable[[], float] = time.monotonic
    began: float = field(init=False)
    ours: dict[str, tuple[float, str]] = field(default_factory=dict)  # phase -> seconds, detail
    vllm: dict[str, tuple[float, str]] = field(default_factory=dict)
    launched: float | None = None  # when vLLM's process started
    reached: dict[str, float] = field(default_factory=dict)  # milestone -> seconds from vLLM's launch
    api_up: float | None = None  # seconds from vLLM's launch to its last API server up
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.began = self.clock()

    def took(self, phase: str, seconds: float, detail: str = "") -> None:
        self.ours[phase] = (seconds, detail)

    def vllm_launched(self) -> None:
        """vLLM's process starts: what came before besides the phases noted is checks and planning
        (vLLM's parser run on the flags, pre-flight, the plan)."""
        self.launched = self.clock()
        noted = sum(seconds for seconds, _ in self.ours.values())
        self.took("checks and planning", self.launched - self.began - noted)

    def note(self, line: str) -> None:
        """A line of vLLM's output: the phase it times, if any."""
        if API_UP in line and self.launched is not None:
            self.api_up = self.clock() - self.launched
            return
        for milestone, text, first in MILESTONES:
            if text in line and self.launched is not None:
                with self._lock:
                    if not (first and milestone in self.reached):
                        self.reached[milestone] = self.clock() - self.launched
                return
        for phase, pattern in VLLM_PHASES:
            found = pattern.search(line)
            if found is None:
                continue
            seconds = float(found["s"])
            detail = f"{float(found['gib']):.2f} GiB" if "gib" in found.groupdict() else ""
            with self._lock:
                if seconds >= self.vllm.get(phase, (-1.0, ""))[0]:
                    self.vllm[phase] = (seconds, detail)
            return

    def line(self) -> str:
        """'time to ready 82.4 s: load_model 0.0 s; fetch 2.1 s (1.90 GB); checks and planning 0.9 s;
        vLLM to healthy 78.3 s (imported at 9.1 s; engine process up at 18.0 s; weights read 0.3 s;
        model loaded 1.7 s, 1.82 GiB; compile 12.7 s; ...; API up at 77.9 s); DRUM answering 2.0 s'."""
        inside = [f"{milestone} at {seconds:.1f} s" for milestone, seconds in self.reached.items()]
        inside += [
            f"{phase} {seconds:.1f} s" + (f", {detail}" if detail else "")
            for phase, (seconds, detail) in self.vllm.items()
        ]
        if self.api_up is not None:
            inside.append(f"API up at {self.api_up:.1f} s")
        parts = []
        for phase, (seconds, detail) in self.ours.items():
            details = [detail] * bool(detail) + (inside if phase == VLLM_PHASE else [])
            parts.append(f"{phase} {seconds:.1f} s" + (f" ({'; '.join(details)})" if details else ""))
        return f"time to ready {self.clock() - self.began:.1f} s: " + "; ".join(parts)


def cold_or_warm(plan: LaunchPlan) -> list[str]:
    """For `check`: which phases of the next start will be cold, from what `cache_dir` holds."""
    lines = []
    caches = process_env.cache_env(plan.cache_dir)
    if plan.model.artifact is None and not plan.model.local:
        hub = Path(caches["HF_HOME"])
        cached = any(hub.glob(f"hub/models--{plan.model.ref.replace('/', '--')}/snapshots/*/config.json"))
        lines.append(f"weights: {'in the hub cache' if cached else 'downloaded from the hub (cold)'} under {hub}")
    lines.append(model_infos.describe())
    if vllm_flags.long_flag(plan.engine_args, "enforce_eager") in (True, "true", "True"):
        lines.append("compile and graph capture: none (--enforce-eager)")
        return lines
    compiled = Path(caches["VLLM_CACHE_ROOT"]) / "torch_compile_cache"
    entries = sorted(p.name for p in compiled.iterdir()) if compiled.is_dir() else []
    if entries:
        lines.append(
            f"compile: {len(entries)} compiled model(s) in {compiled}, reused when this model, its flags and vLLM "
            "match (warm), else compiled anew"
        )
    else:
        lines.append(f"compile: nothing in {compiled} (cold: the first start compiles; keep cache_dir on a volume)")
    lines.append("CUDA graph capture: at every start, on GPUs (seconds; --enforce-eager skips it and runs slower)")
    return lines
