"""The benchmark's inputs: the same prompts for every path, and how a result is checked."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field

import pandas as pd

TOPICS = ["rivers", "GPUs", "the sea", "bread", "compilers", "mountains", "jazz", "tea", "trains", "owls"]


def prompts(n: int) -> list[str]:
    """Deterministic prompts of a few lengths, different per row (so no two rows are one request)."""
    return [f"Row {i}: write {1 + i % 4} sentences about {TOPICS[i % len(TOPICS)]}." for i in range(n)]


def output_lengths(n: int, mean: int, spread: float) -> list[int]:
    """`n` max_tokens uniform in mean x (1 +- spread), the same sequence every call. Equal lengths
    keep a closed loop's chats in lockstep (all finish in one step, all arrive in the next), which
    no real load does; spread lengths let them drift apart on every path alike."""
    rng = random.Random(14)
    return [rng.randint(round(mean * (1 - spread)), round(mean * (1 + spread))) for _ in range(n)]


def csv_of(rows: list[str], column: str = "promptText", extra: dict[str, list[str]] | None = None) -> bytes:
    buffer = io.StringIO()
    pd.DataFrame({column: rows, **(extra or {})}).to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def messages(prompt: str) -> list[dict[str, str]]:
    """What our batch path sends for a row (no system prompt): every path sends the same."""
    return [{"role": "user", "content": prompt}]


@dataclass
class Result:
    """One measured run: `rows` answers in `seconds`; `texts` in input order when the path returns them."""

    name: str
    size: int
    seconds: float
    texts: list[str] | None = None
    completion_tokens: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.size / self.seconds

    def summary(self) -> dict:
        out = {"path": self.name, "rows": self.size, "seconds": round(self.seconds, 3)}
        out["rows_per_s"] = round(self.rows_per_s, 1)
        if self.completion_tokens is not None:
            out["output_tokens_per_s"] = round(self.completion_tokens / self.seconds, 1)
            out["tokens_per_row"] = round(self.completion_tokens / self.size, 2)  # = max_tokens: no early EOS
        return {**out, **self.extra}


def mismatches(result: Result, reference: Result) -> int | None:
    """Rows whose text differs from the reference's (same prompt, greedy): misaligned or lost rows."""
    if result.texts is None or reference.texts is None:
        return None
    if len(result.texts) != len(reference.texts):
        return abs(len(result.texts) - len(reference.texts)) + sum(
            a != b for a, b in zip(result.texts, reference.texts, strict=False)
        )
    return sum(a != b for a, b in zip(result.texts, reference.texts, strict=True))


def first_difference(result: Result, reference: Result) -> dict | None:
    """The first row whose text differs from the reference's, both texts shown (for the JSON report)."""
    if result.texts is None or reference.texts is None:
        return None
    for i, (a, b) in enumerate(zip(result.texts, reference.texts, strict=False)):
        if a != b:
            return {"row": i, "text": a, "direct": b}
    return None
