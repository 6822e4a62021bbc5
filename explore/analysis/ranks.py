"""Rank agreement (scipy): Kendall's tau and Spearman's rho over the finite pairs of two lists.

Used where the analysis compares orders: the proxy against a longer budget (validate-proxy), our
ablation Δs against the paper's, and the FFN's retained share against the block index (importance).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

from scipy import stats

__all__ = ["kendall_tau", "spearman_rho"]


def _pairs(a: Sequence[float | None], b: Sequence[float | None]) -> tuple[list[float], list[float]]:
    kept = [(float(x), float(y)) for x, y in zip(a, b) if x is not None and y is not None
            and math.isfinite(x) and math.isfinite(y)]
    return [x for x, _ in kept], [y for _, y in kept]


def kendall_tau(a: Sequence[float | None], b: Sequence[float | None], min_points: int = 3) -> float:
    """Kendall's tau-b of the finite pairs; NaN with fewer than ``min_points`` pairs or a constant side."""
    xs, ys = _pairs(a, b)
    if len(xs) < min_points:
        return float("nan")
    with warnings.catch_warnings():  # a constant side: scipy warns and returns NaN
        warnings.simplefilter("ignore")
        return float(stats.kendalltau(xs, ys).statistic)


def spearman_rho(a: Sequence[float | None], b: Sequence[float | None], min_points: int = 2) -> float:
    """Spearman's rho (Pearson on average ranks) of the finite pairs; NaN with fewer than
    ``min_points`` pairs or a constant side."""
    xs, ys = _pairs(a, b)
    if len(xs) < min_points or len(set(xs)) < 2 or len(set(ys)) < 2:
        return float("nan")
    return float(stats.spearmanr(xs, ys).statistic)
