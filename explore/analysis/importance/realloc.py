"""The Fig. 5 view and the reallocated architecture: retained widths per block, a config with the
widths reallocated, and the check of the paper's trend under several targets and rankings.

Follows: arXiv:2305.07027 §3.3 (parameter reallocation) and Fig. 5 (ratio of the retained channels
to the input embedding per block, for QK, V and FFN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from explore.analysis.importance.plan import RANKINGS, PruningPlan, plan_pruning
from explore.analysis.importance.units import AttentionUnit, Unit
from explore.arch import ArchConfig
from explore.stats import spearman_rho

__all__ = ["retained_frame", "suggest_config", "paper_trend", "sensitivity_frame"]


def retained_frame(units: Sequence[Unit], plan: PruningPlan, scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """Retained Q/K, V and FFN (or MBConv) widths per block, normalised by the block's input width.

    One row per block (``location = "block"``; its attention unit and its FFNs / MBConv summed)
    and one per downsample FFN / MBConv (``location = "downsample"``). Widths are totals over
    heads (QK: channels of Q, the same as of K). Ratios are to the block's input width C, as in
    arXiv:2305.07027 Fig. 5; ``ffn_ratio_*`` is per FFN (a sandwich block's two FFNs are averaged),
    so it compares with the config's ``ffn_ratio`` (``expand_ratio`` for MBConv).

    Returns:
        Columns: ``label`` (s<i>.b<j> or s<i>.down.<part>), ``index`` (1-based block number, 0 for
        downsample rows), ``stage``, ``block``, ``location``, ``config_stage``, ``width`` (C),
        ``mixer``, ``heads_before/after``, ``qk_before/after``, ``v_before/after``,
        ``ffn_kind``, ``n_ffn``, ``ffn_before/after`` (hidden channels summed over the FFNs),
        ``qk_ratio_before/after``, ``v_ratio_before/after``, ``ffn_ratio_before/after`` and the
        retained fractions ``qk_kept``, ``v_kept``, ``ffn_kept``, ``heads_kept`` (NaN where a
        block has no such part). With ``scores`` (from :func:`taylor_scores`) also
        ``qk_score_per_param``, ``v_score_per_param``, ``ffn_score_per_param``: the median over
        the row's groups of Taylor score / params (how much each parameter of the part matters,
        whatever the target).
    """
    rows: dict[tuple, dict[str, Any]] = {}
    order: list[tuple] = []

    def row_for(key: tuple, **init: Any) -> dict[str, Any]:
        if key not in rows:
            rows[key] = {"heads_before": 0, "heads_after": 0, "qk_before": 0, "qk_after": 0, "v_before": 0,
                         "v_after": 0, "ffn_before": 0, "ffn_after": 0, "n_ffn": 0, "ffn_kind": "", "mixer": "",
                         "_units": [], **init}
            order.append(key)
        return rows[key]

    for u in units:
        keep = plan.keep[u.path]
        if isinstance(u, AttentionUnit):
            r = row_for((u.stage, u.block, "block"), stage=u.stage, block=u.block, location="block",
                        config_stage=u.stage, width=u.width, label=f"s{u.stage}.b{u.block}")
            r["mixer"] = u.kind
            r["_units"].append(u.path)
            r["heads_before"] += u.heads
            r["heads_after"] += len(keep.heads)
            r["qk_before"] += u.heads * u.qk_dim
            r["qk_after"] += sum(len(a) for a, _ in keep.heads.values())
            r["v_before"] += u.heads * u.v_dim
            r["v_after"] += sum(len(b) for _, b in keep.heads.values())
        else:
            if u.block is None:
                part = u.path.split(".downsample", 1)[1].strip(".").split(".")[0] or u.kind
                key = (u.stage, u.path, "downsample")
                r = row_for(key, stage=u.stage, block=-1, location="downsample", config_stage=u.config_stage,
                            width=u.in_chs, label=f"s{u.stage}.down.{part}")
            else:
                r = row_for((u.stage, u.block, "block"), stage=u.stage, block=u.block, location="block",
                            config_stage=u.config_stage, width=u.in_chs, label=f"s{u.stage}.b{u.block}")
            r["ffn_kind"] = u.kind
            r["_units"].append(u.path)
            r["n_ffn"] += 1
            r["ffn_before"] += u.hidden
            r["ffn_after"] += len(keep.hidden or ())
    frame = pd.DataFrame([rows[k] for k in order])
    if frame.empty:
        return frame
    frame = frame.sort_values(["stage", "location", "block"], key=lambda s: s.map({"downsample": 0, "block": 1})
                              if s.name == "location" else s, kind="mergesort").reset_index(drop=True)
    is_block = frame["location"] == "block"
    frame["index"] = 0
    frame.loc[is_block, "index"] = range(1, int(is_block.sum()) + 1)
    width = frame["width"].astype(float)
    nan = float("nan")
    for part in ("qk", "v"):
        has = frame[f"{part}_before"] > 0
        for when in ("before", "after"):
            frame[f"{part}_ratio_{when}"] = (frame[f"{part}_{when}"] / width).where(has, nan)
        frame[f"{part}_kept"] = (frame[f"{part}_after"] / frame[f"{part}_before"]).where(has, nan)
    has_ffn = frame["n_ffn"] > 0
    for when in ("before", "after"):
        frame[f"ffn_ratio_{when}"] = (frame[f"ffn_{when}"] / (width * frame["n_ffn"].clip(lower=1))).where(has_ffn, nan)
    frame["ffn_kept"] = (frame["ffn_after"] / frame["ffn_before"]).where(has_ffn, nan)
    frame["heads_kept"] = (frame["heads_after"] / frame["heads_before"]).where(frame["heads_before"] > 0, nan)
    if scores is not None:
        density = scores[scores["group"] != "head"].assign(
            _density=scores["score"] / scores["params"].clip(lower=1))
        medians = density.groupby(["unit", "group"])["_density"].apply(list)
        for part, group in (("qk", "qk"), ("v", "v"), ("ffn", "hidden")):
            frame[f"{part}_score_per_param"] = [
                float(pd.Series([d for u in paths for d in medians.get((u, group), [])]).median())
                if any((u, group) in medians.index for u in paths) else nan
                for paths in frame["_units"]]
    frame = frame.drop(columns="_units")
    first = ["label", "index", "stage", "block", "location", "config_stage", "width", "mixer"]
    return frame[first + [c for c in frame.columns if c not in first]]


def _round_to(value: float, step: float, low: float) -> float:
    return max(low, round(value / step) * step)


def suggest_config(config: ArchConfig, retained: pd.DataFrame, name: str | None = None) -> ArchConfig:
    """A reallocated architecture from the retained widths: widths, depths, mixers unchanged.

    Per stage, over its blocks' means: ``heads`` = the retained heads rounded (for CGA the nearest
    divisor of the width at or above it, at most the original heads); ``qk_dim`` = the retained
    Q/K channels per kept head, rounded to a multiple of 4 (>= 4); ``v_ratio`` = the retained V
    channels over the width, to a multiple of 1/8 (>= 1/8, at least one V channel per head);
    ``ffn_ratio`` (patch-16 layouts) or ``expand_ratio`` (mbconv) = the retained hidden channels
    per FFN / MBConv over its input width, over every FFN / MBConv the stage's ratio sizes
    (downsample ones included), to a multiple of 1/4 (>= 1/4). Stages without scored attention
    keep their attention fields.

    Args:
        config: the analysed architecture.
        retained: from :func:`retained_frame`.
        name: the new config's ``name``.

    Returns:
        A validated :class:`ArchConfig`.

    Raises:
        ConfigError: the result is infeasible (should not happen: every rounding keeps it valid).
    """
    stages = []
    for i, stage in enumerate(config.stages):
        changes: dict[str, Any] = {}
        attn = retained[(retained["location"] == "block") & (retained["stage"] == i) & (retained["qk_before"] > 0)]
        if not attn.empty:
            heads = max(1, round(float(attn["heads_after"].mean())))
            if stage.token_mixer == "cga":
                heads = min(d for d in range(heads, stage.heads + 1) if stage.width % d == 0)
            heads = min(heads, stage.heads)
            qk_dim = int(_round_to(float(attn["qk_after"].mean()) / heads, 4, 4))
            v_ratio = _round_to(float(attn["v_after"].mean()) / stage.width, 0.125, 0.125)
            while int(v_ratio * stage.width / heads + 1e-9) < 1:
                v_ratio += 0.125
            changes.update(heads=heads, qk_dim=qk_dim, v_ratio=v_ratio)
        hidden = retained[(retained["config_stage"] == i) & (retained["n_ffn"] > 0)]
        if not hidden.empty:
            ratio = float(hidden["ffn_after"].sum() / (hidden["width"] * hidden["n_ffn"]).sum())
            key = "expand_ratio" if config.layout == "mbconv" else "ffn_ratio"
            changes[key] = _round_to(ratio, 0.25, 0.25)
        stages.append(replace(stage, **changes) if changes else stage)
    return replace(config, stages=tuple(stages), name=name)


def paper_trend(retained: pd.DataFrame) -> dict[str, Any]:
    """Check the trend of arXiv:2305.07027 §3.3 / Fig. 5 on a retained frame.

    The paper's reading: V keeps a larger share of its channels than Q/K, and the FFN hidden layer
    shrinks, more in later blocks. Checked on the blocks (downsample rows excluded):

    * ``v_over_qk``: the mean retained fraction of V > that of QK (over blocks with attention).
      Where both are equal (typically 1: the target was met without touching attention), it is
      decided by the Taylor score per parameter instead, when the frame has those columns: V's
      median is higher than QK's in more than half of the attention blocks (``v_over_qk_basis``
      says which: ``retained`` or ``score per parameter``);
    * ``ffn_shrinks``: mean retained FFN fraction < 1;
    * ``ffn_later_more``: Spearman rho of the FFN retained fraction against the block index < 0,
      and the later half of the blocks keeps less than the earlier half.

    Returns:
        The means, per-block counts, rho, the three booleans (None where not measurable) and
        ``verdict``: ``holds`` (all three), ``partly`` (some), ``does not hold`` (none) or ``n/a``.
    """
    blocks = retained[retained["location"] == "block"].sort_values("index")
    attn = blocks[blocks["qk_before"] > 0]
    ffn = blocks[blocks["n_ffn"] > 0]
    out: dict[str, Any] = {"attention_blocks": len(attn), "ffn_blocks": len(ffn), "v_over_qk": None,
                           "v_over_qk_basis": None}
    if len(attn):
        out["qk_kept_mean"] = float(attn["qk_kept"].mean())
        out["v_kept_mean"] = float(attn["v_kept"].mean())
        out["qk_ratio_after_mean"] = float(attn["qk_ratio_after"].mean())
        out["v_ratio_after_mean"] = float(attn["v_ratio_after"].mean())
        out["blocks_v_over_qk"] = int((attn["v_kept"] > attn["qk_kept"]).sum())
        if "v_score_per_param" in attn:
            ratio = attn["v_score_per_param"] / attn["qk_score_per_param"]  # inf where Q/K do not matter
            out["v_qk_score_ratio"] = float(ratio.median())
            out["blocks_v_denser"] = int((attn["v_score_per_param"] > attn["qk_score_per_param"]).sum())
        if abs(out["v_kept_mean"] - out["qk_kept_mean"]) > 1e-9:
            out["v_over_qk"] = out["v_kept_mean"] > out["qk_kept_mean"]
            out["v_over_qk_basis"] = "retained"
        elif "blocks_v_denser" in out:
            out["v_over_qk"] = out["blocks_v_denser"] > len(attn) / 2
            out["v_over_qk_basis"] = "score per parameter"
    if len(ffn):
        kept = ffn["ffn_kept"].tolist()
        half = len(kept) // 2
        out["ffn_kept_mean"] = float(pd.Series(kept).mean())
        out["ffn_kept_by_block"] = [round(k, 4) for k in kept]
        out["ffn_rho"] = spearman_rho(ffn["index"].tolist(), kept)
        out["ffn_shrinks"] = out["ffn_kept_mean"] < 1
        if half:
            out["ffn_kept_first_half"] = float(pd.Series(kept[:half]).mean())
            out["ffn_kept_second_half"] = float(pd.Series(kept[len(kept) - half:]).mean())
            rho = out["ffn_rho"]
            out["ffn_later_more"] = bool(math.isfinite(rho) and rho < 0
                                         and out["ffn_kept_second_half"] < out["ffn_kept_first_half"])
        else:
            out["ffn_later_more"] = None
    else:
        out["ffn_shrinks"] = out["ffn_later_more"] = None
    checks = [out[k] for k in ("v_over_qk", "ffn_shrinks", "ffn_later_more") if out[k] is not None]
    if not checks:
        out["verdict"] = "n/a"
    elif all(checks) and len(checks) == 3:
        out["verdict"] = "holds"
    elif any(checks):
        out["verdict"] = "partly"
    else:
        out["verdict"] = "does not hold"
    return out


def sensitivity_frame(scores: pd.DataFrame, units: Sequence[Unit], by: str = "params",
                      targets: Sequence[float] = (0.3, 0.5, 0.7), rankings: Sequence[str] = RANKINGS) -> pd.DataFrame:
    """The trend check under every ranking and several targets, from one set of scores.

    Returns:
        One row per (``rank``, ``target``): ``removed`` (fraction of the prunable ``by`` cost),
        ``qk_kept``, ``v_kept`` (means over attention blocks), ``ffn_kept`` (mean over blocks),
        ``ffn_kept_first_half``, ``ffn_kept_second_half``, ``ffn_rho`` and ``verdict``
        (see :func:`paper_trend`).
    """
    rows = []
    for rank in rankings:
        for target in targets:
            plan = plan_pruning(scores, units, target, by, rank)
            trend = paper_trend(retained_frame(units, plan, scores))
            removed = plan.removed_params / max(1, plan.prunable_params) if by == "params" else \
                plan.removed_macs / max(1, plan.prunable_macs)
            rows.append({"rank": rank, "target": target, "removed": removed,
                         "qk_kept": trend.get("qk_kept_mean", float("nan")),
                         "v_kept": trend.get("v_kept_mean", float("nan")),
                         "ffn_kept": trend.get("ffn_kept_mean", float("nan")),
                         "ffn_kept_first_half": trend.get("ffn_kept_first_half", float("nan")),
                         "ffn_kept_second_half": trend.get("ffn_kept_second_half", float("nan")),
                         "ffn_rho": trend.get("ffn_rho", float("nan")),
                         "v_over_qk_basis": trend["v_over_qk_basis"], "verdict": trend["verdict"]})
    return pd.DataFrame(rows)
