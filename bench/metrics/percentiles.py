"""Percentiles of timings, computed one way by every benchmark."""

from __future__ import annotations

import math


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0 < q <= 100) by nearest rank, so every figure is one that was measured;
    nan when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def ms(values: list[float], q: float, digits: int = 1) -> float:
    """The q-th percentile of timings in seconds, in milliseconds rounded to `digits`."""
    return round(1000 * percentile(values, q), digits)
