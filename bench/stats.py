"""Summaries of repeated measurements."""

from __future__ import annotations

import statistics
from typing import Iterable


def summary(values: Iterable[float]) -> dict | None:
    """Median, min and max of the repetitions (None when nothing was measured)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, int(round(q / 100.0 * len(sorted_values) + 0.5)) - 1))
    return float(sorted_values[rank])


def ratio(a: dict | None, b: dict | None) -> float | None:
    """Median over median; None when either side is missing."""
    if not a or not b or not b["median"]:
        return None
    return a["median"] / b["median"]
