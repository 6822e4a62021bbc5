"""What every renderer shares: one matplotlib set-up (Agg, no display), markdown tables and the name
of a run's accuracy."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

__all__ = ["pyplot", "save_figure", "table_block", "fmt", "sig3", "accuracy_name"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (files only; imported on first use, not at import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, ax: Any, path: Any, title: str, ncols: int = 3) -> Any:
    """Finish a one-axes figure (title, grid, the legend below the axes) and write it to ``path``
    (the figure is closed); returns ``path``."""
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=ncols, fontsize=8, frameon=False)
    fig.savefig(path)
    pyplot().close(fig)
    return path


def table_block(table: pd.DataFrame) -> str:
    """A markdown table and a newline, or ``_none_`` for an empty table."""
    if table.empty:
        return "_none_\n"
    return table.to_markdown(index=False) + "\n"


def fmt(value: Any, digits: int = 2, signed: bool = False) -> str:
    """A number with ``digits`` decimals (``signed``: with its sign), or ``–`` for None/NaN/inf."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def sig3(value: float | None) -> str:
    """``value`` with three significant figures, in fixed-point notation: ``0.00213`` (a GPU's ms/img
    at batch 2048, which ``:.3f`` shows as 0.002 or 0.000), ``1.23``, ``123``; ``nan`` for None or NaN."""
    if value is None or not math.isfinite(value):
        return "nan"
    if value == 0:
        return "0"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def accuracy_name(task: str | None) -> str:
    """What a run's accuracy column holds, by its stored ``task``: ``mIoU`` for ``segmentation``
    (the MIT segmentation head, arXiv:2205.14756 §4), else proxy ``top-1``."""
    return "mIoU" if task == "segmentation" else "top-1"
