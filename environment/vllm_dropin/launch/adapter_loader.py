"""Adapters from lora_adapters_uri loaded into the running vLLM the first time a request names one.

One loader per deployment (in the supervisor, which holds the store's credential and clients):
DRUM's workers ask it through `adapter_service`. Each name is fetched, checked and loaded once,
however many requests ask at once (a lock per name); a name the store lacks is remembered for
MISSING_TTL_S so that a burst of requests for it does not list the store each. vLLM keeps every
loaded adapter listed and its weights least-recently-used (`max_loras` on the GPU, `max_cpu_loras`
in CPU memory), reading a dropped one again from its folder in cache_dir.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vllm_dropin.config.settings import Settings
from vllm_dropin.contract import VllmEndpoint
from vllm_dropin.errors import ArtifactError, ArtifactMissing, ConfigError
from vllm_dropin.events import EventReporter
from vllm_dropin.model import lora_store
from vllm_dropin.model.artifacts.uri import ArtifactUri
from vllm_dropin.model.footprint import Tensors
from vllm_dropin.model.lora import AdapterProblem
from vllm_dropin.model.source import ModelSource

log = logging.getLogger("vllm_dropin")
MISSING_TTL_S = 10.0
LOAD_TIMEOUT_S = 300.0  # vLLM reading an adapter's weights into its engine
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # vLLM is on loopback


@dataclass(frozen=True)
class Outcome:
    """What became of a name: 200 loaded, 404 not in the store, 400 cannot be served, 502 the
    store failed. `message` names the adapter (for the client that named it), `reason` does not
    (for a batch row: a cell's text never goes into an error)."""

    status: int
    message: str = ""
    reason: str = ""


LOADED = Outcome(200)


class AdapterLoader:
    def __init__(
        self,
        uri: ArtifactUri,
        settings: Settings,
        cache_dir: Path,
        model: ModelSource,
        base: Tensors | None,
        vllm: VllmEndpoint,
        max_rank: Callable[[], int],
        reporter: EventReporter,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.uri, self.settings, self.cache_dir, self.model, self.base = uri, settings, cache_dir, model, base
        self.vllm, self.max_rank, self.reporter, self.clock = vllm, max_rank, reporter, clock
        self._loaded: set[str] = set()
        self._missing: dict[str, float] = {}  # name -> until when it counts as missing
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def ensure(self, name: str) -> Outcome:
        """The adapter `name` loaded into vLLM, or why not."""
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name in self._loaded:
                return LOADED
            if self._missing.get(name, 0.0) > self.clock():
                return Outcome(404)
            outcome = self._load(name)
            if outcome.status == 200:
                self._loaded.add(name)
            elif outcome.status == 404:
                self._missing[name] = self.clock() + MISSING_TTL_S
            return outcome

    def _load(self, name: str) -> Outcome:
        began = self.clock()
        try:
            folder = lora_store.fetch(self.uri, name, self.settings, self.cache_dir)
            fetched = self.clock() - began
            adapter, warnings = lora_store.checked(folder, name, self.base, self.model.name, self.max_rank())
        except ArtifactMissing:
            return Outcome(404)  # nothing is logged of a name the store lacks: any client may send any name
        except AdapterProblem as exc:
            log.warning("%s (from %s)", exc, self.uri.label)
            return Outcome(400, str(exc), exc.reason)
        except (ArtifactError, ConfigError) as exc:
            log.warning("LoRA adapter %s: %s", name, exc)
            return Outcome(502, f"LoRA adapter {name}: {exc}", str(exc))
        for warning in warnings:
            log.warning("%s", warning)
        refused = self._into_vllm(name, folder)
        if refused is not None:
            log.warning("LoRA adapter %s: %s", name, refused)
            return Outcome(400, f"LoRA adapter {name}: {refused}", refused)
        line = (
            f"{name} (rank {adapter.rank}) from {self.uri.label}: fetched and checked in {fetched:.2f} s, "
            f"in vLLM after {self.clock() - began:.2f} s"
        )
        self.reporter.report("LoRA adapter loaded", line)
        return LOADED

    def _into_vllm(self, name: str, folder: Path) -> str | None:
        """vLLM's /v1/load_lora_adapter on the folder; None once loaded, else vLLM's reason."""
        body = json.dumps({"lora_name": name, "lora_path": str(folder)}).encode()
        request = urllib.request.Request(
            f"{self.vllm.base_url}/load_lora_adapter",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.vllm.api_key}"},
        )
        try:
            with _OPENER.open(request, timeout=LOAD_TIMEOUT_S):
                return None
        except urllib.error.HTTPError as exc:
            message = _message(exc.read())
            return None if "already been loaded" in message else f"vLLM could not load it: {message}"
        except OSError as exc:
            return f"vLLM could not be asked to load it ({type(exc).__name__})"


def _message(body: bytes) -> str:
    """vLLM's error message (its error object, bare or under "error")."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode(errors="replace")[:300]
    error = data.get("error", data) if isinstance(data, dict) else {}
    return str(error.get("message") if isinstance(error, dict) else error)[:300]
