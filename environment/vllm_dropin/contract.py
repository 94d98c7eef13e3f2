"""What a DRUM worker receives from the supervisor: the one contract between the two processes.

The supervisor writes it into DRUM's environment (`to_env`); the workers read it back
(`from_env`). How vLLM runs (`Layout`) is decided in the vLLM process, which writes it to the
file the contract names before vLLM starts; a worker reads it once vLLM answers. DRUM's workers
import this module, `health` and `prompt_template`, nothing else of ours, so the planning code
never loads in them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

ENV_VAR = "DROPIN_WORKER_CONTRACT"
TARGET_VAR = "TARGET_NAME"  # the platform's name of the output column; DRUM reads it too
DEFAULT_TARGET = "resultText"
# Every launch serves the model under this name too, so requests need not know the model's own.
DEFAULT_SERVED_ALIAS = "datarobot-deployed-llm"
# vLLM closes idle keep-alive connections after this (its default, 5 s, races the adapter's
# pooled connections: a request sent as the server closes fails with "Server disconnected").
# The adapter's clients drop idle connections after half of it, so they never meet a closing one.
UPSTREAM_KEEPALIVE_S = 60
# prometheus_client's folder of per-process values: DRUM's workers count into it (drum.telemetry)
MULTIPROC_DIR_VAR = "PROMETHEUS_MULTIPROC_DIR"
ADAPTERS_PATH = "/adapters/"  # the adapter service's route: POST /adapters/<name> loads that adapter
LABEL_ROWS_PER_REQUEST = 8  # labels are short and alike: rows share a request at no cost to each other
REQUESTS_FOR_A_BATCH_IN_FLIGHT = 8  # a batch that fits in flight: its rows in this many requests


@dataclass(frozen=True, kw_only=True)
class BatchSettings:
    """What `score()` needs to turn rows into chat completions (or embeddings).

    Field names are those of the runtime parameters that feed "batch" (a test keeps them equal).
    max_concurrent_rows is None until the vLLM process decides it (`Layout.rows_in_flight`)."""

    prompt_column_name: str
    max_tokens: int
    n: int
    max_concurrent_rows: int | None
    row_errors: str
    temperature: float | None = None
    system_prompt: str | None = None
    prompt_template: str | None = None
    response_schema: str | None = None  # JSON text, read from the model folder when a file was named
    response_choices: list[str] | None = None
    row_details: bool = False
    rows_per_request: int | None = None
    lora_adapter: str | None = None
    lora_adapter_column: str | None = None  # optional features default to off; values come from Settings

    def rows_to_a_request(self, rows: int, alike: bool = False) -> int:
        """Rows in one request to vLLM for a batch of `rows`, rows_per_request resolved. Rows go
        alone when vLLM's batch endpoint cannot carry what they ask for: several choices per row
        (it takes n = 1) or per-row token counts (it counts tokens for the whole request).

        Unset: a batch whose rows are all in flight at once (rows <= max_concurrent_rows) goes in
        REQUESTS_FOR_A_BATCH_IN_FLIGHT requests: a request's rows finish together, but no row waits
        for a place, so that costs nothing, and vLLM's API servers take the rows without an HTTP
        request each (the rows reach its engine together, as offline LLM.chat's do). A longer
        batch: LABEL_ROWS_PER_REQUEST when the answers are labels or otherwise `alike` (embeddings),
        else alone: answers of different lengths would hold finished rows' places while rows wait."""
        if self.n > 1 or self.row_details:
            return 1
        if self.rows_per_request is not None:
            return self.rows_per_request
        together = LABEL_ROWS_PER_REQUEST if alike or self.response_choices is not None else 1
        if self.max_concurrent_rows is not None and rows <= self.max_concurrent_rows:
            return max(together, -(-rows // REQUESTS_FOR_A_BATCH_IN_FLIGHT))
        return together


@dataclass(frozen=True)
class VllmEndpoint:
    """How to reach the vLLM the supervisor started."""

    base_url: str  # ends in /v1
    api_key: str = field(repr=False)
    model: str = DEFAULT_SERVED_ALIAS  # a served name to put in requests

    @property
    def health_url(self) -> str:
        return self.base_url.removesuffix("/v1") + "/health"


@dataclass(frozen=True)
class Layout:
    """How vLLM runs, as its own process decided with vLLM's parser: the one reading of the parallel
    sizes, which the supervisor reports and DRUM's workers size a batch's rows in flight by."""

    tensor: int
    pipeline: int
    data: int  # data-parallel replicas
    api_servers: int
    rows_in_flight: int  # a batch's rows in flight at once, over all replicas
    reason: str  # why these sizes
    lora_rank: int | None = None  # the largest LoRA rank vLLM takes; None: LoRA off

    def describe(self) -> str:
        return (
            f"tensor parallel {self.tensor} x pipeline parallel {self.pipeline} x data parallel {self.data}, "
            f"{self.api_servers} API server{'s' if self.api_servers > 1 else ''}, "
            f"{self.rows_in_flight} batch rows in flight"
        )

    def write(self, path: Path) -> None:
        """Whole or not at all: a reader never sees half a file."""
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(asdict(self)), encoding="utf-8")
        os.replace(partial, path)

    @classmethod
    def read(cls, path: Path) -> Layout:
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass(frozen=True)
class WorkerContract:
    vllm: VllmEndpoint
    batch: BatchSettings  # rows in flight as the user set them (None: from the layout)
    startup_timeout_s: float  # how long a worker waits for vLLM's health before it gives up
    layout_file: str  # where the vLLM process writes its `Layout` before vLLM starts
    target: str = DEFAULT_TARGET
    adapter_service: str | None = None  # the unix socket of the supervisor's adapter loader (lora_adapters_uri)
    request_log: bool = True  # a JSON line per request in the log

    def to_env(self) -> dict[str, str]:
        return {ENV_VAR: json.dumps(asdict(self)), TARGET_VAR: self.target}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WorkerContract:
        data = json.loads(environ[ENV_VAR])
        return cls(**{**data, "vllm": VllmEndpoint(**data["vllm"]), "batch": BatchSettings(**data["batch"])})

    def batch_in(self, layout: Layout) -> BatchSettings:
        """The batch settings with the rows in flight of the vLLM that runs."""
        return replace(self.batch, max_concurrent_rows=layout.rows_in_flight)
