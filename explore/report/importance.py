"""The importance report (arXiv:2305.07027 §3.3, Fig. 5): the Fig. 5 plot, the comparison of the
original, pruned and suggested models, the retained widths, the reallocated stages and the verdict
on the paper's trend. Works from the result's DataFrames and configs, never from live models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from explore.report.common import pyplot

if TYPE_CHECKING:  # the result's type, for annotations only: the report never runs the analysis
    from explore.analysis.importance.command import ImportanceResult
    from explore.arch import ArchConfig

__all__ = ["plot_retained", "render_summary", "write_importance_report", "stored_importance", "STORED_SETTINGS",
           "IMPORTANCE_JSON", "write_importance_summary"]

IMPORTANCE_JSON = "importance.json"
"""The file beside ``summary.md`` that stores what the summary shows and the CSVs do not hold."""

STORED_SETTINGS = ("dataset", "max_train", "max_val", "batch_size", "epochs", "seed", "score_batches",
                   "latency_repeats", "target", "by", "checkpoint")
"""The settings the summary states (``importance.json``'s ``settings``), as the run resolved them."""


def plot_retained(retained: pd.DataFrame, path: Path, title: str) -> Path:
    """The Fig. 5 layout: per block, the retained QK, V and FFN widths over the block's input width
    (solid, after pruning) and the widths before pruning (dashed); beside it, when the frame has
    them, the median Taylor score per parameter of each part (log scale). Writes a PNG at ``path``."""
    plt = pyplot()

    blocks = retained[retained["location"] == "block"].sort_values("index")
    density = [p for p in ("qk", "v", "ffn") if f"{p}_score_per_param" in blocks
               and (blocks[f"{p}_score_per_param"] > 0).any()]
    width = max(6.0, 0.6 * len(blocks) + 4.5)
    fig, axes = plt.subplots(1, 2 if density else 1, figsize=(width * (1.8 if density else 1), 3.8), squeeze=False)
    colours = {"qk": "tab:blue", "v": "tab:orange", "ffn": "tab:green"}
    names = {"qk": "QK", "v": "V", "ffn": "FFN" if (blocks["ffn_kind"] != "mbconv").all() else "FFN/MBConv"}
    ax = axes[0][0]
    for part, colour in colours.items():
        after, before = blocks[f"{part}_ratio_after"], blocks[f"{part}_ratio_before"]
        if after.notna().any():
            ax.plot(blocks["index"], after, marker="o", color=colour, label=f"{names[part]} after")
            ax.plot(blocks["index"], before, linestyle="--", color=colour, alpha=0.5, label=f"{names[part]} before")
    ax.set_ylabel("channels / block input width")
    ax.set_title(title, fontsize=9)
    if density:
        right = axes[0][1]
        for part in density:
            values = blocks[f"{part}_score_per_param"].where(blocks[f"{part}_score_per_param"] > 0)
            right.plot(blocks["index"], values, marker="o", color=colours[part], label=names[part])
        right.set_yscale("log")
        right.set_ylabel("median Taylor score per parameter")
        right.set_title("importance per parameter (any target)", fontsize=9)
    for a in axes[0]:
        a.set_xticks(list(blocks["index"]))
        a.set_xticklabels(list(blocks["label"]), rotation=45, ha="right", fontsize=8)
        a.set_xlabel("block")
        a.grid(alpha=0.3)
        a.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _md_table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False)


def _stage_table(config: ArchConfig, suggested: ArchConfig) -> pd.DataFrame:
    rows = []
    hidden_key = "expand_ratio" if config.layout == "mbconv" else "ffn_ratio"
    for i, (a, b) in enumerate(zip(config.stages, suggested.stages)):
        rows.append({"stage": i, "width": a.width, "mixer": a.token_mixer, "heads": f"{a.heads} -> {b.heads}",
                     "qk_dim": f"{a.qk_dim} -> {b.qk_dim}", "v_ratio": f"{a.v_ratio:g} -> {b.v_ratio:g}",
                     hidden_key: f"{getattr(a, hidden_key):g} -> {getattr(b, hidden_key):g}"})
    return pd.DataFrame(rows)


def _yes_no(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "no")


def render_summary(result: ImportanceResult, command: str, note: str | None = None) -> str:
    """Markdown: command, data and budget, the comparison table, the per-block retained ratios,
    the reallocated stages and the verdict on the paper's trend, with numbers; then the run's ``note``
    (``--note``: its context, e.g. a shared machine) as a closing paragraph.

    ``result`` is read by attribute only: an :class:`ImportanceResult`, or the stored one that
    ``explore rerender`` builds from ``importance.json`` and the CSVs (same attributes, bar the models)."""
    s, plan, trend = result.settings, result.plan, result.trend
    comp = result.comparison.assign(
        params=(result.comparison["params"] / 1e6).round(4), macs=(result.comparison["macs"] / 1e6).round(3),
        latency_ms=result.comparison["latency_ms"].round(3), latency_iqr_ms=result.comparison["latency_iqr_ms"].round(3),
        top1=result.comparison["top1"].round(2),
    ).rename(columns={"params": "params (M)", "macs": "MACs (M)", "latency_ms": "latency (ms)",
                      "latency_iqr_ms": "latency IQR (ms)", "top1": "top-1 (%)"})
    blocks = result.retained[result.retained["location"] == "block"]
    cols = ["label", "width", "mixer", "heads_before", "heads_after", "qk_ratio_before", "qk_ratio_after", "qk_kept",
            "v_ratio_before", "v_ratio_after", "v_kept", "ffn_ratio_before", "ffn_ratio_after", "ffn_kept"]
    per_block = blocks[cols].round(3)
    down = result.retained[result.retained["location"] == "downsample"]
    by_cost = plan.removed_params / max(1, plan.prunable_params), plan.removed_macs / max(1, plan.prunable_macs)
    budget = (f"{s.epochs:g} epoch(s) over {s.max_train or 'all'} training images, batch {s.batch_size}, "
              f"top-1 on {s.max_val or 'all'} held-out images" if s.checkpoint is None else f"checkpoint {s.checkpoint}")
    lines = [
        f"# Taylor importance and parameter reallocation: {result.name}",
        "",
        f"Command: `{command}`",
        "",
        f"Dataset {s.dataset} at {result.config.img_size}x{result.config.img_size}; {budget}; seed {s.seed}; "
        f"scores summed over {s.score_batches} training batches of {s.batch_size}; device {result.device_name}; "
        f"latency: cpu-latency protocol (CPU, batch 16, one thread, BN fused, {s.latency_repeats} repeats); "
        f"time: " + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items()) + ".",
        "",
        (f"Model: `{result.config.summary()}`. Pruned {s.target:g} of the prunable {s.by} "
        f"(removed {plan.removed_params:,} of {plan.prunable_params:,} prunable params = {by_cost[0]:.1%}, "
        f"{plan.removed_macs:,} of {plan.prunable_macs:,} prunable MACs = {by_cost[1]:.1%}), groups ranked globally "
        + ("by Taylor score per unit of cost" if plan.rank == "per-cost" else "by raw Taylor score")
        + " (arXiv:2305.07027 §3.3)."),
        "",
        "## Original, pruned and suggested",
        "",
        _md_table(comp),
        "",
        ("`pruned` is the original with the channels removed (no fine-tuning); `suggested` is the reallocated "
        "architecture (`suggested_config.json`) trained from scratch with the same budget and seed."),
        "",
        "## Retained channels per block (Fig. 5 layout)",
        "",
        ("Ratios are channels over the block's input width C (QK and V: totals over heads; FFN: per FFN); "
        "`*_kept` = after / before. Plot: `retained.png`; every row: `retained.csv`; every group: `scores.csv`."),
        "",
        _md_table(per_block),
        "",
    ]
    if not down.empty:
        lines += ["Downsample FFN / MBConv hidden layers:", "",
                  _md_table(down[["label", "width", "ffn_kind", "ffn_before", "ffn_after", "ffn_kept"]].round(3)), ""]
    lines += ["## Reallocated stages", "", _md_table(_stage_table(result.config, result.suggested)), ""]
    lines += _trend_lines(trend)
    verdict = {"partly": "holds partly"}.get(trend["verdict"], trend["verdict"])
    lines += ["", f"Verdict: the paper's trend **{verdict}** on this model.", ""]
    lines += _detail_lines(result, blocks)
    if note:
        lines += [note, ""]
    return "\n".join(lines)


def _trend_lines(trend: dict) -> list[str]:
    """The section on the paper's trend (V keeps more than QK, the FFN shrinks, more in later blocks)."""
    lines = ["## The paper's trend", ""]
    if trend.get("attention_blocks"):
        dens = (f"; Taylor score per parameter V / QK: median over blocks {trend['v_qk_score_ratio']:.2f}, V "
                f"higher in {trend['blocks_v_denser']} of {trend['attention_blocks']} blocks"
                if "blocks_v_denser" in trend else "")
        basis = ("" if trend["v_over_qk_basis"] != "score per parameter" else
                 " (decided by the score per parameter: the retained fractions tie at this target)")
        lines.append(f"- V keeps a larger share than QK: **{_yes_no(trend['v_over_qk'])}**{basis} — mean retained "
                     f"fraction V {trend['v_kept_mean']:.3f} vs QK {trend['qk_kept_mean']:.3f} (V > QK in "
                     f"{trend['blocks_v_over_qk']} of {trend['attention_blocks']} blocks); ratio to the input width "
                     f"after pruning: V {trend['v_ratio_after_mean']:.3f}, QK {trend['qk_ratio_after_mean']:.3f}"
                     f"{dens}.")
    if trend.get("ffn_blocks"):
        halves = (f"; first half of the blocks keeps {trend['ffn_kept_first_half']:.3f}, second half "
                  f"{trend['ffn_kept_second_half']:.3f}" if "ffn_kept_first_half" in trend else "")
        lines.append(f"- FFN hidden shrinks: **{_yes_no(trend['ffn_shrinks'])}** — mean retained fraction "
                     f"{trend['ffn_kept_mean']:.3f}; by block: {', '.join(f'{k:.3f}' for k in trend['ffn_kept_by_block'])}.")
        lines.append(f"- FFN shrinks more in later blocks: **{_yes_no(trend['ffn_later_more'])}** — Spearman rho of "
                     f"retained fraction vs block index {trend['ffn_rho']:.3f}{halves}.")
    return lines


def _detail_lines(result: ImportanceResult, blocks: pd.DataFrame) -> list[str]:
    """The sections after the verdict: score density per block, sensitivity, how the groups were
    scored and cut, and what was (or was not) enqueued."""
    s = result.settings
    sources = result.scores.drop_duplicates("unit")["source"].value_counts().to_dict()
    backends = pd.Series(result.backends).value_counts().to_dict() if result.backends else {}
    lines: list[str] = []
    density_cols = [c for c in ("qk_score_per_param", "v_score_per_param", "ffn_score_per_param") if c in blocks]
    if density_cols:
        table = blocks[["label", *density_cols]].copy()
        for c in density_cols:
            table[c] = table[c].map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
        lines += [("Median Taylor score per parameter of each part, per block (independent of the target and the "
                  "ranking; higher = each parameter matters more):"), "", _md_table(table), ""]
    if not result.sensitivity.empty:
        sens = result.sensitivity.round(3)
        lines += [(f"Sensitivity: the same scores pruned to other targets (fraction of the prunable {s.by}) under "
                  "both rankings (`per-cost`: score / cost; `score`: raw Taylor score, Molchanov et al.'s global "
                  "ranking); `*_kept` are mean retained fractions, `ffn_rho` the rank correlation of the FFN "
                  "retained fraction with the block index:"), "", _md_table(sens), ""]
    lines += ["## How the groups were scored and cut", "",
              (f"- Scores: first-order Taylor |w dL/dw| summed per group over the scoring batches; units scored by "
              f"source: {sources} (magnitude = a unit whose Taylor scores summed to 0 or were not finite)."),
              (f"- Surgery back-ends per pruned unit: {backends} (torch-pruning for FFN/MBConv hidden channels when "
              "its dependency group stays inside the unit; our own grouping for attention Q/K pairs, V channels "
              "and heads)."), ""]
    if result.enqueued is not None:
        lines += ["## Enqueued", "",
                  (f"Into `{result.enqueued['run_dir']}` with `study.enqueue_trial(params, skip_if_exists=True)`: "
                  f"`{json.dumps(result.enqueued['params'], sort_keys=True)}`."),
                  "Snapped to the space: " + ("; ".join(result.enqueued["notes"]) or "nothing") + ".", ""]
    if result.enqueue_error is not None:
        lines += ["## Not enqueued", "", f"`{result.enqueue_error}`", ""]
    return lines


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars as Python ones (bool, int, float), for ``json``."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


def stored_importance(result: ImportanceResult, command: str, note: str | None = None) -> dict[str, Any]:
    """What ``summary.md`` shows beyond the CSVs and ``suggested_config.json`` (``importance.json``).

    Keys: ``command``; ``name``; ``settings`` (:data:`STORED_SETTINGS`); ``config`` (the analysed config,
    :meth:`ArchConfig.to_dict`, with the dataset's image size, channels and classes); ``plan`` (removed and
    prunable params and MACs, the ranking); ``trend`` (:func:`explore.analysis.importance.paper_trend`);
    ``backends`` (unit -> surgery back-end); ``device_name``; ``seconds`` (per phase, s); ``enqueue_error``
    (or null); ``note`` (``--note``, or null).
    """
    plan = result.plan
    return _plain({
        "command": command, "name": result.name,
        "settings": {key: getattr(result.settings, key) for key in STORED_SETTINGS},
        "config": result.config.to_dict(),
        "plan": {"removed_params": plan.removed_params, "prunable_params": plan.prunable_params,
                 "removed_macs": plan.removed_macs, "prunable_macs": plan.prunable_macs, "rank": plan.rank},
        "trend": result.trend, "backends": dict(result.backends), "device_name": result.device_name,
        "seconds": dict(result.seconds), "enqueue_error": result.enqueue_error, "note": note})


def write_importance_report(result: ImportanceResult, out_dir: Path, command: str,
                            note: str | None = None) -> dict[str, Path]:
    """Write ``summary.md``, ``comparison.csv``, ``retained.csv``, ``retained.png``, ``scores.csv``,
    ``sensitivity.csv``, ``suggested_config.json`` (loadable by ``explore describe``), ``importance.json``
    (:func:`stored_importance`: with the CSVs, everything the summary shows) and ``enqueued.json`` when
    enqueued; returns their paths by name.

    Args:
        result: what ``explore importance`` computed (its tables and configs only).
        out_dir: the folder (created). command: the command line that made the run.
        note: a sentence on the run's context (``--note``), or None.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "summary": out_dir / "summary.md",
        "comparison": out_dir / "comparison.csv",
        "retained": out_dir / "retained.csv",
        "plot": out_dir / "retained.png",
        "scores": out_dir / "scores.csv",
        "sensitivity": out_dir / "sensitivity.csv",
        "suggested": out_dir / "suggested_config.json",
        "stored": out_dir / IMPORTANCE_JSON,
    }
    result.sensitivity.to_csv(paths["sensitivity"], index=False)
    result.comparison.to_csv(paths["comparison"], index=False)
    result.retained.to_csv(paths["retained"], index=False)
    result.scores.to_csv(paths["scores"], index=False, float_format="%.6g")
    paths["suggested"].write_text(result.suggested.to_json(indent=2) + "\n", encoding="utf-8")
    paths["stored"].write_text(json.dumps(stored_importance(result, command, note), indent=2) + "\n", encoding="utf-8")
    if result.enqueued is not None:
        paths["enqueued"] = out_dir / "enqueued.json"
        paths["enqueued"].write_text(json.dumps(result.enqueued, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    write_importance_summary(result, out_dir, command, note)
    return paths


def write_importance_summary(result: ImportanceResult, out_dir: Path, command: str, note: str | None = None) -> Path:
    """Write the rendered part of an importance report, ``retained.png`` and ``summary.md`` (what
    ``explore rerender`` writes again from the stored files); returns the summary's path."""
    text = render_summary(result, command, note)  # first: a table or key it lacks leaves nothing written
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_retained(result.retained, out_dir / "retained.png",
                  f"{result.name}: retained channels / input width ({result.settings.target:g} of {result.settings.by} pruned)")
    path = out_dir / "summary.md"
    path.write_text(text, encoding="utf-8")
    return path
