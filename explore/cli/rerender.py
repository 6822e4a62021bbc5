"""``explore rerender``: a committed report rendered again from the data stored beside it.

No training and no timing: the renderer of the report's kind reads the folder's stored rows and
writes the report files again (into the folder, or ``--out``). ``tests/report/test_rerender.py``
re-renders every report under ``reports/`` and compares it with what is committed, so a report that
no longer follows from its data, or from today's code, fails there.

Kinds with a renderer: ablation runs (``run.json`` naming a recipe, with ``variants.csv``,
``training.csv``, ``measurements.csv``; :func:`explore.analysis.ablation.load_run`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from explore.cli.common import app, console, fail
from explore.errors import ExploreError

__all__ = ["rerender", "rerender_folder", "report_kind", "RENDERERS"]

_MADE_BY = re.compile(r"^Made by: `(.*)`$", re.M)


def _made_by(markdown: Path) -> str:
    """The command a report names on its ``Made by:`` line (kept as it was: it made the data)."""
    found = _MADE_BY.search(markdown.read_text(encoding="utf-8")) if markdown.exists() else None
    if found is None:
        raise ExploreError("report.md", str(markdown), "a report with a 'Made by: `COMMAND`' line to keep")
    return found.group(1)


def _ablation(folder: Path, out: Path) -> list[Path]:
    """An ablation report (report.md, summary.csv, ablation.png, latency_vs_resolution.png)."""
    from explore.analysis import ablation as ab
    from explore.report import write_ablation_report

    command = _made_by(folder / "report.md")
    run, loaded = ab.load_run(folder)
    table, taus = ab.summarise(run)
    paths = write_ablation_report(table, run.measurements, out, ab.report_meta(run, loaded), taus,
                                  ab.check_findings(run, table), command)
    return [p for p in (paths.markdown, paths.csv, paths.png, paths.resolution_png) if p is not None]


def _is_ablation(folder: Path) -> bool:
    if not (folder / "run.json").exists() or not (folder / "variants.csv").exists():
        return False
    import json

    try:
        return "recipe" in json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except ValueError:
        return False


RENDERERS: dict[str, tuple[Callable[[Path], bool], Callable[[Path, Path], list[Path]]]] = {
    "ablation": (_is_ablation, _ablation),
}
"""Report kind -> (does a folder hold one, render it from ``folder`` into ``out``)."""


def report_kind(folder: str | Path) -> str | None:
    """The kind of report stored in ``folder`` (a key of :data:`RENDERERS`), or None when no renderer knows it."""
    return next((kind for kind, (holds, _) in RENDERERS.items() if holds(Path(folder))), None)


def rerender_folder(folder: str | Path, out: str | Path | None = None) -> tuple[str, list[Path]]:
    """Render the report in ``folder`` again from its stored data into ``out`` (default: ``folder``).

    Returns:
        (its kind, the files written).

    Raises:
        ExploreError: no such folder, no renderer for its kind, or stored data that cannot be read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ExploreError("folder", str(folder), "an existing report folder (no such report folder)")
    kind = report_kind(folder)
    if kind is None:
        raise ExploreError("folder", str(folder), f"a report of a kind with a renderer ({', '.join(RENDERERS)}): no "
                           "renderer knows this kind of report yet; re-run the command on its 'Made by' line instead")
    target = Path(out) if out is not None else folder
    return kind, RENDERERS[kind][1](folder, target)


@app.command()
def rerender(
    folders: Annotated[list[str], typer.Argument(help="Report folders, e.g. reports/ablation_cga_table6_cpu.")],
    out: Annotated[Optional[str], typer.Option(help="Write here instead of into the folder (one folder only).")] = None,
) -> None:
    """Render committed reports again from the data stored beside them: no training, no timing."""
    if out is not None and len(folders) > 1:
        raise fail(ExploreError("--out", out, f"one folder with --out (got {len(folders)} folders)"))
    for folder in folders:
        try:
            kind, written = rerender_folder(folder, out)
        except ExploreError as exc:
            raise fail(exc) from None
        console.print(f"{folder}: {kind} report, wrote {', '.join(p.name for p in written)}", highlight=False)
