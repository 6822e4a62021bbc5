"""The ablation report: our numbers beside the paper's, Δ vs the baseline, Kendall τ, verdicts,
findings, and latency against resolution.

Works from the tables of :func:`explore.analysis.ablation.summarise` and the run's stored rows
(``measurements.csv``, ``run.json``), never from live models.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from explore.report.common import accuracy_name, fmt, pyplot, table_block
from explore.resolution import resolution_label, resolution_pixels

__all__ = ["AblationReportPaths", "plot_ablation", "plot_resolution", "render_ablation_markdown",
           "write_ablation_report"]


@dataclass(frozen=True)
class AblationReportPaths:
    """Files written by :func:`write_ablation_report`."""

    csv: Path
    png: Path
    markdown: Path
    resolution_png: Path | None


def _speed_columns(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The measured protocols (``<p>_img_s`` with ``d_<p>_pct``) and the paper's speed columns
    (``paper_<col>`` with ``paper_d_<col>_pct``) of an ablation table, in column order."""
    ours = [c[:-len("_img_s")] for c in table.columns
            if c.endswith("_img_s") and f"d_{c[:-len('_img_s')]}_pct" in table.columns]
    paper = [c[len("paper_"):] for c in table.columns
             if c.startswith("paper_") and f"paper_d_{c[len('paper_'):]}_pct" in table.columns]
    return ours, paper


def plot_ablation(table: pd.DataFrame, path: Path, title: str, accuracy_label: str, ours: str = "top-1") -> Path:
    """Left: Δ top-1 vs the baseline per variant, ours (error bar: standard error over seeds) beside
    the paper's Δ (its accuracy column), or top-1 against x for sweeps. Right: Δ img/s (%) per
    measured protocol beside the paper's. Writes a PNG at ``path``."""
    plt = pyplot()

    ours, paper = _speed_columns(table)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110)
    ax = axes[0]
    has_top1 = "top1_mean" in table and table["top1_mean"].notna().any()
    if has_top1 and table["x"].notna().sum() >= 2:
        rows = table[table["x"].notna()].sort_values("x")
        ax.errorbar(rows["x"], rows["top1_mean"], yerr=rows["top1_std"].fillna(0), marker="o", capsize=3,
                    label="ours (mean ± std)")
        ax.set_xlabel("x")
        ax.set_ylabel(f"proxy {ours} (%)")
        if rows["paper_acc"].notna().any():
            twin = ax.twinx()
            twin.plot(rows["x"], rows["paper_acc"], "s--", c="C1", label=f"paper {accuracy_label}")
            twin.set_ylabel(f"paper {accuracy_label}")
    elif has_top1:
        pos = range(len(table))
        ax.bar([p - 0.2 for p in pos], table["d_top1"], 0.4, yerr=table["d_top1_se"].fillna(0), capsize=2,
               label=f"ours Δ {ours} (± s.e.)")
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
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for (variant, protocol), rows in measurements.groupby(["variant", "protocol"]):
        side = rows["img_size"].map(lambda r: math.sqrt(resolution_pixels(r)))  # "1024x2048": its pixels' square side
        rows = rows.assign(side=side).sort_values("side")
        ax.plot(rows["side"], rows["latency_ms_per_img"], marker="o", label=f"{variant} ({protocol})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("input resolution (pixels per side; H x W inputs at sqrt(H W))")
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
    m = accuracy_name(budget.get("task"))  # our accuracy: proxy top-1, or mIoU with the MIT segmentation head
    lines = [f"# Ablation: {meta.get('title')}", "", f"Made by: `{command}`", ""]
    if meta.get("description"):
        lines += [str(meta["description"]).strip(), ""]
    lines += _settings_lines(meta, m)
    lines += ["", "## Our numbers beside the paper's", "", table_block(_beside_the_paper(table, meta, m)), ""]
    if taus:
        lines.append("Rank agreement of our Δs with the paper's (Kendall τ over the non-baseline rows): " +
                     ", ".join(f"{'accuracy' if k == 'acc' else k} τ = {fmt(v)}" for k, v in taus.items()))
        lines.append("")
    trained = "verdict_acc" in table
    lines += [("Verdicts (accuracy), from the paired interval of the next section, the one rule that decides a row: "
              "*reproduced* = the interval excludes 0 with the paper's sign (or lies within ±0.2 points where the "
              "paper's Δ does too), *not reproduced* = it excludes 0 with the opposite sign (or lies within ±0.2 "
              "points where the paper reports more), *unclear* = the interval is open (or no paper figure). "
               if trained else "") +
              "Verdicts (speed): our Δ img/s has the paper's sign beyond 5 % or 2 × the relative IQR (*reproduced*), "
              "the opposite sign beyond it (*not reproduced*), else *unclear*.", ""]
    if "d_top1_paired" in table and table["d_top1_paired"].notna().any():
        lines += _paired_section(table, meta, m)
    if findings:
        lines += ["## The paper's findings, checked", "", table_block(pd.DataFrame(findings)), ""]
    if not measurements.empty and measurements["img_size"].nunique() > 1:
        lines += _resolution_section(measurements)
    lines += ["Files: `summary.csv` (this table, every column), `ablation.png`, and the raw rows "
              "`variants.csv`, `training.csv`, `measurements.csv`, `run.json`.", ""]
    return "\n".join(lines)


def _settings_lines(meta: Mapping[str, Any], m: str) -> list[str]:
    """The run's settings as a list: training, measurement, device and time, a reduced budget, the
    paper's source."""
    budget = meta.get("budget", {}) or {}
    measure = meta.get("measure", {}) or {}
    seg = budget.get("task") == "segmentation"
    lines = []
    if budget.get("train"):
        lines.append(f"- proxy training: `{budget.get('dataset')}` ({meta.get('train_images')} train / "
                     f"{meta.get('val_images')} val {'scenes' if seg else 'images'}), {budget.get('epochs')} epoch(s) at "
                     f"{budget.get('seg_size') if seg else budget.get('img_size')}² px, batch {budget.get('batch_size')}, "
                     f"lr {budget.get('lr')}, " + (
                         f"sequential seeds (0 and 1, then one at a time up to {budget['max_seeds']} for rows still "
                         "undecided; each row's n is beside its mean)" if budget.get("max_seeds") else
                         f"seeds {list(budget.get('seeds', []))}") + f"; {m} is mean ± std over the seeds"
                     + (f"; every variant with the MIT segmentation head (width {budget.get('seg_head_width')}, "
                        f"{budget.get('seg_head_depth')} MBConv)" if seg else ""))
    else:
        lines.append("- latency-only recipe (no training)")
    lines.append(f"- measured: {', '.join(measure.get('protocols', []))} at {list(measure.get('img_sizes', []))} px "
                 + ("(3 × H × W input, segmentation head, 19 classes as Cityscapes)" if seg else
                    "(3 × H × W input, 1000 classes, as in the papers)") + "; params and MACs at the first resolution")
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
    return lines


def _beside_the_paper(table: pd.DataFrame, meta: Mapping[str, Any], m: str) -> pd.DataFrame:
    """The main table: per variant, params, MACs, our accuracy and speed with their Δs, the paper's and the verdicts."""
    acc = meta.get("paper_accuracy", "top1")
    speed_protocols, paper_speed = _speed_columns(table)
    rows = []
    for r in table.to_dict("records"):
        row = {"variant": r["label"], "params (M)": fmt(r["params_m"], 3), "MACs (M)": fmt(r["macs_m"], 1)}
        if "top1_mean" in r:
            row[f"{m} (%)"] = f"{fmt(r['top1_mean'])} ± {fmt(r['top1_std'])} (n={r['seeds']})"
            row[f"Δ {m}"] = fmt(r["d_top1"], signed=True)
        row[f"paper {acc}"] = fmt(r["paper_acc"], 1)
        row[f"paper Δ {acc}"] = fmt(r["paper_d_acc"], 1, signed=True)
        if "verdict_acc" in r:
            row["verdict (acc)"] = r["verdict_acc"]
        for p in speed_protocols:
            row[f"{p} img/s"] = fmt(r[f"{p}_img_s"], 1)
            row[f"Δ {p} %"] = fmt(r[f"d_{p}_pct"], 1, signed=True)
        for col in paper_speed:
            row[f"paper {col}"] = fmt(r[f"paper_{col}"], 1)
            row[f"paper Δ {col} %"] = fmt(r[f"paper_d_{col}_pct"], 1, signed=True)
            if f"verdict_{col}" in r:
                row[f"verdict ({col})"] = r[f"verdict_{col}"]
        rows.append(row)
    return pd.DataFrame(rows)


def _paired_section(table: pd.DataFrame, meta: Mapping[str, Any], m: str) -> list[str]:
    """The paired Δ per variant (intervals, variance reduction, decision; seeds used when sequential)."""
    budget = meta.get("budget", {}) or {}
    paired = []
    for r in table[table["d_top1_paired"].notna()].to_dict("records"):
        paired.append({
            "variant": r["label"], "pairs": int(r["pairs"]), f"Δ {m} (paired)": fmt(r["d_top1_paired"], signed=True),
            "95 % CI (paired)": f"[{fmt(r['d_top1_low'], signed=True)}, {fmt(r['d_top1_high'], signed=True)}]",
            "95 % CI (unpaired)": f"[{fmt(r['d_top1_unpaired_low'], signed=True)}, "
                                  f"{fmt(r['d_top1_unpaired_high'], signed=True)}]",
            "variance reduction": fmt(r["variance_reduction"], 1), "decision": r["decision"]})
    sequential = meta.get("sequential") or {}
    if sequential:
        for row in paired:
            name = table.loc[table["label"] == row["variant"], "variant"]
            state = sequential.get(name.iloc[0]) if len(name) else None
            row["seeds used"] = state["seeds"] if state else "–"
            if state and state["state"] == "max seeds":
                row["decision"] = "open (max seeds)"
    looks = max(1, int(budget.get("max_seeds") or 0) - 1)
    level = 100 * (1 - 0.05 / looks)
    if looks > 1:  # the intervals are at the level each planned look spends (explore.stats.look_level)
        for row in paired:
            row[f"{level:g} % CI (paired)"] = row.pop("95 % CI (paired)")
            row[f"{level:g} % CI (unpaired)"] = row.pop("95 % CI (unpaired)")
            row["decision"] = row.pop("decision")
    spending = (f" With sequential seeds every interval is at {level:g} %: the 5 % error rate is spent over the "
                f"{looks} planned looks (after 2, 3, ..., {budget.get('max_seeds')} seeds; Bonferroni alpha spending, "
                "`explore.stats.look_level`), so the procedure as a whole, stopping rule included, decides a row "
                "without an effect as *effect* at most 5 % of the time." if looks > 1 else "")
    return [f"## Δ {m} per seed (paired)", "", table_block(pd.DataFrame(paired)), "",
            "Every variant trains once per seed, and a seed fixes the data order, the augmentation draws and "
            "(where shapes agree) the initial weights, so Δ is taken per seed: the paired t interval "
            "beside Welch's unpaired one; variance reduction = (unpaired / paired standard error)². "
            "*effect*: the interval excludes 0; *negligible*: it lies within ±0.2 points; *open*: more "
            "seeds could decide it." + (
                f" Seeds were sequential (up to {budget.get('max_seeds')}): after seeds 0 and 1, a row got "
                "the next seed only while its interval was open; *open (max seeds)*: still open at the cap."
                if budget.get("max_seeds") else "") + spending, ""]


def _resolution_section(measurements: pd.DataFrame) -> list[str]:
    """Latency (ms/img) per variant and protocol at every measured resolution."""
    labelled = measurements.assign(img_size=measurements["img_size"].map(resolution_label))
    pivot = labelled.pivot_table(index=["variant", "protocol"], columns="img_size",
                                 values="latency_ms_per_img").reset_index()
    sizes = sorted((c for c in pivot.columns if c not in ("variant", "protocol")), key=resolution_pixels)
    pivot = pivot[["variant", "protocol", *sizes]]
    pivot.columns = ["variant", "protocol", *(f"{c} px (ms/img)" for c in sizes)]
    return ["## Latency across input resolutions", "", pivot.to_markdown(index=False, floatfmt=".3f"), "",
            "Plot: `latency_vs_resolution.png`.", ""]


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
    ours = accuracy_name((meta.get("budget") or {}).get("task"))
    plot_ablation(table, paths.png, str(meta.get("title")), str(meta.get("paper_accuracy", "top1")), ours)
    paths.markdown.write_text(render_ablation_markdown(table, measurements, meta, taus, findings, command),
                              encoding="utf-8")
    return paths
