"""The study report: Pareto table, plot, every trial as CSV, markdown summary.

Works from :func:`explore.search.trials_frame` and the study's stored settings
(:func:`explore.search.study_meta`), never from live models. The tables are computed first,
then drawn. ``study.json`` beside the summary keeps the settings and the command line, so that
``explore rerender`` can write the report again from the folder alone (no Optuna storage).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from explore.report.common import accuracy_name, fmt, pyplot, save_figure, table_block

__all__ = [
    "ReportPaths", "metric_label", "pareto_table", "state_counts", "latency_description", "dataset_line", "pareto_figure",
    "plot_pareto", "front_seeds_block", "plot_front_seeds", "supernet_front_block", "schedule_table", "schedule_block", "render_markdown",
    "portable_meta", "write_report",
]


@dataclass(frozen=True)
class ReportPaths:
    """Files written by :func:`write_report` (``front_csv``, ``front_runs_csv``, ``front_png``: only
    with front seeds; ``study_json``: the settings and command the report was rendered from)."""

    csv: Path
    png: Path
    markdown: Path
    front_csv: Path | None = None
    front_png: Path | None = None
    supernet_front_csv: Path | None = None
    study_json: Path | None = None
    front_runs_csv: Path | None = None


def _figure_sentence(frame: pd.DataFrame) -> str:
    """Which latency figure ranks the trials (normalised or raw), from the trials' ``latency_figure``."""
    figures = sorted(frame["latency_figure"].dropna().astype(str).unique())
    if figures == ["normalised"]:
        return ("Latency ranks by the **normalised** figure: each model timed in alternation with the EfficientViT-M0 "
                "reference, median pair ratio x the reference's calibration (docs/protocols.md); the raw figures "
                "are in `trials.csv` (`latency_raw_ms_per_img`).")
    if figures == ["raw"]:
        return "Latency ranks by the **raw** figure (wall time as timed)."
    return f"Latency figures differ between trials ({', '.join(figures)}): they do not rank on one scale."


def metric_label(settings: Mapping[str, Any] | None) -> str:
    """The first objective's column name: ``mIoU (%)`` for a segmentation study, ``inherited top-1 (%)``
    for a ``--supernet`` study, else ``top-1 (%)``."""
    settings = settings or {}
    if settings.get("supernet"):
        return "inherited top-1 (%)"
    return f"{accuracy_name(settings.get('task'))} (%)"


def pareto_table(frame: pd.DataFrame, metric: str = "top-1 (%)") -> pd.DataFrame:
    """The Pareto-optimal COMPLETE trials, fastest first, with display columns: trial, architecture,
    params (M), MACs (M), latency (ms/img), its IQR (ms/img), and, where the study re-measured its
    front, the first and the re-measured figure (``latency`` is the lower), then the first objective
    named ``metric`` (top-1 or mIoU, %; see :func:`metric_label`)."""
    columns = ["trial", "architecture", "params (M)", "MACs (M)", "latency (ms/img)", "IQR (ms/img)", metric]
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
    table[metric] = front["top1"].round(2)
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
        frame: :func:`explore.search.trials_frame`.
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
    """One line on a study's data (:func:`explore.train.dataset_info`): class count, the first class
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


_ABSOLUTE_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:///)(/.*)$")
"""A storage URL naming an absolute file (``sqlite:////home/me/runs/cga/study.db``)."""


def _portable(value: Any) -> Any:
    """A stored setting as a report may keep it: an absolute path (or a URL of an absolute file)
    by :func:`_shown_path`'s rule, anything else as it is (so the rule is idempotent)."""
    if not isinstance(value, str):
        return value
    if value.startswith("/"):
        return _shown_path(value)
    url = _ABSOLUTE_URL.match(value)
    return f"{url.group(1)}{_shown_path(url.group(2))}" if url else value


def portable_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The study's meta (:func:`explore.search.study_meta`) as a report keeps it in ``study.json``
    and renders it: plain JSON values (tuples become lists), ``space_file`` as the summary shows it
    and no absolute path among the settings (``--space``, ``--out``, ``--data-root``, ``--storage``,
    ``--supernet``, ... given as absolute paths keep their file name, see :func:`_shown_path`).
    Applying it again changes nothing."""
    portable = dict(meta)
    if portable.get("space_file"):
        portable["space_file"] = _shown_path(portable["space_file"])
    if isinstance(portable.get("settings"), Mapping):
        portable["settings"] = {key: _portable(value) for key, value in portable["settings"].items()}
    return json.loads(json.dumps(portable))


def pareto_figure(frame: pd.DataFrame, title: str, latency_label: str = "latency (ms)",
                  metric: str = "top-1 (%)") -> Any:
    """The figure of :func:`plot_pareto` (a matplotlib ``Figure`` on the Agg backend; close it
    with ``matplotlib.pyplot.close``). The legend sits below the axes, outside them, so that it
    cannot hide a point."""
    plt = pyplot()

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
    ax.set_ylabel(f"proxy {metric}")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if not done.empty:
        fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return fig


def plot_pareto(frame: pd.DataFrame, path: Path, title: str, latency_label: str = "latency (ms)",
                metric: str = "top-1 (%)") -> Path:
    """Scatter of top-1 (%) against latency for COMPLETE trials, the Pareto front drawn as a step
    line and labelled with trial numbers, the legend below the axes. Writes a PNG at ``path``.

    Args:
        frame: :func:`explore.search.trials_frame` (columns state, pareto, latency_ms, top1, number).
        path: the PNG to write.
        title: the plot's title.
        latency_label: the x axis label (see :func:`latency_description`).
    """
    plt = pyplot()
    fig = pareto_figure(frame, title, latency_label, metric)
    fig.savefig(path)
    plt.close(fig)
    return path


def front_seeds_block(front: pd.DataFrame) -> list[str]:
    """Markdown lines of the front re-trained with common seeds (a table of
    :func:`explore.search.front_seeds.front_table`)."""
    seeds = sorted({int(n) for n in front["seeds"]})
    shown = pd.DataFrame({
        "trial": front["trial"].astype(int),
        "latency (ms/img)": front["latency (ms/img)"].round(4),
        "search top-1 (%)": front["search top-1 (%)"].round(2),
        "seeds": front["seeds"].astype(int),
        "mean top-1 (%)": [fmt(v) for v in front["mean top-1 (%)"]],
        "95 % CI": [f"[{fmt(lo)}, {fmt(hi)}]" for lo, hi in zip(front["CI low"], front["CI high"])],
        "vs": ["–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"#{int(v)}" for v in front["vs"]],
        "Δ top-1 (paired)": [fmt(v, signed=True) for v in front["Δ top-1"]],
        "Δ 95 % CI": [f"[{fmt(lo, signed=True)}, {fmt(hi, signed=True)}]" for lo, hi in zip(front["Δ low"], front["Δ high"])],
        "verdict": front["verdict"],
    })
    kept = int(front["distinguishable"].astype(bool).sum())
    return [
        f"## Front re-trained with common seeds ({'/'.join(map(str, seeds))} per member)",
        "",
        "Each front member trained again with the same seeds (the study's data subsets and proxy budget; per seed, "
        "the same data order and augmentation draws for every member). `vs` is the faster member of highest mean "
        "top-1 over the seeds both ran; Δ is this member minus that one, per seed, with its paired 95 % t interval. "
        "A member is *distinguishable* when that interval lies above 0: its extra latency buys top-1 the seeds "
        "cannot explain. Search top-1 is the trial's own single run.",
        "",
        table_block(shown),
        f"{kept} of {len(front)} front members distinguishable (the fastest by latency alone). "
        "Files: `front_seeds.csv` (the table's figures, unrounded), `front_seed_runs.csv` (every run it is computed from: "
        "trial, seed, top-1 (%), training seconds, threads), `front_seeds.png`.",
        "",
    ]


def supernet_front_block(table: pd.DataFrame, settings: Mapping[str, Any]) -> list[str]:
    """Markdown lines of a ``--supernet`` study's front trained on its own (a table of
    :func:`explore.search.inherited.supernet_front_table`): inherited against stand-alone top-1.

    Args:
        table: one row per re-trained front member.
        settings: the study's stored settings (supernet folder, recalibration images, proxy budget).

    Returns:
        The lines (a heading, a paragraph, the table, Kendall τ between the two columns).
    """
    tau = table.attrs.get("kendall_tau", float("nan"))
    shown = table.copy()
    for column in ("inherited top-1 (%)", "stand-alone top-1 (%)", "Δ (points)"):
        shown[column] = [fmt(v, signed=column.startswith("Δ")) for v in shown[column]]
    shown["latency (ms/img)"] = shown["latency (ms/img)"].round(4)
    shown["train (s)"] = shown["train (s)"].round(1)
    return [
        "## Front: inherited and stand-alone top-1",
        "",
        f"Every trial was scored by **inherited top-1** (the weights of the supernet `{settings.get('supernet')}`, BN "
        f"statistics recalibrated on {settings.get('recalibration_images')} training images; nothing trained). "
        f"Each member of the final front was then trained on its own at the study's proxy budget "
        f"({settings.get('epochs')} epoch(s), batch {settings.get('batch_size')}, the study's data subsets): "
        "`stand-alone top-1`. The Pareto table above ranks by inherited top-1.",
        "",
        table_block(shown),
        f"Kendall τ between the two top-1 columns over the {len(table)} members: {fmt(tau)} "
        "(NaN below 3 members). File: `supernet_front.csv`.",
        "",
    ]


def plot_front_seeds(front: pd.DataFrame, path: Path, title: str, latency_label: str = "latency (ms)") -> Path:
    """Mean top-1 over the common seeds (95 % interval as error bars) against latency, one point per
    front member, labelled with its trial number; distinguishable members filled, the others hollow."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120, layout="constrained")
    for keep, style in ((True, {"mfc": "C3"}), (False, {"mfc": "white"})):
        part = front[front["distinguishable"].astype(bool) == keep]
        if part.empty:
            continue
        err = [(part["mean top-1 (%)"] - part["CI low"]).fillna(0), (part["CI high"] - part["mean top-1 (%)"]).fillna(0)]
        ax.errorbar(part["latency (ms/img)"], part["mean top-1 (%)"], yerr=err, fmt="o", c="C3", capsize=3,
                    label="distinguishable" if keep else "not distinguishable", **style)
    ax.scatter(front["latency (ms/img)"], front["search top-1 (%)"], marker="x", c="0.5", s=24, label="search run")
    for trial, x, y in zip(front["trial"], front["latency (ms/img)"], front["mean top-1 (%)"]):
        ax.annotate(f"#{int(trial)}", (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(latency_label)
    ax.set_ylabel("proxy top-1 (%), mean and 95 % CI over seeds")
    return save_figure(fig, ax, path, title)


def schedule_table(frame: pd.DataFrame, rungs: list[float]) -> pd.DataFrame:
    """One row per architecture of a study run with a schedule: its first job, its latency, its top-1 at
    every rung it reached (``top-1 @ E ep``), the rung it stopped at and its jobs; best at the top rung
    first. Empty for a study without rungs."""
    if frame.empty or "rung" not in frame or "arch_trial" not in frame:
        return pd.DataFrame()
    done = frame[(frame["state"] == "COMPLETE") & frame["rung"].notna()]
    rows = []
    for arch, jobs in done.groupby(done["arch_trial"].astype(int)):
        jobs = jobs.sort_values("rung")
        row: dict[str, Any] = {"architecture trial": arch, "latency (ms/img)": round(float(jobs["latency_ms"].min()), 4)}
        for k, epochs in enumerate(rungs):
            at = jobs[jobs["rung"].astype(int) == k]
            row[f"top-1 @ {epochs:g} ep"] = round(float(at["top1"].iloc[0]), 2) if len(at) else None
        reached = int(jobs["rung"].max())
        row["stopped at"] = "top rung" if reached == len(rungs) - 1 else f"{rungs[reached]:g} ep"
        row["jobs"] = ", ".join(f"#{n}" for n in jobs["number"].astype(int))
        rows.append(row)
    table = pd.DataFrame(rows)
    last = f"top-1 @ {rungs[-1]:g} ep"
    return table.sort_values([last, "architecture trial"], ascending=[False, True], na_position="last").reset_index(drop=True)


def schedule_block(frame: pd.DataFrame, settings: Mapping[str, Any], meta: Mapping[str, Any]) -> list[str]:
    """The markdown section of a study run with ``--schedule sha|hyperband``: the rungs, the training
    budget spent against training every architecture fully, and :func:`schedule_table`."""
    rungs = [float(r) for r in settings["rung_epochs"]]
    table = schedule_table(frame, rungs)
    if table.empty:
        return []
    n_train = (meta.get("dataset_info") or {}).get("train_images")
    images = float(frame.loc[frame["state"] == "COMPLETE", "train_images"].fillna(0).sum()) if "train_images" in frame else 0.0
    counts = table["stopped at"].value_counts()
    lines = [f"## Schedule `{settings['schedule']}`: rungs {', '.join(f'{r:g}' for r in rungs)} epochs, "
             f"eta {settings.get('eta')}", "",
             f"{len(table)} architectures; stopped at: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ". "
             "The Pareto front above is that of the jobs at the top rung. A promoted job continued its parent's "
             "stored training state (same lr schedule), so top-rung figures equal a full training of the same seed."]
    if n_train:
        spent = images / float(n_train)
        full = len(table) * rungs[-1]
        lines[-1] += (f" Training spent: {spent:.2f} epochs of the {n_train}-image subset, against {full:g} to train "
                      f"all {len(table)} fully ({spent / full * 100:.0f} %).")
    return lines + ["", table_block(table), ""]


def render_markdown(frame: pd.DataFrame, meta: Mapping[str, Any], command: str,
                    front: pd.DataFrame | None = None, supernet_front: pd.DataFrame | None = None) -> str:
    """Markdown summary: the study's settings, trial counts, the Pareto table, the front re-trained
    with common seeds (``front``, where given and not empty), a ``--supernet`` study's front
    trained on its own (``supernet_front``, :func:`supernet_front_block`) and pruning reasons."""
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
        f"- sampler: `{settings.get('sampler')}`, seed {settings.get('seed')}"
        + (f"; latency budget {settings.get('max_latency_ms'):g} ms/img (trials over it pruned before training)"
           if settings.get("max_latency_ms") else ""),
        "- trials: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"),
        "",
        f"## Pareto front ({metric_label(settings).rsplit(' ', 1)[0]} up, latency down)",
        "",
        table_block(pareto_table(frame, metric_label(settings))),
        "",
    ]
    if not frame.empty and "latency_source" in frame and frame["latency_source"].eq("table").any():
        done = frame[frame["latency_source"].eq("table")]
        lines += [f"Latency of {len(done)} trials predicted by the latency table "
                  f"`{_distinct(done, 'latency_table_file')}` (regressor `{_distinct(done, 'latency_table_regressor')}`) "
                  f"for {_distinct(done, 'latency_device_name')}, not measured on the machine that trained.", ""]
    if not frame.empty and "latency_remeasured_ms" in frame and frame["latency_remeasured_ms"].notna().any():
        again = int(frame["latency_remeasured_ms"].notna().sum())
        complete = int((frame["state"] == "COMPLETE").sum())
        lines += [f"The latencies of {again} of the {complete} complete trials were measured again at the end of the "
                  "study (`again`); `latency` is the lower of the two figures (contention on a shared machine only "
                  "slows a run down), and the front is computed from it. Optuna's own tools (`optuna best-trials`, "
                  "optuna-dashboard) show the trial values, which hold the first figures, so their front can differ "
                  "from this one; `trials.csv` has both (`latency_first_ms`, `latency_remeasured_ms`).", ""]
    if settings.get("schedule", "full") != "full":
        lines += schedule_block(frame, settings, meta)
    if front is not None and not front.empty:
        lines += front_seeds_block(front)
    if supernet_front is not None and not supernet_front.empty:
        lines += supernet_front_block(supernet_front, settings)
    if not frame.empty and "latency_figure" in frame and frame["latency_figure"].notna().any():
        lines += [_figure_sentence(frame), ""]
    if not frame.empty and "latency_contended" in frame and frame["latency_contended"].eq(True).any():
        contended = frame.loc[frame["latency_contended"].eq(True), "number"].astype(int).tolist()
        lines += [f"Latency measured on a busy machine (flagged `contended`) for trials {contended}.", ""]
    if not frame.empty and "pruned_reason" in frame:
        reasons = frame.loc[frame["state"] == "PRUNED", "pruned_reason"].dropna()
        if not reasons.empty:
            lines += ["## Pruned trials", "", table_block(reasons.value_counts().rename_axis("reason").reset_index())]
    if not frame.empty and "fail_reason" in frame:
        fails = frame.loc[frame["state"] == "FAIL", ["number", "fail_reason"]].dropna()
        if not fails.empty:
            lines += ["## Failed trials", "", table_block(fails)]
    lines += ["Files: `trials.csv` (every trial, every attribute), `pareto.png` (the front), `study.json` (the "
              "settings above and this command: `explore rerender` writes the report again from these files).", ""]
    return "\n".join(lines)


def write_report(frame: pd.DataFrame, out_dir: Path, meta: Mapping[str, Any], command: str,
                 front: pd.DataFrame | None = None, supernet_front: pd.DataFrame | None = None, *,
                 front_seed_runs: pd.DataFrame | None = None) -> ReportPaths:
    """Write ``trials.csv``, ``pareto.png``, ``summary.md`` and ``study.json`` into ``out_dir``
    (created if needed), with a non-empty ``front``, ``front_seeds.csv``, ``front_seed_runs.csv``
    (``front_seed_runs``: the runs the front table is computed from) and ``front_seeds.png``, and
    with a non-empty ``supernet_front``, ``supernet_front.csv``.

    ``study.json`` is ``{"command": command, "meta": portable_meta(meta)}`` (:func:`portable_meta`;
    the summary and plots are rendered from that same meta), which with the CSVs is all
    ``explore rerender`` needs to write the report again: the front table is computed again from
    ``trials.csv`` and ``front_seed_runs.csv``.

    Args:
        frame: the trials table.
        out_dir: target folder.
        meta: study name, space and settings (see :func:`explore.search.study_meta`).
        command: the command line that made the report (written into the summary and ``study.json``).
        front: the front re-trained with common seeds
            (:func:`explore.search.front_seeds.front_table`), or None.
        supernet_front: a ``--supernet`` study's front trained on its own
            (:func:`explore.search.inherited.supernet_front_table`), or None.
        front_seed_runs: the runs ``front`` was computed from, one row per (trial, seed)
            (:func:`explore.search.front_seeds.front_runs_table`); required with a non-empty ``front``.

    Returns:
        The paths written.

    Raises:
        ValueError: a non-empty ``front`` without ``front_seed_runs`` (its figures would not be
            recomputable from the folder); nothing is written.
    """
    with_front = front is not None and not front.empty
    if with_front and (front_seed_runs is None or front_seed_runs.empty):
        raise ValueError("write_report: a front re-trained with common seeds needs front_seed_runs (the runs it is "
                         "computed from), so that front_seeds.csv can be computed again from the folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = portable_meta(meta)
    paths = ReportPaths(out_dir / "trials.csv", out_dir / "pareto.png", out_dir / "summary.md",
                        out_dir / "front_seeds.csv" if with_front else None,
                        out_dir / "front_seeds.png" if with_front else None, study_json=out_dir / "study.json",
                        front_runs_csv=out_dir / "front_seed_runs.csv" if with_front else None)
    frame.to_csv(paths.csv, index=False)
    unit, timed = latency_description(frame, meta.get("settings", {}) or {})
    metric = metric_label(meta.get("settings"))
    name = metric.rsplit(" ", 1)[0]
    plot_pareto(frame, paths.png, f"{meta.get('study_name')}: {name if 'inherited' in name else 'proxy ' + name} vs latency",
                f"latency ({unit}; {timed})", metric)
    if with_front:
        front.to_csv(paths.front_csv, index=False)
        front_seed_runs.to_csv(paths.front_runs_csv, index=False)
        plot_front_seeds(front, paths.front_png, f"{meta.get('study_name')}: front re-trained with common seeds",
                         f"latency ({unit}; {timed})")
    if supernet_front is not None and not supernet_front.empty:
        paths = dataclasses.replace(paths, supernet_front_csv=out_dir / "supernet_front.csv")
        supernet_front.to_csv(paths.supernet_front_csv, index=False)
    paths.markdown.write_text(render_markdown(frame, meta, command, front, supernet_front), encoding="utf-8")
    paths.study_json.write_text(json.dumps({"command": command, "meta": meta}, indent=2, ensure_ascii=False) + "\n",
                                encoding="utf-8")
    return paths
