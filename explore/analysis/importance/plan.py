"""The global pruning plan: rank every group of the model and remove the cheapest-to-lose ones
until a target fraction of the prunable params (or MACs) is gone, in one shot.

Follows: arXiv:2305.07027 §3.3 (pruning with Taylor importance to read which widths matter).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from explore.analysis.importance.units import AttentionUnit, Unit
from explore.errors import ExploreError

__all__ = ["RANK_BY", "RANKINGS", "UnitKeep", "PruningPlan", "check_target", "plan_pruning"]

RANK_BY = ("params", "macs")
"""The cost a target is a fraction of (and that ``per-cost`` ranking divides by)."""
RANKINGS = ("per-cost", "score")
"""Global ranking of groups: Taylor score per unit of cost (params or MACs), or the raw score."""


@dataclass(frozen=True)
class UnitKeep:
    """The channels a unit keeps (original indices, ascending).

    Attributes:
        heads: attention units: kept head -> (kept Q/K pair channels, kept V channels); a head
            missing from the mapping is removed. Empty for hidden units.
        hidden: hidden units: kept hidden channels; None for attention units.
    """

    heads: Mapping[int, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    hidden: tuple[int, ...] | None = None


@dataclass(frozen=True)
class PruningPlan:
    """What :func:`plan_pruning` decided.

    Attributes:
        target: fraction of the prunable cost to remove, in (0, 1).
        by: ``params`` or ``macs``: the cost targeted.
        rank: ``per-cost`` or ``score`` (see :func:`plan_pruning`).
        keep: unit path -> :class:`UnitKeep`.
        prunable_params, prunable_macs: cost of all scored groups (MACs of one image).
        removed_params, removed_macs: cost of the removed groups.
    """

    target: float
    by: str
    rank: str
    keep: Mapping[str, UnitKeep]
    prunable_params: int
    prunable_macs: int
    removed_params: int
    removed_macs: int


def check_target(target: Any, by: Any, rank: Any = "per-cost") -> None:
    """Check a pruning target, cost and ranking.

    Raises:
        ExploreError: ``--target`` outside (0, 1), unknown ``--by`` or ``--rank``.
    """
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
        raise ExploreError("--target", target, "expected a fraction strictly between 0 and 1")
    if by not in RANK_BY:
        raise ExploreError("--by", by, f"expected one of {', '.join(RANK_BY)}")
    if rank not in RANKINGS:
        raise ExploreError("--rank", rank, f"expected one of {', '.join(RANKINGS)}")


def plan_pruning(scores: pd.DataFrame, units: Sequence[Unit], target: float, by: str = "params",
                 rank: str = "per-cost") -> PruningPlan:
    """Rank every group of the model globally and remove groups until ``target`` of the cost is gone.

    Groups are visited by ascending score per unit of cost (``rank="per-cost"``: ``score / params``
    or ``score / macs``, the least estimated loss per parameter or MAC saved goes first, the greedy
    rule for a budget) or by ascending raw score (``rank="score"``: Molchanov et al.'s global
    ranking, which favours removing small groups); ties in model order. A group is removed
    unless that would leave a unit without any head, a kept head without any Q/K pair or V
    channel, or a hidden layer without any channel; a head's cost is what is left of it when it
    goes. Stops once the removed cost reaches ``target`` x the prunable cost.

    Args:
        scores: from :func:`taylor_scores`.
        units: the units the scores are of.
        target: fraction of the prunable params (or MACs) to remove, in (0, 1).
        by: ``params`` or ``macs``.
        rank: ``per-cost`` or ``score``.

    Returns:
        A :class:`PruningPlan`.

    Raises:
        ExploreError: target outside (0, 1) (field ``--target``), unknown ``by`` (``--by``) or
            ``rank`` (``--rank``).
    """
    check_target(target, by, rank)
    cost_col = by
    qk_kept: dict[tuple[str, int], set[int]] = {}
    v_kept: dict[tuple[str, int], set[int]] = {}
    heads_alive: dict[str, set[int]] = {}
    hidden_kept: dict[str, set[int]] = {}
    for u in units:
        if isinstance(u, AttentionUnit):
            heads_alive[u.path] = set(range(u.heads))
            for h in range(u.heads):
                qk_kept[(u.path, h)] = set(range(u.qk_dim))
                v_kept[(u.path, h)] = set(range(u.v_dim))
        else:
            hidden_kept[u.path] = set(range(u.hidden))

    channel_rows = scores[scores["group"] != "head"]
    head_rows = scores[scores["group"] == "head"]
    per_channel: dict[tuple[str, int, str], tuple[int, int]] = {}
    for row in channel_rows.drop_duplicates(["unit", "head", "group"]).itertuples(index=False):
        per_channel[(row.unit, row.head, row.group)] = (int(row.params), int(row.macs))
    bias_cost: dict[tuple[str, int], tuple[int, int]] = {}
    for row in head_rows.itertuples(index=False):
        qk_p, qk_m = per_channel.get((row.unit, row.head, "qk"), (0, 0))
        v_p, v_m = per_channel.get((row.unit, row.head, "v"), (0, 0))
        n_qk, n_v = len(qk_kept[(row.unit, row.head)]), len(v_kept[(row.unit, row.head)])
        bias_cost[(row.unit, row.head)] = (int(row.params) - n_qk * qk_p - n_v * v_p,
                                           int(row.macs) - n_qk * qk_m - n_v * v_m)
    prunable_params = int(channel_rows["params"].sum()) + sum(c[0] for c in bias_cost.values())
    prunable_macs = int(channel_rows["macs"].sum()) + sum(c[1] for c in bias_cost.values())
    budget = target * (prunable_params if by == "params" else prunable_macs)

    order = scores.assign(_pos=range(len(scores)))
    divisor = order[cost_col].clip(lower=1) if rank == "per-cost" else 1
    order = order.assign(_density=order["score"] / divisor)
    order = order.sort_values(["_density", "_pos"], kind="mergesort")
    removed_params = removed_macs = 0
    for row in order.itertuples(index=False):
        if (removed_params if by == "params" else removed_macs) >= budget:
            break
        cost = (0, 0)
        if row.group == "hidden":
            kept = hidden_kept[row.unit]
            if row.channel in kept and len(kept) > 1:
                kept.discard(row.channel)
                cost = (int(row.params), int(row.macs))
        elif row.group in ("qk", "v"):
            if row.head not in heads_alive[row.unit]:
                continue
            kept = (qk_kept if row.group == "qk" else v_kept)[(row.unit, row.head)]
            if row.channel in kept and len(kept) > 1:
                kept.discard(row.channel)
                cost = (int(row.params), int(row.macs))
        else:  # a whole head
            alive = heads_alive[row.unit]
            if row.head in alive and len(alive) > 1:
                alive.discard(row.head)
                key = (row.unit, row.head)
                qk_p, qk_m = per_channel[(row.unit, row.head, "qk")]
                v_p, v_m = per_channel[(row.unit, row.head, "v")]
                n_qk, n_v = len(qk_kept[key]), len(v_kept[key])
                cost = (n_qk * qk_p + n_v * v_p + bias_cost[key][0], n_qk * qk_m + n_v * v_m + bias_cost[key][1])
        removed_params += cost[0]
        removed_macs += cost[1]

    keep: dict[str, UnitKeep] = {}
    for u in units:
        if isinstance(u, AttentionUnit):
            keep[u.path] = UnitKeep(heads={h: (tuple(sorted(qk_kept[(u.path, h)])), tuple(sorted(v_kept[(u.path, h)])))
                                           for h in sorted(heads_alive[u.path])})
        else:
            keep[u.path] = UnitKeep(hidden=tuple(sorted(hidden_kept[u.path])))
    return PruningPlan(target=float(target), by=by, rank=rank, keep=keep, prunable_params=prunable_params,
                       prunable_macs=prunable_macs, removed_params=removed_params, removed_macs=removed_macs)
