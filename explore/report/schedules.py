"""The schedule comparison's report: hypervolume vs training spent, the runs, the fronts at the long budget.

Works from the tables of :func:`explore.search.schedule_comparison.compare_schedules` (never live models).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from explore.records import CONFIG_HASH
from explore.report.common import pyplot, save_figure, table_block
from explore.stats import mean_std

if TYPE_CHECKING:  # the result's type, for annotations only: the report never runs a study
    from explore.search.schedule_comparison import Comparison

__all__ = ["SchedulePaths", "mean_curves", "summary_table", "render_schedules", "write_schedules_report",
           "write_schedule_tables", "render_schedule_files", "COMPARISON_JSON", "RUNG_PAIRS_CSV", "SCHEDULE_TABLES"]


@dataclass(frozen=True)
class SchedulePaths:
    """Files written by :func:`write_schedules_report`."""

    markdown: Path
    png: Path
    runs_csv: Path
    curves_csv: Path
    fronts_csv: Path


def mean_curves(curves: pd.DataFrame, points: int = 200) -> pd.DataFrame:
    """Per schedule, the mean and std over seeds of the hypervolume on a common grid of training spent
    (each run's curve is a step function: its value after the last job that ended within the budget)."""
    if curves.empty:
        return pd.DataFrame(columns=["schedule", "spent_epochs", "hv_mean", "hv_std"])
    grid = np.linspace(0.0, float(curves["spent_epochs"].max()), points)
    rows = []
    for schedule, mine in curves.groupby("schedule", sort=False):
        runs = [run.sort_values("spent_epochs") for _, run in mine.groupby("seed")]
        for budget in grid:
            values = []
            for run in runs:
                seen = run[run["spent_epochs"] <= budget + 1e-9]
                values.append(float(seen["hv"].iloc[-1]) if len(seen) else 0.0)
            mean, std = mean_std(values)
            rows.append({"schedule": schedule, "spent_epochs": budget, "hv_mean": mean,
                         "hv_std": std if len(values) > 1 else 0.0})
    return pd.DataFrame(rows)


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Display columns of the per-schedule summary (mean ± std over seeds)."""

    def pm(row: Any, column: str, digits: int) -> str:
        std = row[f"{column}_std"]
        return f"{row[f'{column}_mean']:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")

    rows = []
    for _, row in summary.iterrows():
        ratio = row["budget_to_full_hv"]
        rows.append({"schedule": row["schedule"], "seeds": int(row["seeds"]),
                     "architectures": pm(row, "architectures", 1), "training spent (epochs)": pm(row, "spent_epochs", 2),
                     "HV, proxy budget": pm(row, "study_hv", 3), "HV, long budget": pm(row, "long_hv", 3),
                     "budget to reach full's final HV": _share(ratio),
                     "budget to reach 95 % of it": _share(row.get("budget_to_95pct_full_hv"))})
    return pd.DataFrame(rows)


def _share(ratio: Any) -> str:
    """A budget ratio as a percentage, or ``not reached``."""
    if ratio is None or (isinstance(ratio, float) and math.isnan(ratio)):
        return "not reached"
    return f"{ratio * 100:.0f} %"


def _plot(curves: pd.DataFrame, summary: pd.DataFrame, path: Path, title: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    means = mean_curves(curves)
    for schedule, mine in means.groupby("schedule", sort=False):
        line, = ax.plot(mine["spent_epochs"], mine["hv_mean"], label=f"{schedule} (mean of seeds)", drawstyle="steps-post")
        ax.fill_between(mine["spent_epochs"], (mine["hv_mean"] - mine["hv_std"]).clip(lower=0), mine["hv_mean"] + mine["hv_std"],
                        step="post", alpha=0.2, color=line.get_color())
    full = summary[summary["schedule"] == "full"]
    if len(full):
        ax.axhline(float(full["study_hv_mean"].iloc[0]), color="grey", linestyle="--", linewidth=1,
                   label="full: final mean HV")
    ax.set_xlabel("training spent (epochs of the training subset)")
    ax.set_ylabel("hypervolume (top-1 % x ms/img)")
    return save_figure(fig, ax, path, title)


def render_schedules(runs: pd.DataFrame, fronts: pd.DataFrame, summary: pd.DataFrame, reference: tuple[float, float],
                     settings: dict[str, Any], command: str, agreement: pd.DataFrame | None = None) -> str:
    """The markdown summary of a comparison."""
    s = settings
    lines = [
        f"# Schedules compared at the same training budget: {', '.join(s['schedules'])}",
        "",
        f"Made by: `{command}`",
        "",
        f"- space `{s['space']}`, data `{s['dataset']}` (train subset {s['max_train']}, val subset {s['max_val']}), "
        f"batch {s['batch_size']}, device `{s['device']}`, sampler `{s['sampler']}`",
        f"- training budget per run: {s['budget']:g} epochs of the training subset; full budget of one architecture "
        f"{s['epochs']:g} epochs; sha / hyperband rungs {', '.join(f'{r:g}' for r in s['rung_epochs'])} epochs, "
        f"eta {s['eta']}",
        f"- seeds {', '.join(map(str, s['seeds']))} (study seed: sampler, data subset, training seeds)",
        *([f"- supernet: one weight-sharing supernet trained {s['supernet_epochs']} epochs, "
           f"{2 + s['random_subnets']} subnets per step (sandwich rule), charged "
           f"{s['supernet_epochs'] * (2 + s['random_subnets'])} epochs of the training subset to every supernet run; "
           f"each run scores {s['supernet_trials']} architectures by inherited top-1 (BN recalibrated on "
           f"{s['recalibration_images']} images; nothing trained), then trains its final front on its own at "
           f"{s['epochs']:g} epochs (charged as trained; its HV curve uses those stand-alone top-1 figures)"]
          if "supernet" in s["schedules"] else []),
        f"- hypervolume reference point: top-1 {reference[0]:g} % (chance), latency {reference[1]:.4f} ms/img; "
        "HV in % x ms/img",
        f"- long budget: every final-front architecture re-trained {s['long_epochs']:g} epochs, seed {s['long_seed']}, "
        "one data subset; latencies of all front architectures measured again together, "
        "3 interleaved rounds (fastest kept)",
        "",
        "## Summary (mean ± std over seeds)",
        "",
        table_block(summary_table(summary)),
        "HV, proxy budget: the final front of each run from its own figures (top-1 at the top rung, latency "
        "measured in the run). HV, long budget: the same fronts with top-1 re-trained at the long budget and "
        "latencies measured together. Budget to reach full's final HV: the first training spent at which the "
        "schedule's mean HV curve reaches the full runs' mean final HV, as a share of the full runs' mean spent "
        "budget (`hv_vs_budget.png`).",
        "",
        "## How well a rung ranks for the next one",
        "",
        table_block(agreement.round({"kendall_tau": 3}) if agreement is not None else pd.DataFrame()),
        "Kendall τ between top-1 at a rung and at the next rung, over the architectures promoted between them "
        "(pooled over seeds). Near 1: the low rung ranks as the next one does and promotion keeps the right "
        "architectures; near 0: promotion by that rung is close to a lottery.",
        "",
        "## Runs",
        "",
        table_block(runs.assign(spent_epochs=runs["spent_epochs"].round(2), study_hv=runs["study_hv"].round(3),
                                long_hv=runs["long_hv"].round(3))),
        "## Final fronts",
        "",
        table_block(fronts.assign(study_top1=fronts["study_top1"].round(2), long_top1=fronts["long_top1"].round(2),
                                  study_latency_ms=fronts["study_latency_ms"].round(4),
                                  latency_ms=fronts["latency_ms"].round(4)).drop(columns=[CONFIG_HASH])),
        "Files: `runs.csv`, `curves.csv` (HV after every job), `fronts.csv`, `rung_pairs.csv` (every promotion: its "
        "top-1 at both rungs, for the τ above), `comparison.json` (command, settings, reference point), "
        "`hv_vs_budget.png`; `explore rerender` writes this summary again from them. The studies themselves are in "
        "`runs/` beside them, not committed (`explore report runs/<schedule>-seed<seed>` for a run's own report).",
        "",
    ]
    return "\n".join(lines)


COMPARISON_JSON = "comparison.json"
"""The comparison's command, settings (rungs resolved) and hypervolume reference point, beside its report."""
RUNG_PAIRS_CSV = "rung_pairs.csv"
"""Every promotion of the comparison's sha / hyperband runs (:func:`explore.search.schedule_comparison.rung_pairs`)."""
SCHEDULE_TABLES = ("runs.csv", "curves.csv", "fronts.csv", RUNG_PAIRS_CSV)
"""The comparison's stored tables, in the order :func:`write_schedule_tables` takes them."""


def write_schedules_report(comparison: Comparison, out_dir: Path, command: str) -> SchedulePaths:
    """Write ``summary.md``, ``hv_vs_budget.png``, ``runs.csv``, ``curves.csv``, ``fronts.csv``,
    ``rung_pairs.csv`` and ``comparison.json`` (the command, settings and reference point: with the CSV
    tables, all that ``explore rerender`` needs to write the report again).

    Args:
        comparison: what ``explore compare-schedules`` found.
        out_dir: target folder (created).
        command: the command that made it.
    """
    settings = comparison.settings  # every field of the settings, and the rungs resolved
    meta = {**{name: getattr(settings, name) for name in settings.__dataclass_fields__},
            "rung_epochs": comparison.rung_epochs}
    pairs = comparison.rung_pairs if comparison.rung_pairs is not None else pd.DataFrame()
    write_schedule_tables(comparison.runs, comparison.curves, comparison.fronts, pairs, out_dir)
    (out_dir / COMPARISON_JSON).write_text(json.dumps(
        {"command": command, "settings": meta, "reference": list(comparison.reference)}, indent=1, sort_keys=True),
        encoding="utf-8")
    return render_schedule_files(comparison.runs, comparison.curves, comparison.fronts, comparison.summary,
                                 comparison.reference, meta, command, comparison.agreement, out_dir)


def write_schedule_tables(runs: pd.DataFrame, curves: pd.DataFrame, fronts: pd.DataFrame, pairs: pd.DataFrame,
                          out_dir: Path) -> None:
    """The comparison's stored tables (:data:`SCHEDULE_TABLES`): ``runs.csv``, ``curves.csv``, ``fronts.csv``,
    ``rung_pairs.csv``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in zip(SCHEDULE_TABLES, (runs, curves, fronts, pairs)):
        frame.to_csv(out_dir / name, index=False)


def render_schedule_files(runs: pd.DataFrame, curves: pd.DataFrame, fronts: pd.DataFrame, summary: pd.DataFrame,
                          reference: tuple[float, float], meta: dict[str, Any], command: str,
                          agreement: pd.DataFrame | None, out_dir: Path) -> SchedulePaths:
    """Write ``summary.md`` and ``hv_vs_budget.png`` from the comparison's tables and settings (``meta``: every
    field of its settings and ``rung_epochs``, as :func:`write_schedules_report` builds it and ``comparison.json``
    stores it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = SchedulePaths(out_dir / "summary.md", out_dir / "hv_vs_budget.png", out_dir / "runs.csv",
                          out_dir / "curves.csv", out_dir / "fronts.csv")
    _plot(curves, summary, paths.png, f"{meta['space']}: hypervolume vs training spent ({len(meta['seeds'])} seeds)")
    paths.markdown.write_text(render_schedules(runs, fronts, summary, reference, meta, command, agreement),
                              encoding="utf-8")
    return paths
