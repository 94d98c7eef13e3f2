"""Batch predictions: every row becomes one chat completion, or, when the served model is a
pooling model, one embedding (JSON text in the target column).

A row's prompt is its prompt column, or `prompt_template` filled from its columns (rendered
when the row is sent, so memory stays O(concurrency)). Answers can be constrained to a JSON
Schema or a list of labels (vLLM's structured outputs), and `row_details` adds the tokens used
and why each answer stopped. Rows go to vLLM concurrently (bounded by `max_concurrent_rows`) so
its continuous batching is used, alone or several to a request (`rows_per_request`, and a batch
that fits in flight: vLLM's batch chat endpoint, each row still its own chat completion);
results are written back by row position, so the output has exactly one row per input row,
in input order. A batch that runs longer than a few seconds logs its progress (counts and rates
only, never data).
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import urllib3
from datarobot_drum.drum.exceptions import CustomHTTPError

from vllm_dropin import prompt_template
from vllm_dropin.contract import BatchSettings
from vllm_dropin.drum import departure, telemetry
from vllm_dropin.drum.client import CHAT_ROUTE, EMBEDDINGS_ROUTE, Upstream, UpstreamStatusError, unreachable
from vllm_dropin.drum.departure import ClientGone, Departure, Left
from vllm_dropin.drum.model_names import ModelNames
from vllm_dropin.drum.rows_budget import POLL_S, RowsBudget, Share

BATCH_ROUTE = "/predictions/"  # the route label of batch rows' tokens
ERROR_COLUMN = "error"
DETAIL_COLUMNS = ("prompt_tokens", "completion_tokens")
MAX_LISTED_ERRORS = 5
PROGRESS_EVERY_S = 5.0
log = logging.getLogger("vllm_dropin.batch")


@dataclass(slots=True)
class RowResult:
    choices: list[str] | None = None
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reasons: list[str | None] = field(default_factory=list)


class Problem(str):
    """Why a row cannot be sent, in place of its prompt."""


class RoutedPrompt(str):
    """A row's prompt and the LoRA adapter its row names."""

    model: str


class AdapterColumn(Sequence[Any]):
    """The rows' prompts, each routed to the adapter its row names in `column` (empty: the default).

    `refused`: why each adapter of the store that was named but cannot be served."""

    def __init__(
        self, prompts: Sequence[Any], cells: pd.Series, column: str, names: ModelNames, refused: dict[str, str]
    ) -> None:
        self._prompts, self._cells, self._column, self._names, self._refused = prompts, cells, column, names, refused

    def __len__(self) -> int:
        return len(self._prompts)

    def __getitem__(self, i):  # type: ignore[override]
        prompt, cell = self._prompts[i], self._cells.iat[i]
        if prompt_problem(prompt) or prompt_template.empty(cell):
            return prompt
        if not isinstance(cell, str) or cell not in self._names:
            why = self._refused.get(cell) if isinstance(cell, str) else None
            if why is not None:
                return Problem(f"the adapter named in column '{self._column}' cannot be served: {why}")
            return Problem(f"the adapter named in column '{self._column}' is not served (GET /v1/models lists them)")
        routed = RoutedPrompt(prompt)
        routed.model = cell
        return routed


class TemplatePrompts(Sequence[str]):
    """The rows' prompts from a template, each rendered when asked for (a Problem for an empty cell)."""

    def __init__(self, data: pd.DataFrame, template: prompt_template.Template) -> None:
        self._columns = {name: data[name] for name in template.columns}
        self._template = template
        self._rows = len(data)

    def __len__(self) -> int:
        return self._rows

    def __getitem__(self, i):  # type: ignore[override]
        row = {name: column.iat[i] for name, column in self._columns.items()}
        for name, value in row.items():
            if prompt_template.empty(value):
                return Problem(f"column '{name}' is empty" + (" (missing value)" if not isinstance(value, str) else ""))
        return self._template.render(row)


def choice_columns(target: str, n: int) -> list[str]:
    """Output columns: the target holds choice 1, then choice_2 ... choice_n."""
    return [target] + [f"choice_{i}" for i in range(2, n + 1)]


def prompt_problem(value: Any) -> str | None:
    """Why a cell cannot be sent as a prompt, or None when it can."""
    if isinstance(value, Problem):
        return str(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "prompt is empty (missing value)"
    if not isinstance(value, str):
        return f"prompt is not text ({type(value).__name__})"
    if not value.strip():
        return "prompt is empty"
    return None


def messages_for(prompt: str, system_prompt: str | None) -> list[dict[str, str]]:
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*system, {"role": "user", "content": prompt}]


def request_for(prompt: str, settings: BatchSettings, model: str) -> dict[str, Any]:
    """The chat completion of one row."""
    return {"model": model, "messages": messages_for(prompt, settings.system_prompt), **sampling(settings)}


def request_for_rows(prompts: Sequence[str], settings: BatchSettings, model: str) -> dict[str, Any]:
    """The chat completions of several rows in one request to vLLM's batch endpoint: one
    conversation per row, the same sampling for each (what request_for sends for every row)."""
    conversations = [messages_for(prompt, settings.system_prompt) for prompt in prompts]
    return {"model": model, "messages": conversations, **sampling(settings)}


def sampling(settings: BatchSettings) -> dict[str, Any]:
    body: dict[str, Any] = {"max_tokens": settings.max_tokens, "n": settings.n}
    if settings.temperature is not None:
        body["temperature"] = settings.temperature
    if settings.response_schema is not None:  # vLLM then runs without free whitespace (vllm_command)
        body["structured_outputs"] = {"json": _schema(settings.response_schema)}
    elif settings.response_choices is not None:
        body["structured_outputs"] = {"choice": settings.response_choices}
    return body


@functools.lru_cache(maxsize=4)
def _schema(text: str) -> dict[str, Any]:
    return json.loads(text)


def column_names(columns: Sequence[Any], shown: int = 20, longest: int = 40) -> list[str]:
    """Column names for an error message: a few, each short (a CSV sent without a header has its
    first row, prompts included, as column names; those must not come back whole)."""
    names = [str(c) if len(str(c)) <= longest else f"<a {len(str(c))}-character name>" for c in columns[:shown]]
    return names + ([f"and {len(columns) - shown} more"] if len(columns) > shown else [])


def _present(data: pd.DataFrame) -> str:
    return ", ".join(column_names(data.columns)) or "(none)"


def prompts_of(data: pd.DataFrame, settings: BatchSettings) -> Sequence[Any]:
    """Each row's prompt (or Problem), from the template or the prompt column; 422 for a missing column."""
    if settings.prompt_template is not None:
        template = prompt_template.parse(settings.prompt_template)
        missing = [name for name in template.columns if name not in data.columns]
        if missing:
            named = ", ".join(f"'{name}'" for name in column_names(missing))
            raise CustomHTTPError(
                f"runtime parameter 'prompt_template' names column(s) {named} that the request lacks; "
                f"columns present: {_present(data)}",
                status_code=422,
            )
    elif settings.prompt_column_name not in data.columns:
        raise CustomHTTPError(
            f"prompt column '{settings.prompt_column_name}' is missing; columns present: {_present(data)} "
            "(set runtime parameter 'prompt_column_name' or 'prompt_template' to use others)",
            status_code=422,
        )
    if settings.lora_adapter_column is not None and settings.lora_adapter_column not in data.columns:
        raise CustomHTTPError(
            f"adapter column '{settings.lora_adapter_column}' is missing; columns present: {_present(data)} "
            "(runtime parameter 'lora_adapter_column')",
            status_code=422,
        )
    if data.empty:
        raise CustomHTTPError("the request has columns but no rows: nothing to predict", status_code=422)
    if settings.prompt_template is not None:
        return TemplatePrompts(data, template)
    return data[settings.prompt_column_name].tolist()


def routed(prompts: Sequence[Any], data: pd.DataFrame, upstream: Upstream) -> Sequence[Any]:
    """The prompts, routed row by row to the adapter named in the adapter column, if one is set;
    adapters of lora_adapters_uri that the column names loaded first."""
    _default_adapter_ready(upstream)
    column = upstream.batch.lora_adapter_column
    if column is None:
        return prompts
    cells, refused = data[column], {}
    named = cells[cells.map(lambda cell: isinstance(cell, str))].unique() if upstream.names.loads else ()
    for name in named:
        refusal = upstream.names.ready(name)
        if refusal is not None:
            refused[name] = refusal.reason
    return AdapterColumn(prompts, cells, column, upstream.names, refused)


def _default_adapter_ready(upstream: Upstream) -> None:
    """lora_adapter (a runtime parameter, so named in errors) loaded if it comes from the store."""
    name = upstream.batch.lora_adapter
    if name is None:
        return
    refusal = upstream.names.ready(name)
    if refusal is not None:
        raise CustomHTTPError(f"runtime parameter 'lora_adapter': {refusal.message}", status_code=refusal.status)
    if name not in upstream.names:
        raise CustomHTTPError(
            f"runtime parameter 'lora_adapter': {name} is neither served nor in lora_adapters_uri", status_code=400
        )


def _model(upstream: Upstream, prompt: str) -> str:
    return getattr(prompt, "model", None) or upstream.batch.lora_adapter or upstream.model


def _post(upstream: Upstream, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """vLLM's JSON answer as a dict, over a connection lent to this request (no typed model: the
    three fields read here do not pay for one), cut off if the client leaves."""
    with upstream.posts.client() as connection, departure.held(connection):
        return connection.post(path, body)


def _content(choice: dict[str, Any]) -> str:
    return (choice.get("message") or {}).get("content") or ""


def _complete(upstream: Upstream, prompt: str) -> RowResult:
    model = _model(upstream, prompt)
    try:
        completion = _post(upstream, CHAT_ROUTE, request_for(prompt, upstream.batch, model))
    except UpstreamStatusError as exc:
        if exc.status >= 500:
            raise
        return RowResult(error=f"rejected by vLLM: {exc.message}")
    ordered = sorted(completion.get("choices") or [], key=lambda c: c.get("index", 0))
    usage = completion.get("usage") or {}
    telemetry.count_usage(BATCH_ROUTE, model, usage)
    return RowResult(
        choices=[_content(c) for c in ordered],
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        finish_reasons=[c.get("finish_reason") for c in ordered],
    )


def complete_rows(upstream: Upstream, prompts: list[str]) -> list[RowResult]:
    """Rows that share a model, in one request to vLLM's /v1/chat/completions/batch (choice i is
    row i's answer): the per-row HTTP work is most of the adapter's own cost. A request vLLM rejects
    is sent again row by row, so that a bad row gets its own error and the others their answers; a
    vLLM without the endpoint (404) the same way."""
    if len(prompts) == 1:
        return [_complete(upstream, prompts[0])]
    model = _model(upstream, prompts[0])
    try:
        completion = _post(upstream, "/chat/completions/batch", request_for_rows(prompts, upstream.batch, model))
    except UpstreamStatusError as exc:
        if exc.status >= 500:
            raise
        return [_complete(upstream, prompt) for prompt in prompts]
    telemetry.count_usage(BATCH_ROUTE, model, completion.get("usage"))
    by_row = {c.get("index", 0): c for c in completion.get("choices") or []}
    return [_row_of(by_row.get(i)) for i in range(len(prompts))]


def embed_rows(upstream: Upstream, prompts: list[str]) -> list[RowResult]:
    """Rows that share a model, embedded in one request to vLLM's /v1/embeddings (item i is row
    i's); the embedding as JSON text. A request vLLM rejects is sent again row by row, so that a
    bad row gets its own error and the others their embeddings."""
    model = _model(upstream, prompts[0])
    try:
        answer = _post(upstream, EMBEDDINGS_ROUTE, {"model": model, "input": list(prompts)})
    except UpstreamStatusError as exc:
        if exc.status >= 500:
            raise
        if len(prompts) == 1:
            return [RowResult(error=f"rejected by vLLM: {exc.message}")]
        return [row for prompt in prompts for row in embed_rows(upstream, [prompt])]
    telemetry.count_usage(BATCH_ROUTE, model, answer.get("usage"))
    by_row = {item.get("index", 0): item for item in answer.get("data") or []}
    tokens = (answer.get("usage") or {}).get("prompt_tokens") if len(prompts) == 1 else None
    return [_embedding_of(by_row.get(i), tokens) for i in range(len(prompts))]


def _embedding_of(item: dict[str, Any] | None, prompt_tokens: int | None) -> RowResult:
    if item is None or "embedding" not in item:
        return RowResult(error="vLLM's answer has no embedding for this row")
    return RowResult(choices=[json.dumps(item["embedding"])], prompt_tokens=prompt_tokens)


def _row_of(choice: dict[str, Any] | None) -> RowResult:
    if choice is None:
        return RowResult(error="vLLM's batch answer has no choice for this row")
    return RowResult(choices=[_content(choice)], finish_reasons=[choice.get("finish_reason")])


class Progress:
    """Logs rows done, rows/s and the time left every few seconds of a long batch."""

    def __init__(self, total: int, every_s: float = PROGRESS_EVERY_S) -> None:
        self._total, self._every = total, every_s
        self._done = 0
        self._started = self._last = time.monotonic()
        self._lock = threading.Lock()

    def rows_done(self, count: int) -> None:
        with self._lock:
            self._done += count
            now = time.monotonic()
            if now - self._last < self._every:
                return
            self._last = now
            rate = self._done / (now - self._started)
            left = (self._total - self._done) / rate if rate else float("inf")
            log.info("batch: %d of %d rows done, %.0f rows/s, about %.0f s left", self._done, self._total, rate, left)


def at_once(send: Callable[[Any], None], groups: list[Any]) -> None:
    """send(group) for every group at the same time (the first on this thread): rows taken together
    that name different adapters go in a request per adapter, and none waits for another's."""
    if len(groups) <= 1:
        for group in groups:
            send(group)
        return
    with ThreadPoolExecutor(max_workers=len(groups) - 1) as others:
        later = [others.submit(contextvars.copy_context().run, send, group) for group in groups[1:]]
        send(groups[0])
        for done in later:
            done.result()


def run_rows(
    prompts: Sequence[Any],
    complete: Callable[[list[Any]], list[RowResult]],
    budget: RowsBudget,
    progress: Progress | None = None,
    rows_per_request: int = 1,
    leaving: Departure | None = None,
) -> list[RowResult]:
    """One RowResult per prompt, in order; bad prompts are not sent.

    Rows go out as the deployment's budget lets this request have them in flight (shared with
    every other batch request, drum.rows_budget). A lane takes the next `rows_per_request` rows
    whenever the budget grants them, sends them (a request per model, LoRA adapter, they name,
    at once) and goes on while it is granted more; lanes are started as the budget has room.
    Prompts are read only when taken, so memory stays O(rows in flight) whatever the CSV's
    length. The first failure to reach vLLM stops the sending, as does the client's leaving
    (`leaving`: ClientGone is raised), and is raised once the rows in flight have ended.
    """
    results: list[RowResult] = [RowResult() for _ in range(len(prompts))]
    leaving = leaving or Departure()
    size = max(1, min(rows_per_request, budget.total))
    rows = iter(range(len(prompts)))
    untaken = len(prompts)
    lock = threading.Lock()
    failures: list[BaseException] = []
    lane_ended = threading.Event()

    def send(group: list[tuple[int, Any]]) -> None:
        telemetry.BATCH_ROWS_IN_FLIGHT.inc(len(group))
        try:
            answered = complete([prompt for _, prompt in group])
        finally:
            telemetry.BATCH_ROWS_IN_FLIGHT.dec(len(group))
        for (i, _), result in zip(group, answered, strict=True):
            results[i] = result

    def lane(share: Share, granted: int) -> None:
        nonlocal untaken
        try:
            while granted and not failures and not leaving.gone.is_set():
                with lock:
                    taken = list(itertools.islice(rows, granted))
                    untaken -= len(taken)
                if not taken:
                    share.take(0, unsent=granted)
                    return
                by_model: dict[str | None, list[tuple[int, Any]]] = {}
                for i in taken:
                    prompt = prompts[i]
                    problem = prompt_problem(prompt)
                    if problem:
                        results[i] = RowResult(error=problem)
                    else:
                        by_model.setdefault(getattr(prompt, "model", None), []).append((i, prompt))
                try:
                    at_once(send, list(by_model.values()))
                except BaseException:
                    share.take(0, answered=len(taken), unsent=granted - len(taken))
                    raise
                if progress is not None:
                    progress.rows_done(len(taken))
                granted = share.take(size if untaken else 0, answered=len(taken), unsent=granted - len(taken))
        except BaseException as exc:
            failures.append(exc)
        finally:
            lane_ended.set()

    lanes = max(1, min(-(-budget.total // size), -(-len(prompts) // size)))
    with budget.share(len(prompts), leaving.gone) as share, ThreadPoolExecutor(lanes) as pool:
        running: list[Future[None]] = []
        try:
            while untaken and share is not None and not failures and not leaving.gone.is_set():
                lane_ended.clear()
                running = [lane for lane in running if not lane.done()]
                granted = share.take(min((lanes - len(running)) * size, untaken)) if len(running) < lanes else 0
                for at in range(0, granted, size):
                    # in a copy of the request's context: its tokens are counted in its record
                    started = pool.submit(contextvars.copy_context().run, lane, share, min(size, granted - at))
                    running.append(started)
                lane_ended.wait(POLL_S)  # a lane's end, or room that other requests freed
        except BaseException:
            leaving.give_up()  # the request was given up: so are its rows at vLLM
            raise
    if leaving.gone.is_set():
        raise ClientGone()
    if failures:
        raise failures[0]
    return results


def to_frame(results: list[RowResult], target: str, settings: BatchSettings) -> pd.DataFrame:
    """The prediction frame; in 'fail' mode, an error naming every bad row instead."""
    failed = [(i, r.error) for i, r in enumerate(results) if r.error is not None]
    if failed and settings.row_errors == "fail":
        listed = "; ".join(f"row {i}: {err}" for i, err in failed[:MAX_LISTED_ERRORS])
        more = f"; and {len(failed) - MAX_LISTED_ERRORS} more" if len(failed) > MAX_LISTED_ERRORS else ""
        raise CustomHTTPError(
            f"{len(failed)} of {len(results)} rows failed (rows numbered from 0): {listed}{more}. "
            "Fix these rows, or set runtime parameter 'row_errors' to 'column' to get the other rows "
            "with an error column.",
            status_code=422,
        )
    n = settings.n
    cells = [[*(r.choices or [])[:n], *[None] * (n - len((r.choices or [])[:n]))] for r in results]
    frame = pd.DataFrame(cells, columns=choice_columns(target, n), dtype=object)
    if settings.row_errors == "column":
        frame[ERROR_COLUMN] = pd.Series([r.error for r in results], dtype=object)
    if settings.row_details:
        for name in DETAIL_COLUMNS:
            frame[name] = pd.Series([getattr(r, name) for r in results], dtype=object)
        for k, name in enumerate(finish_columns(n)):
            frame[name] = pd.Series([(r.finish_reasons[k : k + 1] or [None])[0] for r in results], dtype=object)
    return frame


def finish_columns(n: int) -> list[str]:
    """finish_reason for choice 1, then finish_reason_2 ... finish_reason_n."""
    return ["finish_reason"] + [f"finish_reason_{i}" for i in range(2, n + 1)]


def rows_sender(upstream: Upstream) -> Callable[[Upstream, list[Any]], list[RowResult]]:
    """How rows are answered, by what the served model does: chat completions, or embeddings
    (a pooling model: the settings that shape a generated answer cannot apply, so they are refused)."""
    if upstream.rows_route == CHAT_ROUTE:
        return complete_rows
    if upstream.rows_route is None:
        raise CustomHTTPError(
            "the served model answers neither chat completions nor embeddings (vLLM serves neither route for it), "
            "so it cannot answer batch predictions; its own routes are served as vLLM serves them",
            status_code=400,
        )
    settings = upstream.batch
    generated = {"n": settings.n > 1, "response_schema": settings.response_schema is not None}
    generated["response_choices"] = settings.response_choices is not None
    if any(generated.values()):
        named = ", ".join(f"'{name}'" for name, set_ in generated.items() if set_)
        raise CustomHTTPError(
            f"runtime parameter(s) {named} shape generated answers, but the served model is an embedding model "
            "(batch rows get embeddings): unset them",
            status_code=400,
        )
    return embed_rows


def score(data: pd.DataFrame, upstream: Upstream) -> pd.DataFrame:
    send = rows_sender(upstream)
    prompts = routed(prompts_of(data, upstream.batch), data, upstream)
    told = telemetry.CURRENT.get()
    if told is not None:
        told.rows = len(prompts)
    settings = upstream.batch
    budget = upstream.rows_budget or RowsBudget(settings.max_concurrent_rows or 1)
    try:
        complete = functools.partial(send, upstream)
        progress = Progress(len(prompts))
        size = settings.rows_to_a_request(len(prompts), alike=send is embed_rows)
        with departure.watched() as leaving:
            results = run_rows(prompts, complete, budget, progress, size, leaving)
    except ClientGone:
        telemetry.BATCH_ROWS.labels("abandoned").inc(len(prompts))
        raise Left(
            f"the client closed its connection before the answer: of its {len(prompts)} rows, those still to send "
            "were not sent and those in flight were aborted"
        ) from None
    except urllib3.exceptions.HTTPError as exc:
        telemetry.BATCH_ROWS.labels("failed").inc(len(prompts))
        raise CustomHTTPError(unreachable(exc), status_code=503) from None
    except UpstreamStatusError as exc:
        telemetry.BATCH_ROWS.labels("failed").inc(len(prompts))
        raise CustomHTTPError(f"vLLM failed: {exc.message}", status_code=502) from None
    failed = sum(r.error is not None for r in results)
    telemetry.BATCH_ROWS.labels("ok").inc(len(results) - failed)
    telemetry.BATCH_ROWS.labels("failed").inc(failed)
    return to_frame(results, upstream.target, upstream.batch)
