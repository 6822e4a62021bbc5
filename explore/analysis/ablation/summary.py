"""The analysis of an ablation run: per-variant means over seeds, Δs against the baseline (ours and
the paper's), verdicts, Kendall τ between the two sets of Δs, and the recipe's findings checked.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd

from explore.analysis.ablation.recipe import Recipe
from explore.analysis.ablation.runner import AblationRun
from explore.arch import PAPER_SPEED_COLUMNS
from explore.resolution import resolution_label, resolution_pixels
from explore.stats import (ACC_MIN_EFFECT, decision, difference_se, kendall_tau, look_level, paired_delta,
                           planned_looks)

__all__ = ["SPEED_MIN_EFFECT_PCT", "ACC_MIN_EFFECT", "summarise", "paired_columns", "accuracy_verdict", "check_findings", "report_meta"]

SPEED_MIN_EFFECT_PCT = 5.0
"""Smallest img/s change (%) a speed verdict calls: the same M4 measured 285-306 img/s with onnx-cpu
in three invocations on an otherwise idle 2-core CPU (within-run IQRs are smaller than that)."""


def paired_columns(ok: pd.DataFrame, baseline: str, level: float = 0.95, looks: int = 1) -> pd.DataFrame:
    """Per variant (index): the paired Δ top-1 vs the baseline and its interval, the unpaired interval,
    the variance reduction and the decision (:mod:`explore.stats`).

    Args:
        ok: training rows with ``variant``, ``seed`` and ``top1`` (successful runs only).
        baseline: the baseline variant's name.
        level: the confidence level of the whole procedure.
        looks: the run's planned looks (:func:`explore.stats.planned_looks`); every interval is at
            ``look_level(level, looks)``, the level the sequential rule decided with.

    Returns:
        Columns ``pairs``, ``d_top1_paired``, ``d_top1_low``, ``d_top1_high``, ``d_top1_unpaired_low``,
        ``d_top1_unpaired_high``, ``variance_reduction``, ``decision``; the baseline and variants
        with no seed in common with it are left out.
    """
    per_seed = {name: dict(zip(rows["seed"].astype(int), rows["top1"].astype(float)))
                for name, rows in ok.groupby("variant")}
    base = per_seed.get(baseline, {})
    out = {}
    for name, runs in per_seed.items():
        if name == baseline or not set(runs) & set(base):
            continue
        ci = paired_delta(base, runs, look_level(level, looks))
        out[name] = {"pairs": ci.pairs, "d_top1_paired": ci.mean, "d_top1_low": ci.low, "d_top1_high": ci.high,
                     "d_top1_unpaired_low": ci.unpaired_low, "d_top1_unpaired_high": ci.unpaired_high,
                     "variance_reduction": ci.variance_reduction, "decision": decision(ci, ACC_MIN_EFFECT)}
    return pd.DataFrame.from_dict(out, orient="index")


def accuracy_verdict(state: str | float, ours: float, paper: float | None, margin: float = ACC_MIN_EFFECT) -> str:
    """The accuracy verdict of a row, from its paired decision (the one rule; :func:`explore.stats.decision`).

    *reproduced*: the paired interval excludes 0 with the paper's sign, or lies within ±``margin``
    where the paper's Δ does too; *not reproduced*: it excludes 0 with the opposite sign, or lies
    within ±``margin`` where the paper reports a larger Δ; *unclear*: the interval is open (more seeds
    could decide it), or there is no paper figure.

    Args:
        state: the row's decision (``effect``, ``negligible``, ``open``; NaN without a paired interval).
        ours: our paired Δ top-1 (points).
        paper: the paper's Δ (points), or None / NaN.
        margin: the equivalence margin (points).
    """
    if paper is None or not math.isfinite(paper) or not math.isfinite(ours):
        return "unclear"
    if state == "effect":
        return "reproduced" if paper != 0 and (ours > 0) == (paper > 0) else "not reproduced"
    if state == "negligible":
        return "reproduced" if abs(paper) < margin else "not reproduced"
    return "unclear"


def _verdict(ours: float, ours_noise: float, paper: float | None, min_effect: float) -> str:
    """Speed: reproduced / not reproduced / unclear, from the signs of our Δ and the paper's Δ."""
    if paper is None or not math.isfinite(paper) or paper == 0 or not math.isfinite(ours):
        return "unclear"
    if abs(ours) < max(min_effect, 2 * ours_noise):
        return "unclear"
    return "reproduced" if (ours > 0) == (paper > 0) else "not reproduced"


def summarise(run: AblationRun) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-variant table and rank agreements.

    Columns: ``variant``, ``label``, ``params_m``, ``macs_m``, ``top1_mean``, ``top1_std``, ``seeds``,
    ``d_top1`` (ours − baseline, points), the paired columns of :func:`paired_columns`, ``paper_acc``, ``paper_d_acc``, ``verdict_acc``; for each
    measured protocol at the first resolution ``<protocol>_img_s`` and ``d_<protocol>_pct`` (%
    change of img/s vs the baseline); for each paper speed column ``paper_<col>``,
    ``paper_d_<col>_pct`` and ``verdict_<col>`` (when we measured its protocol).

    The accuracy verdict follows from the paired decision alone (:func:`accuracy_verdict`; with
    sequential seeds its intervals are at the alpha-spending level of :func:`explore.stats.look_level`).
    A speed verdict is "reproduced" when our Δ img/s has the paper's sign and is larger than the
    noise (:data:`SPEED_MIN_EFFECT_PCT` or 2 x the relative IQR), "not reproduced" for the opposite
    sign, otherwise "unclear".

    Returns:
        The table, and Kendall τ between our Δs and the paper's over the non-baseline rows
        (keys ``acc`` and each speed column; NaN with fewer than 3 rows).
    """
    table = run.variants[["variant", "label", "baseline", "x", "params", "macs", "attention_share"]].copy()
    table["params_m"] = table.pop("params") / 1e6
    table["macs_m"] = table.pop("macs") / 1e6
    taus: dict[str, float] = {}
    _accuracy_columns(table, run, taus)
    _speed_columns(table, run, taus)
    table = table.drop(columns=[c for c in table.columns if c.startswith("_")])
    return table, taus


def _accuracy_columns(table: pd.DataFrame, run: AblationRun, taus: dict[str, float]) -> None:
    """Add the accuracy columns of :func:`summarise` to ``table`` (in place) and the accuracy τ to ``taus``."""
    recipe = run.recipe
    base = recipe.baseline.name
    papers = {v.name: v.paper for v in recipe.variants}
    acc_key = recipe.paper_accuracy
    train = run.training
    if not train.empty:
        ok = train[train["status"] == "ok"]
        grouped = ok.groupby("variant")["top1"]
        table["top1_mean"] = table["variant"].map(grouped.mean())
        table["top1_std"] = table["variant"].map(grouped.std(ddof=1))
        table["seeds"] = table["variant"].map(grouped.count()).fillna(0).astype(int)
        is_base = table["variant"] == base
        table["d_top1"] = table["top1_mean"] - table.loc[is_base, "top1_mean"].item()
        base_sd, base_n = table.loc[is_base, "top1_std"].item(), table.loc[is_base, "seeds"].item()
        table["d_top1_se"] = [difference_se(sd, n, base_sd, base_n) for sd, n in zip(table["top1_std"], table["seeds"])]
        paired = paired_columns(ok, base, looks=planned_looks(recipe.budget.max_seeds))
        for column in paired.columns:
            table[column] = table["variant"].map(paired[column])
    paper_b = papers[base].get(acc_key)
    table["paper_acc"] = table["variant"].map(lambda n: papers[n].get(acc_key, float("nan")))
    table["paper_d_acc"] = table["paper_acc"] - (paper_b if paper_b is not None else float("nan"))
    if "d_top1" in table:
        decided = table["decision"] if "decision" in table else pd.Series(float("nan"), index=table.index)
        ours = table["d_top1_paired"] if "d_top1_paired" in table else table["d_top1"]
        table["verdict_acc"] = [
            "baseline" if variant == base else accuracy_verdict(state, d, paper)
            for variant, state, d, paper in zip(table["variant"], decided, ours, table["paper_d_acc"])]
        rest = table[table["variant"] != base]
        tau = kendall_tau(rest["d_top1"].tolist(), rest["paper_d_acc"].tolist())
        if math.isfinite(tau):
            taus["acc"] = tau


def _speed_columns(table: pd.DataFrame, run: AblationRun, taus: dict[str, float]) -> None:
    """Add the speed columns of :func:`summarise` (at the first resolution) to ``table`` (in place)
    and each paper speed column's τ to ``taus``."""
    recipe = run.recipe
    base = recipe.baseline.name
    papers = {v.name: v.paper for v in recipe.variants}
    meas = run.measurements
    img0 = recipe.measure.img_sizes[0]
    measured_protocols = []
    if not meas.empty:
        first = meas[meas["img_size"].map(resolution_label) == resolution_label(img0)]
        for protocol, rows in first.groupby("protocol"):
            measured_protocols.append(protocol)
            speed = rows.set_index("variant")["throughput_img_s"]
            rel_iqr = (rows.set_index("variant")["iqr_ms"] / rows.set_index("variant")["median_ms"])
            table[f"{protocol}_img_s"] = table["variant"].map(speed)
            table[f"d_{protocol}_pct"] = 100 * (table[f"{protocol}_img_s"] / speed.get(base, float("nan")) - 1)
            table[f"_{protocol}_noise"] = 100 * (table["variant"].map(rel_iqr) + rel_iqr.get(base, 0.0))
    for col, protocol in PAPER_SPEED_COLUMNS.items():
        if not any(col in p for p in papers.values()):
            continue
        paper_base = papers[base].get(col)
        table[f"paper_{col}"] = table["variant"].map(lambda n: papers[n].get(col, float("nan")))
        table[f"paper_d_{col}_pct"] = 100 * (table[f"paper_{col}"] / (paper_base or float("nan")) - 1)
        if protocol in measured_protocols:
            table[f"verdict_{col}"] = [
                "baseline" if row["variant"] == base else
                _verdict(row[f"d_{protocol}_pct"], row[f"_{protocol}_noise"], row[f"paper_d_{col}_pct"],
                         SPEED_MIN_EFFECT_PCT)
                for _, row in table.iterrows()]
            rest = table[table["variant"] != base]
            tau = kendall_tau(rest[f"d_{protocol}_pct"].tolist(), rest[f"paper_d_{col}_pct"].tolist())
            if math.isfinite(tau):
                taus[col] = tau


def check_findings(run: AblationRun, table: pd.DataFrame) -> list[dict[str, str]]:
    """Check each ``[[finding]]`` of the recipe against our numbers.

    ``best_x_within``: the variant with the best mean top-1 has ``x`` (or, where no variant sets
    x, the share of blocks with attention) in the range; "unclear" when it lies outside but the
    paired interval of its gap to the best variant inside does not exclude 0 (the rows' rule,
    at the run's look level). ``faster``: ``variant``'s img/s beats
    ``than``'s at every measured resolution, and the speed-up at the largest resolution is at
    least the one at the smallest. Returns rows of ``text``, ``observed``, ``verdict``.
    """
    out = []
    for finding in run.recipe.findings:
        if finding.kind == "best_x_within":
            if "top1_mean" not in table or table["top1_mean"].isna().all():
                out.append({"text": finding.text, "observed": "no top-1 measured", "verdict": "unclear"})
                continue
            xs = table["x"] if table["x"].notna().any() else table["attention_share"]
            best = table.loc[table["top1_mean"].idxmax()]
            x_best = float(xs.loc[best.name])
            lo, hi = finding.range  # type: ignore[misc]
            observed = f"best mean top-1 {best['top1_mean']:.2f} % at x = {x_best:g} ({best['label']})"
            if lo <= x_best <= hi:
                verdict = "reproduced"
            else:
                inside = table[(xs >= lo) & (xs <= hi) & table["top1_mean"].notna()]
                verdict = "not reproduced"
                if not inside.empty:
                    near = inside.loc[inside["top1_mean"].idxmax()]
                    state, low, high = _paired_gap(run, str(near["variant"]), str(best["variant"]))
                    observed += (f"; best in range {near['top1_mean']:.2f} % ({near['label']}), paired gap "
                                 f"[{low:+.2f}, {high:+.2f}]")
                    if state != "effect":  # the same rule as the rows: only a paired interval above 0 decides
                        verdict = "unclear"
            out.append({"text": finding.text, "observed": observed, "verdict": verdict})
            continue
        meas = run.measurements
        if meas.empty or finding.protocol not in set(meas["protocol"]):
            out.append({"text": finding.text, "observed": f"{finding.protocol} not measured", "verdict": "unclear"})
            continue
        rows = meas[meas["protocol"] == finding.protocol]
        rows = rows.assign(img_size=rows["img_size"].map(resolution_label))
        fast = rows[rows["variant"] == finding.variant].set_index("img_size")["throughput_img_s"]
        slow = rows[rows["variant"] == finding.than].set_index("img_size")["throughput_img_s"]
        ratio = (fast / slow).dropna()
        ratio = ratio.iloc[sorted(range(len(ratio)), key=lambda i: resolution_pixels(ratio.index[i]))]
        if ratio.empty:
            out.append({"text": finding.text, "observed": "no common resolutions", "verdict": "unclear"})
            continue
        observed = ", ".join(f"{r:.2f}x @{i}" for i, r in ratio.items())
        ok = bool((ratio > 1).all() and ratio.iloc[-1] >= ratio.iloc[0])
        out.append({"text": finding.text, "observed": f"speed-up of {finding.variant} over {finding.than}: {observed}",
                    "verdict": "reproduced" if ok else "not reproduced"})
    return out


def _paired_gap(run: AblationRun, lower: str, upper: str) -> tuple[str, float, float]:
    """The decision and paired interval of top-1(upper) - top-1(lower) over their common seeds."""
    ok = run.training[run.training["status"] == "ok"] if not run.training.empty else run.training
    per_seed = {name: dict(zip(rows["seed"].astype(int), rows["top1"].astype(float)))
                for name, rows in ok.groupby("variant")}
    a, b = per_seed.get(lower, {}), per_seed.get(upper, {})
    if len(set(a) & set(b)) < 2:
        return "open", float("nan"), float("nan")
    ci = paired_delta(a, b, look_level(0.95, planned_looks(run.recipe.budget.max_seeds)))
    return decision(ci, ACC_MIN_EFFECT), ci.low, ci.high


def report_meta(run: AblationRun, recipe_as_loaded: Recipe) -> dict[str, Any]:
    """What the report says about a run besides its rows: the run's ``run.json`` fields, the summed
    training time, the recipe's paper source, note, accuracy column and description, and
    ``reduced`` (how the budget or the variants differ from the recipe as loaded; empty when not).
    """
    chosen = run.recipe
    changed = [f"{f.name} {getattr(chosen.budget, f.name)} (recipe: {getattr(recipe_as_loaded.budget, f.name)})"
               for f in dataclasses.fields(chosen.budget)
               if getattr(chosen.budget, f.name) != getattr(recipe_as_loaded.budget, f.name)]
    if len(chosen.variants) != len(recipe_as_loaded.variants):
        changed.append(f"{len(chosen.variants)} of {len(recipe_as_loaded.variants)} variants")
    train_seconds = float(run.training["train_seconds"].sum()) if not run.training.empty else 0.0
    return {**run.meta, "training_seconds": train_seconds, "paper_source": chosen.paper_source,
            "paper_note": chosen.paper_note, "paper_accuracy": chosen.paper_accuracy,
            "description": chosen.description, "reduced": "; ".join(changed)}
