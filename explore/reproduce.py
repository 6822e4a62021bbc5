"""The command line that reproduces a run, as reports and outputs print it (one helper for all).

A base module: any stage may import it.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["command_line"]


def command_line(words: Sequence[str], options: Iterable[tuple[str, Any]] = ()) -> str:
    """``words`` followed by the options, shell-quoted, as one line.

    Args:
        words: the fixed words, e.g. ``("explore", "report", "runs/cga")``.
        options: ``(flag, value)`` pairs in order: ``None`` and ``False`` leave the flag out,
            ``True`` writes the bare flag (``--remeasure``), a float is written with ``:g``
            (``0.5``, ``2``), anything else with ``str``.

    Returns:
        The command, e.g. ``explore ablate cga_table6 --epochs 2 --seeds 0,1``.
    """
    out = [str(w) for w in words]
    for flag, value in options:
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
            continue
        out += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return " ".join(shlex.quote(w) for w in out)
