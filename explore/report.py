"""Reports from stored results: studies (Pareto-front plot, every trial as CSV, markdown summary)
and ablations (our numbers beside the paper's, Δ vs the baseline, Kendall τ, verdicts).

Works from DataFrames (:func:`explore.study.trials_frame`, :func:`explore.ablate.summarise`), never
from live models. The info is computed first, then rendered.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

__all__ = [
    "safe_name", "ReportPaths", "pareto_table", "state_counts", "latency_description", "dataset_line",
    "pareto_figure", "plot_pareto", "render_markdown", "write_report",
    "AblationReportPaths", "plot_ablation", "render_ablation_markdown", "write_ablation_report",
]


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
    """The Pareto-optimal COMPLETE trials, fastest first, with display columns: trial, architecture,
    params (M), MACs (M), latency (ms/img), its IQR (ms/img), and, where the study re-measured its
    front, the first and the re-measured figure (``latency`` is the lower), then top-1 (%)."""
    columns = ["trial", "architecture", "params (M)", "MACs (M)", "latency (ms/img)", "IQR (ms/img)", "top-1 (%)"]
    if frame.empty or "pareto" not in frame:
        return pd.DataFrame(columns=columns)
    front = frame[frame["pareto"].astype(bool) & (frame["state"] == "COMPLETE")].sort_values("latency_ms")

    def column(name: str) -> pd.Series:
        return front[name].astype(float) if name in front else pd.Series(float("nan"), index=front.index)

    batch = column("latency_batch_size").where(column("latency_batch_size") > 0)
    table = pd.DataFrame({
        "trial": front["number"].astype(int),
        "architecture": front["summary"],
        "params (M)": (column("params") / 1e6).round(3),
        "MACs (M)": (column("macs") / 1e6).round(2),
        "latency (ms/img)": column("latency_ms").round(4),
        "IQR (ms/img)": (column("latency_iqr_ms") / batch).round(4),
    })
    if "latency_remeasured_ms" in front and front["latency_remeasured_ms"].notna().any():
        table["first (ms/img)"] = column("latency_first_ms").round(4)
        table["again (ms/img)"] = column("latency_remeasured_ms").round(4)
    table["top-1 (%)"] = front["top1"].round(2)
    return table.reset_index(drop=True)


def state_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Number of trials per Optuna state (COMPLETE, PRUNED, FAIL, RUNNING, ...)."""
    if frame.empty:
        return {}
    return {str(k): int(v) for k, v in frame["state"].value_counts().sort_index().items()}


def _distinct(frame: pd.DataFrame, column: str) -> str | None:
    """The distinct non-null values of a column, in order of appearance, joined by '/' (None: none)."""
    if column not in frame:
        return None
    values = [v for v in pd.unique(frame[column].dropna())]
    return "/".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values) or None


def latency_description(frame: pd.DataFrame, settings: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """What a study's latency objective is, from what its COMPLETE trials actually timed.

    The unit is read from the values: ``ms/img`` when the objective (``latency_first_ms``, or
    ``latency_ms`` for frames without it) equals the stored
    ``latency_ms_per_img`` of every trial, ``ms per batch`` when it equals
    ``latency_median_ms``, else ``ms``. The details come from the trials' attributes
    ``latency_protocol_name``, ``latency_batch_size`` (the batch timed, after any out-of-memory
    halving), ``latency_protocol_mode`` and ``latency_protocol_device`` (several values are joined
    by ``/``), or, for trials without them, from the study's stored ``settings``.

    Args:
        frame: :func:`explore.study.trials_frame`.
        settings: the study's stored settings (fallback).

    Returns:
        (unit, details), e.g. ``("ms/img", "cpu-latency, batch 16, fused, cpu")``.
    """
    settings = settings or {}
    done = frame[frame["state"] == "COMPLETE"] if not frame.empty and "state" in frame else pd.DataFrame()
    unit = "ms"
    objective = "latency_first_ms" if "latency_first_ms" in done else "latency_ms"  # before any re-measurement
    if not done.empty and objective in done:
        values = done[objective].astype(float)
        for column, name in (("latency_ms_per_img", "ms/img"), ("latency_median_ms", "ms per batch")):
            if column in done and bool(((values - done[column].astype(float)).abs()
                                        <= 1e-9 * values.abs().clip(lower=1.0)).all()):
                unit = name
                break
    device = _distinct(done, "latency_protocol_device") or settings.get("device") or "?"
    protocol = _distinct(done, "latency_protocol_name") or (
        "gpu-throughput" if str(device).startswith("cuda") else "cpu-latency")
    batch = _distinct(done, "latency_batch_size") or settings.get("latency_batch") or "the protocol's"
    mode = _distinct(done, "latency_protocol_mode") or settings.get("latency_mode") or "?"
    return unit, f"{protocol}, batch {batch}, {mode}, {device}"


def dataset_line(info: Mapping[str, Any] | None, max_names: int = 5) -> str:
    """One line on a study's data (:func:`explore.data.dataset_info`): class count, the first class
    names, the split sizes and where the splits came from; ``"not recorded"`` for None."""
    if not info:
        return "not recorded"
    names = list(info.get("classes") or [])[:max_names]
    more = ", ..." if int(info.get("num_classes") or 0) > len(names) else ""
    return (f"{info.get('num_classes')} classes ({', '.join(names)}{more}); "
            f"train {info.get('train_images')} / val {info.get('val_images')} images; {info.get('source')}")


def _shown_path(path: Any) -> str:
    """A stored space path as reports show it: never absolute (studies of older versions stored
    absolute paths: a built-in file becomes ``search_spaces/<name>``, any other its name)."""
    if not path:
        return "?"
    p = Path(str(path))
    if not p.is_absolute():
        return p.as_posix()
    return f"{p.parent.name}/{p.name}" if p.parent.name == "search_spaces" else p.name


def pareto_figure(frame: pd.DataFrame, title: str, latency_label: str = "latency (ms)") -> Any:
    """The figure of :func:`plot_pareto` (a matplotlib ``Figure`` on the Agg backend; close it
    with ``matplotlib.pyplot.close``). The legend sits below the axes, outside them, so that it
    cannot hide a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = frame[frame["state"] == "COMPLETE"] if not frame.empty else frame
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120, layout="constrained")
    if not done.empty:
        others = done[~done["pareto"].astype(bool)]
        front = done[done["pareto"].astype(bool)].sort_values("latency_ms")
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
        fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return fig


def plot_pareto(frame: pd.DataFrame, path: Path, title: str, latency_label: str = "latency (ms)") -> Path:
    """Scatter of top-1 (%) against latency for COMPLETE trials, the Pareto front drawn as a step
    line and labelled with trial numbers, the legend below the axes. Writes a PNG at ``path``.

    Args:
        frame: :func:`explore.study.trials_frame` (columns state, pareto, latency_ms, top1, number).
        path: the PNG to write.
        title: the plot's title.
        latency_label: the x axis label (see :func:`latency_description`).
    """
    import matplotlib.pyplot as plt

    fig = pareto_figure(frame, title, latency_label)
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
    unit, timed = latency_description(frame, settings)
    device_names = _distinct(frame[frame["state"] == "COMPLETE"], "latency_device_name") if not frame.empty else None
    lines = [
        f"# Study `{meta.get('study_name')}`",
        "",
        f"Made by: `{command}`",
        "",
        f"- space: `{meta.get('space_name')}` ({_shown_path(meta.get('space_file'))})",
        f"- dataset: `{settings.get('dataset')}` (train subset {settings.get('max_train')}, "
        f"val subset {settings.get('max_val')}), proxy {settings.get('epochs')} epoch(s), batch {settings.get('batch_size')}",
        f"- data: {dataset_line(meta.get('dataset_info'))}",
        f"- device: `{settings.get('device')}`" + (f" ({device_names})" if device_names else ""),
        f"- latency ({unit}; {timed}): threads {settings.get('latency_threads')}, "
        f"median of {settings.get('latency_repeats')} runs",
        f"- sampler: `{settings.get('sampler')}`, seed {settings.get('seed')}",
        "- trials: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"),
        "",
        "## Pareto front (top-1 up, latency down)",
        "",
        _table_md(pareto_table(frame)),
        "",
    ]
    if not frame.empty and "latency_remeasured_ms" in frame and frame["latency_remeasured_ms"].notna().any():
        lines += ["The front's latencies were measured again at the end of the study (`again`); `latency` is the "
                  "lower of the two figures (contention on a shared machine only slows a run down), and the "
                  "front is computed from it.", ""]
    if not frame.empty and "latency_contended" in frame and frame["latency_contended"].eq(True).any():
        contended = frame.loc[frame["latency_contended"].eq(True), "number"].astype(int).tolist()
        lines += [f"Latency measured on a busy machine (flagged `contended`) for trials {contended}.", ""]
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
    unit, timed = latency_description(frame, meta.get("settings", {}) or {})
    plot_pareto(frame, paths.png, f"{meta.get('study_name')}: proxy top-1 vs latency", f"latency ({unit}; {timed})")
    paths.markdown.write_text(render_markdown(frame, meta, command), encoding="utf-8")
    return paths


# --------------------------------------------------------------------------------------------------
# ablations
@dataclass(frozen=True)
class AblationReportPaths:
    """Files written by :func:`write_ablation_report`."""

    csv: Path
    png: Path
    markdown: Path
    resolution_png: Path | None


def _fmt(value: Any, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _speed_columns(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The measured protocols (``<p>_img_s`` with ``d_<p>_pct``) and the paper's speed columns
    (``paper_<col>`` with ``paper_d_<col>_pct``) of an ablation table, in column order."""
    ours = [c[:-len("_img_s")] for c in table.columns
            if c.endswith("_img_s") and f"d_{c[:-len('_img_s')]}_pct" in table.columns]
    paper = [c[len("paper_"):] for c in table.columns
             if c.startswith("paper_") and f"paper_d_{c[len('paper_'):]}_pct" in table.columns]
    return ours, paper


def plot_ablation(table: pd.DataFrame, path: Path, title: str, accuracy_label: str) -> Path:
    """Left: Δ top-1 vs the baseline per variant, ours (error bar: standard error over seeds) beside
    the paper's Δ (its accuracy column), or top-1 against x for sweeps. Right: Δ img/s (%) per
    measured protocol beside the paper's. Writes a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours, paper = _speed_columns(table)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110)
    ax = axes[0]
    has_top1 = "top1_mean" in table and table["top1_mean"].notna().any()
    if has_top1 and table["x"].notna().sum() >= 2:
        rows = table[table["x"].notna()].sort_values("x")
        ax.errorbar(rows["x"], rows["top1_mean"], yerr=rows["top1_std"].fillna(0), marker="o", capsize=3,
                    label="ours (mean ± std)")
        ax.set_xlabel("x")
        ax.set_ylabel("proxy top-1 (%)")
        if rows["paper_acc"].notna().any():
            twin = ax.twinx()
            twin.plot(rows["x"], rows["paper_acc"], "s--", c="C1", label=f"paper {accuracy_label}")
            twin.set_ylabel(f"paper {accuracy_label}")
    elif has_top1:
        pos = range(len(table))
        ax.bar([p - 0.2 for p in pos], table["d_top1"], 0.4, yerr=table["d_top1_se"].fillna(0), capsize=2,
               label="ours Δ top-1 (± s.e.)")
        ax.bar([p + 0.2 for p in pos], table["paper_d_acc"], 0.4, label=f"paper Δ {accuracy_label}")
        ax.set_xticks(list(pos), table["variant"], rotation=40, ha="right", fontsize=8)
        ax.axhline(0, c="0.3", lw=0.8)
        ax.set_ylabel("Δ vs baseline (points)")
    else:
        ax.text(0.5, 0.5, "not trained (latency-only recipe)", ha="center", va="center", transform=ax.transAxes)
    if has_top1:
        ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    ax.set_title("accuracy", fontsize=10)
    ax = axes[1]
    pos = list(range(len(table)))
    series = [(f"d_{p}_pct", f"{p} (ours)") for p in ours] + [(f"paper_d_{c}_pct", f"{c} (paper)") for c in paper]
    width = 0.8 / max(1, len(series))
    for i, (col, label) in enumerate(series):
        ax.bar([p - 0.4 + width * (i + 0.5) for p in pos], table[col], width, label=label)
    ax.set_xticks(pos, table["variant"], rotation=40, ha="right", fontsize=8)
    ax.axhline(0, c="0.3", lw=0.8)
    ax.set_ylabel("Δ img/s vs baseline (%)")
    ax.set_title("speed", fontsize=10)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_resolution(measurements: pd.DataFrame, path: Path, title: str) -> Path:
    """Latency (ms per image) against input resolution, one line per variant and protocol (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for (variant, protocol), rows in measurements.groupby(["variant", "protocol"]):
        rows = rows.sort_values("img_size")
        ax.plot(rows["img_size"], rows["latency_ms_per_img"], marker="o", label=f"{variant} ({protocol})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("input resolution (pixels per side)")
    ax.set_ylabel("latency (ms per image)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def render_ablation_markdown(table: pd.DataFrame, measurements: pd.DataFrame, meta: Mapping[str, Any],
                             taus: Mapping[str, float], findings: list[dict[str, str]], command: str) -> str:
    """Markdown report of one ablation run: settings, the per-variant table (ours beside the
    paper's), Kendall τ of the Δs, verdicts, findings and, for several resolutions, latency per
    resolution. ``meta`` holds the run's ``run.json`` plus ``paper_source``, ``paper_note``,
    ``paper_accuracy``, ``description`` and ``reduced`` (text, or empty when the recipe's budget ran)."""
    budget = meta.get("budget", {}) or {}
    measure = meta.get("measure", {}) or {}
    acc = meta.get("paper_accuracy", "top1")
    lines = [f"# Ablation: {meta.get('title')}", "", f"Made by: `{command}`", ""]
    if meta.get("description"):
        lines += [str(meta["description"]).strip(), ""]
    if budget.get("train"):
        lines.append(f"- proxy training: `{budget.get('dataset')}` ({meta.get('train_images')} train / "
                     f"{meta.get('val_images')} val images), {budget.get('epochs')} epoch(s) at "
                     f"{budget.get('img_size')}² px, batch {budget.get('batch_size')}, lr {budget.get('lr')}, "
                     f"seeds {list(budget.get('seeds', []))}; top-1 is mean ± std over the seeds")
    else:
        lines.append("- latency-only recipe (no training)")
    lines.append(f"- measured: {', '.join(measure.get('protocols', []))} at {list(measure.get('img_sizes', []))} px "
                 "(3 × H × W input, 1000 classes, as in the papers); params and MACs at the first resolution")
    if meta.get("skipped_protocols"):
        lines.append(f"- not run here (need CUDA): {', '.join(meta['skipped_protocols'])}")
    lines.append(f"- device: `{meta.get('device')}`; wall time {meta.get('seconds')} s (this invocation; rows "
                 "already in the folder are reused)" + (f"; training {meta['training_seconds']:.0f} s summed over "
                 "the rows" if meta.get("training_seconds") else ""))
    lines.append("- latency: one invocation's IQR understates the spread between invocations; `--remeasure` "
                 "measures again with the training rows kept, to see how far small speed Δs move")
    if meta.get("reduced"):
        lines.append(f"- **reduced budget**: {meta['reduced']}")
    lines += ["", f"Paper figures: {meta.get('paper_source') or '–'}"]
    if meta.get("paper_note"):
        lines.append(f"({meta['paper_note']})")
    lines += ["", "## Our numbers beside the paper's", ""]

    speed_protocols, paper_speed = _speed_columns(table)
    rows = []
    for r in table.to_dict("records"):
        row = {"variant": r["label"], "params (M)": _fmt(r["params_m"], 3), "MACs (M)": _fmt(r["macs_m"], 1)}
        if "top1_mean" in r:
            row["top-1 (%)"] = f"{_fmt(r['top1_mean'])} ± {_fmt(r['top1_std'])} (n={r['seeds']})"
            row["Δ top-1"] = _fmt(r["d_top1"], signed=True)
        row[f"paper {acc}"] = _fmt(r["paper_acc"], 1)
        row[f"paper Δ {acc}"] = _fmt(r["paper_d_acc"], 1, signed=True)
        if "verdict_acc" in r:
            row["verdict (acc)"] = r["verdict_acc"]
        for p in speed_protocols:
            row[f"{p} img/s"] = _fmt(r[f"{p}_img_s"], 1)
            row[f"Δ {p} %"] = _fmt(r[f"d_{p}_pct"], 1, signed=True)
        for col in paper_speed:
            row[f"paper {col}"] = _fmt(r[f"paper_{col}"], 1)
            row[f"paper Δ {col} %"] = _fmt(r[f"paper_d_{col}_pct"], 1, signed=True)
            if f"verdict_{col}" in r:
                row[f"verdict ({col})"] = r[f"verdict_{col}"]
        rows.append(row)
    lines += [_table_md(pd.DataFrame(rows)), ""]
    if taus:
        lines.append("Rank agreement of our Δs with the paper's (Kendall τ over the non-baseline rows): " +
                     ", ".join(f"{'accuracy' if k == 'acc' else k} τ = {_fmt(v)}" for k, v in taus.items()))
        lines.append("")
    lines += ["Verdicts: *reproduced* = our Δ has the paper's sign and exceeds our noise (2 × the standard error "
              "over seeds and 0.2 points for accuracy; 5 % or 2 × the relative IQR for speed), *not reproduced* = "
              "the opposite sign beyond the noise, *unclear* = within the noise (or no paper figure).", ""]
    if findings:
        lines += ["## The paper's findings, checked", "", _table_md(pd.DataFrame(findings)), ""]
    if not measurements.empty and measurements["img_size"].nunique() > 1:
        pivot = measurements.pivot_table(index=["variant", "protocol"], columns="img_size",
                                         values="latency_ms_per_img").reset_index()
        pivot.columns = [f"{c} px (ms/img)" if isinstance(c, (int, float)) else c for c in pivot.columns]
        lines += ["## Latency across input resolutions", "", pivot.to_markdown(index=False, floatfmt=".3f"), "",
                  "Plot: `latency_vs_resolution.png`.", ""]
    lines += ["Files: `summary.csv` (this table, every column), `ablation.png`, and the raw rows "
              "`variants.csv`, `training.csv`, `measurements.csv`, `run.json`.", ""]
    return "\n".join(lines)


def write_ablation_report(table: pd.DataFrame, measurements: pd.DataFrame, out_dir: Path, meta: Mapping[str, Any],
                          taus: Mapping[str, float], findings: list[dict[str, str]], command: str) -> AblationReportPaths:
    """Write ``summary.csv``, ``ablation.png``, ``report.md`` (and ``latency_vs_resolution.png`` when
    several resolutions were measured) into ``out_dir`` (created if needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    res_png = None
    if not measurements.empty and measurements["img_size"].nunique() > 1:
        res_png = plot_resolution(measurements, out_dir / "latency_vs_resolution.png",
                                  f"{meta.get('title')}: latency vs resolution")
    paths = AblationReportPaths(out_dir / "summary.csv", out_dir / "ablation.png", out_dir / "report.md", res_png)
    table.to_csv(paths.csv, index=False)
    plot_ablation(table, paths.png, str(meta.get("title")), str(meta.get("paper_accuracy", "top1")))
    paths.markdown.write_text(render_ablation_markdown(table, measurements, meta, taus, findings, command),
                              encoding="utf-8")
    return paths
