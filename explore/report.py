"""Reports from stored study results: Pareto-front plot (PNG), every trial (CSV), markdown summary.

Works from the trials DataFrame (:func:`explore.study.trials_frame`), never from live models.
The info is computed first (:func:`pareto_table`, :func:`state_counts`), then rendered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

__all__ = ["safe_name", "ReportPaths", "pareto_table", "state_counts", "plot_pareto", "render_markdown", "write_report"]


def safe_name(name: str, fallback: str = "study") -> str:
    """A file or folder name made from a study or model name that cannot leave its parent folder:
    letters, digits, ``.``, ``_`` and ``-`` only (others become ``_``), no leading dot, at most 100
    characters; ``fallback`` if nothing is left."""
    return (re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or fallback)[:100]


@dataclass(frozen=True)
class ReportPaths:
    """Files written by :func:`write_report`."""

    csv: Path
    png: Path
    markdown: Path


def pareto_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The Pareto-optimal COMPLETE trials, fastest first, with display columns:
    trial, architecture, params (M), MACs (M), latency (ms), latency IQR (ms), top-1 (%)."""
    if frame.empty or "pareto" not in frame:
        return pd.DataFrame(columns=["trial", "architecture", "params (M)", "MACs (M)", "latency (ms)",
                                     "latency IQR (ms)", "top-1 (%)"])
    front = frame[frame["pareto"] & (frame["state"] == "COMPLETE")].sort_values("latency_ms")
    return pd.DataFrame({
        "trial": front["number"].astype(int),
        "architecture": front["summary"],
        "params (M)": (front["params"].astype(float) / 1e6).round(3),
        "MACs (M)": (front["macs"].astype(float) / 1e6).round(2),
        "latency (ms)": front["latency_ms"].round(3),
        "latency IQR (ms)": front.get("latency_iqr_ms", pd.Series(index=front.index, dtype=float)).round(3),
        "top-1 (%)": front["top1"].round(2),
    }).reset_index(drop=True)


def state_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Number of trials per Optuna state (COMPLETE, PRUNED, FAIL, RUNNING, ...)."""
    if frame.empty:
        return {}
    return {str(k): int(v) for k, v in frame["state"].value_counts().sort_index().items()}


def plot_pareto(frame: pd.DataFrame, path: Path, title: str, latency_label: str = "latency (ms per batch)") -> Path:
    """Scatter of top-1 (%) against latency (ms) for COMPLETE trials, the Pareto front drawn as a
    step line and labelled with trial numbers. Writes a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = frame[frame["state"] == "COMPLETE"] if not frame.empty else frame
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    if not done.empty:
        others = done[~done["pareto"]]
        front = done[done["pareto"]].sort_values("latency_ms")
        ax.scatter(others["latency_ms"], others["top1"], s=28, c="0.6", label="trials")
        ax.step(front["latency_ms"], front["top1"], where="post", c="C3", lw=1.2)
        ax.scatter(front["latency_ms"], front["top1"], s=40, c="C3", label="Pareto front", zorder=3)
        for _, row in front.iterrows():
            ax.annotate(f"#{int(row['number'])}", (row["latency_ms"], row["top1"]), textcoords="offset points",
                        xytext=(4, -10), fontsize=8)
    else:
        ax.text(0.5, 0.5, "no complete trials", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(latency_label)
    ax.set_ylabel("proxy top-1 (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if not done.empty:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _table_md(table: pd.DataFrame) -> str:
    if table.empty:
        return "_none_\n"
    return table.to_markdown(index=False) + "\n"


def render_markdown(frame: pd.DataFrame, meta: Mapping[str, Any], command: str) -> str:
    """Markdown summary: the study's settings, trial counts, the Pareto table and pruning reasons."""
    settings = meta.get("settings", {}) or {}
    counts = state_counts(frame)
    lines = [
        f"# Study `{meta.get('study_name')}`",
        "",
        f"Made by: `{command}`",
        "",
        f"- space: `{meta.get('space_name')}` ({meta.get('space_file')})",
        f"- dataset: `{settings.get('dataset')}` (train subset {settings.get('max_train')}, "
        f"val subset {settings.get('max_val')}), proxy {settings.get('epochs')} epoch(s), batch {settings.get('batch_size')}",
        f"- device: `{settings.get('device')}`; latency: batch {settings.get('latency_batch') or 'default'}, "
        f"mode {settings.get('latency_mode', 'eager')}, "
        f"threads {settings.get('latency_threads')}, median of {settings.get('latency_repeats')} runs",
        f"- sampler: `{settings.get('sampler')}`, seed {settings.get('seed')}",
        "- trials: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"),
        "",
        "## Pareto front (top-1 up, latency down)",
        "",
        _table_md(pareto_table(frame)),
    ]
    if not frame.empty and "pruned_reason" in frame:
        reasons = frame.loc[frame["state"] == "PRUNED", "pruned_reason"].dropna()
        if not reasons.empty:
            lines += ["## Pruned trials", "", _table_md(reasons.value_counts().rename_axis("reason").reset_index())]
    if not frame.empty and "fail_reason" in frame:
        fails = frame.loc[frame["state"] == "FAIL", ["number", "fail_reason"]].dropna()
        if not fails.empty:
            lines += ["## Failed trials", "", _table_md(fails)]
    lines += ["Files: `trials.csv` (every trial, every attribute), `pareto.png` (the front).", ""]
    return "\n".join(lines)


def write_report(frame: pd.DataFrame, out_dir: Path, meta: Mapping[str, Any], command: str) -> ReportPaths:
    """Write ``trials.csv``, ``pareto.png`` and ``summary.md`` into ``out_dir`` (created if needed).

    Args:
        frame: the trials table.
        out_dir: target folder.
        meta: study name, space and settings (see :func:`explore.study.study_meta`).
        command: the command line that made the report (written into the summary).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(out_dir / "trials.csv", out_dir / "pareto.png", out_dir / "summary.md")
    frame.to_csv(paths.csv, index=False)
    settings = meta.get("settings", {}) or {}
    label = f"latency (ms per batch of {settings.get('latency_batch') or 'default'}, {settings.get('device', '?')})"
    plot_pareto(frame, paths.png, f"{meta.get('study_name')}: proxy top-1 vs latency", label)
    paths.markdown.write_text(render_markdown(frame, meta, command), encoding="utf-8")
    return paths
