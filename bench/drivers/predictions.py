"""Batch predictions as the platform's batch jobs send them: one CSV through DRUM's /predictions/."""

from __future__ import annotations

import time

import requests

from bench.workload import Result, csv_of


def post_batch(
    name: str, url: str, rows: list[str], timeout_s: float = 3600, extra: dict[str, list[str]] | None = None
) -> Result:
    """One CSV through DRUM's /predictions/, as the platform's batch jobs send it (`extra`: more columns)."""
    body = csv_of(rows, extra=extra)
    start = time.perf_counter()
    response = requests.post(f"{url}/predictions/", data=body, headers={"Content-Type": "text/csv"}, timeout=timeout_s)
    seconds = time.perf_counter() - start
    response.raise_for_status()
    answer = response.json()
    texts = [str(p) for p in answer["predictions"]]
    return Result(name, len(rows), seconds, texts=texts, completion_tokens=_completion_tokens(answer))


def _completion_tokens(answer: dict) -> int | None:
    """Total completion tokens when runtime parameter row_details is on (DRUM's 'split' extra columns)."""
    extra = answer.get("extraModelOutput")
    if not isinstance(extra, dict) or "completion_tokens" not in extra.get("columns", []):
        return None
    column = extra["columns"].index("completion_tokens")
    return sum(int(row[column]) for row in extra["data"])
