"""The latency-table evaluation report: predicted vs measured latency on held-out architectures.

Renders :class:`explore.measure.latency_table_jobs.TableEvaluation` (passed as its fields: this stage
works from tables): ``summary.md`` (goals, the predictor against MACs), ``predictions.csv``,
``predicted_vs_measured.png`` and ``evaluation.json`` (the rest of what the summary shows: settings,
the calibration models as re-timed in the evaluation session, the fitted corrections), from which
with ``predictions.csv`` ``explore rerender`` writes the report again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from explore.report.common import fmt, pyplot, save_figure, table_block

__all__ = ["GOALS", "evaluation_record", "render_table_evaluation", "plot_predicted", "write_table_evaluation"]

GOALS = {"mape": 5.0, "within_10": 95.0, "kendall_tau": 0.9}
"""Issue 16's goals: MAPE <= 5 %, >= 95 % of predictions within ±10 %, Kendall's τ >= 0.9."""


def plot_predicted(rows: pd.DataFrame, path: Path, title: str) -> Path:
    """Predicted (latency table; MACs fit) against measured ms/img, with the y = x line and ±10 % band."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 5.2), dpi=120, layout="constrained")
    measured = rows["measured (ms/img)"]
    ax.scatter(measured, rows["MACs fit (ms/img)"], s=22, c="0.6", marker="x", label="MACs (linear fit)")
    ax.scatter(measured, rows["predicted (ms/img)"], s=26, c="C0", label="latency table")
    low = float(min(measured.min(), rows["predicted (ms/img)"].min(), rows["MACs fit (ms/img)"].min())) * 0.9
    high = float(max(measured.max(), rows["predicted (ms/img)"].max(), rows["MACs fit (ms/img)"].max())) * 1.1
    ax.plot([low, high], [low, high], c="k", lw=0.8)
    ax.fill_between([low, high], [low * 0.9, high * 0.9], [low * 1.1, high * 1.1], color="C0", alpha=0.1,
                    label="±10 %")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel("measured latency (ms/img)")
    ax.set_ylabel("predicted latency (ms/img)")
    return save_figure(fig, ax, path, title)


def _goal(name: str, value: float) -> str:
    target = GOALS[name]
    met = value <= target if name == "mape" else value >= target
    return "met" if met else "not met"


def _figure_line(meta: Mapping[str, Any]) -> str:
    """Which latency figure the table and this evaluation compare (normalised or raw)."""
    if meta.get("figure") == "normalised":
        scale = meta.get("reference_calibration_ms")
        return ("- figures: normalised (each timing paired with the EfficientViT-M0 reference, median pair ratio x "
                + (f"the table's calibration of the reference, {fmt(scale)} ms per batch" if scale is not None
                   else "this run's calibration of the reference") + "; see docs/protocols.md)")
    return "- figures: raw (wall time as timed)"


def render_table_evaluation(rows: pd.DataFrame, stats: Mapping[str, Mapping[str, float]], regressor: str,
                            choice: Mapping[str, float], differences: list[str], meta: Mapping[str, Any],
                            command: str) -> str:
    """Markdown of one evaluation: set-up, the predictor against the goals and against MACs, each
    architecture's row."""
    protocol = meta.get("protocol", {})
    ours, macs = stats["predictor"], stats["macs"]
    session = stats.get("recalibrated")
    sampling = meta.get("sampling", {})
    lines = [
        f"# Latency table of `{meta['space'].get('name')}`: predicted vs measured",
        "",
        f"Made by: `{command}`",
        "",
        *([f"Note: {meta['note']}", ""] if meta.get("note") else []),
        f"- table: `{meta['table']}` ({meta['table_units']} units, {meta['table_models']} calibration models; "
        f"{sampling.get('archs')} sampled architectures, seed {sampling.get('seed')}), measured on "
        f"{meta['table_device']}",
        f"- protocol: {protocol.get('name')}, batch {protocol.get('batch_size')}, {protocol.get('mode')}, "
        f"threads {protocol.get('threads')}, median of {protocol.get('repeats')} runs; "
        + ", ".join(f"{k} {v}" for k, v in sorted(meta.get("versions", {}).items())),
        _figure_line(meta),
        (f"- held out: {meta['archs']} architectures sampled with seed {meta['seed']} (none in the table's calibration "
         f"set), measured whole on {meta['device']}" if meta.get("seed") is not None else
         f"- the {meta['archs']} architectures of study `{meta.get('study')}` (arch i = trial "
         f"{', '.join('#' + str(n) for n in meta.get('trials', []))} in order), measured whole on {meta['device']}")
        + f" (the fastest of {meta.get('rounds', 1)} interleaved rounds, as the "
        "table's entries)",
        f"- predictor: Σ units (measured where the unit is in the table, else the `{regressor}` regressor) × a + b "
        "fitted on the calibration models"
        + ("; regressor chosen by calibration MAPE (units left out): "
           + ", ".join(f"{k} {fmt(v)} %" for k, v in choice.items()) if choice else ""),
        "",
    ]
    if differences:
        lines += ["**Measured elsewhere:** " + "; ".join(differences) + ".", ""]
    table = pd.DataFrame([
        {"predictor": "latency table", "MAPE (%)": fmt(ours["mape"]), "within ±10 % (%)": fmt(ours["within_10"], 1),
         "Kendall τ": fmt(ours["kendall_tau"], 3), "max error (%)": fmt(ours["max_error"], 1)},
        *([{"predictor": "latency table, re-calibrated this session", "MAPE (%)": fmt(session["mape"]),
             "within ±10 % (%)": fmt(session["within_10"], 1), "Kendall τ": fmt(session["kendall_tau"], 3),
             "max error (%)": fmt(session["max_error"], 1)}] if session else []),
        {"predictor": "MACs (linear fit)", "MAPE (%)": fmt(macs["mape"]), "within ±10 % (%)": fmt(macs["within_10"], 1),
         "Kendall τ": fmt(macs["kendall_tau"], 3), "max error (%)": fmt(macs["max_error"], 1)},
        {"predictor": "goal", "MAPE (%)": f"<= {GOALS['mape']:g}", "within ±10 % (%)": f">= {GOALS['within_10']:g}",
         "Kendall τ": f">= {GOALS['kendall_tau']:g}", "max error (%)": ""},
    ])
    lines += ["## Accuracy of the prediction", "", table_block(table),
              f"Goals, table as built: MAPE {_goal('mape', ours['mape'])}, ±10 % share "
              f"{_goal('within_10', ours['within_10'])}, τ {_goal('kendall_tau', ours['kendall_tau'])}"
              + (f"; re-calibrated: MAPE {_goal('mape', session['mape'])}, ±10 % share "
                 f"{_goal('within_10', session['within_10'])}, τ {_goal('kendall_tau', session['kendall_tau'])}"
                 if session else "") + ". MACs τ is the rank agreement of the MAC counts "
              "themselves; its MAPE is after the linear fit on the calibration models. *Re-calibrated*: the same "
              "unit figures, the correction fitted again on the calibration models as measured in this session "
              "(what a user gets by re-measuring those models on the day; no held-out figure is used)"
              + (f": MAPE {fmt(session['mape'])} %, {fmt(session['within_10'], 1)} % within ±10 %, "
                 f"τ {fmt(session['kendall_tau'], 3)}." if session else "."), ""]
    drift = stats.get("drift")
    if drift:
        lines += [f"**Noise floor.** The table's {meta['table_models']} calibration models, measured again in this "
                  f"session beside the held-out ones: the table's figures are {fmt(drift['mean_signed'], 1, signed=True)} % "
                  f"off this session's on average (MAPE {fmt(drift['mape'])} %, {fmt(drift['within_10'], 1)} % within "
                  f"±10 %, τ {fmt(drift['kendall_tau'], 3)}): the same models, timed at two moments on this machine, "
                  "agree no better than that.", ""]
    contended = int(rows["contended"].eq(True).sum()) if "contended" in rows else 0
    if contended:
        lines += [f"{contended} measurements were flagged `contended` (the machine was busy while timing).", ""]
    shown = rows.drop(columns=["config"]).copy()
    for col in ("measured (ms/img)", "predicted (ms/img)", "recalibrated (ms/img)", "MACs fit (ms/img)"):
        shown[col] = shown[col].round(4)
    for col in ("error (%)", "recalibrated error (%)", "MACs error (%)"):
        shown[col] = shown[col].round(1)
    shown["params"] = (shown["params"] / 1e6).round(3)
    shown["macs"] = (shown["macs"] / 1e6).round(2)
    shown = shown.rename(columns={"params": "params (M)", "macs": "MACs (M)"})
    lines += ["## Held-out architectures", "", table_block(shown),
              "Files: `predictions.csv` (every row, with its config), `predicted_vs_measured.png`, `evaluation.json` "
              "(the settings, the calibration models as re-timed in this session and the fitted corrections: "
              "`explore rerender` writes the report again from it and `predictions.csv`).", ""]
    return "\n".join(lines)


def evaluation_record(regressor: str, choice: Mapping[str, float], differences: list[str], meta: Mapping[str, Any],
                      command: str, calibration: Sequence[Mapping[str, Any]],
                      correction: Mapping[str, Any]) -> dict[str, Any]:
    """What ``evaluation.json`` stores: everything the report shows that is neither in
    ``predictions.csv`` nor computed from it, as plain JSON values.

    ``{"command", "regressor", "choice", "differences", "meta", "correction", "calibration"}``:
    ``meta`` holds the settings, the table's path as given (``table_path``), its protocol, devices and
    library versions, and the study's trial numbers for ``--study``; ``calibration`` the table's
    calibration models as re-timed in the evaluation session (table figure, this session's figure,
    every round: :func:`explore.measure.latency_table_jobs.calibration_rows`); ``correction`` the
    correction fitted on the table and on this session's figures, and the MACs fit. The accuracy
    figures and the noise floor are not stored: they are computed again from these
    (:func:`explore.measure.latency_table_jobs.evaluation_stats`).
    """
    record = {"command": command, "regressor": regressor, "choice": dict(choice), "differences": list(differences),
              "meta": dict(meta), "correction": dict(correction), "calibration": [dict(c) for c in calibration]}
    return json.loads(json.dumps(record))


def write_table_evaluation(rows: pd.DataFrame, stats: Mapping[str, Mapping[str, float]], regressor: str,
                           choice: Mapping[str, float], differences: list[str], meta: Mapping[str, Any],
                           out_dir: Path, command: str, *, calibration: Sequence[Mapping[str, Any]] = (),
                           correction: Mapping[str, Any] | None = None) -> Path:
    """Write ``summary.md``, ``predictions.csv``, ``predicted_vs_measured.png`` and ``evaluation.json``
    (:func:`evaluation_record`) into ``out_dir``; returns the markdown's path. The markdown is rendered
    before anything is written (a meta that does not render writes nothing)."""
    markdown = render_table_evaluation(rows, stats, regressor, choice, differences, meta, command)
    record = evaluation_record(regressor, choice, differences, meta, command, list(calibration), correction or {})
    out_dir.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out_dir / "predictions.csv", index=False)
    plot_predicted(rows, out_dir / "predicted_vs_measured.png",
                   f"{meta['space'].get('name')}: {meta['protocol'].get('name')} on {meta['device']}")
    (out_dir / "evaluation.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    path = out_dir / "summary.md"
    path.write_text(markdown, encoding="utf-8")
    return path
