"""Rank validity of a supernet: does inherited top-1 rank subnets the way stand-alone training does?

``explore validate-proxy --space SPACE --supernet DIR --archs K`` draws K subnets of the supernet's
space stratified over MACs (a pool of random subnets, sorted by MACs, cut into K equal bins, one
subnet drawn per bin), scores each by **inherited top-1** (the supernet's weights, BN statistics
recalibrated on the training split: :func:`explore.supernet.inherited_top1`), and trains each on its
own at the proxy budget twice, with two seeds. It reports Kendall τ and Spearman ρ (scipy, via
:mod:`explore.stats`) between inherited and stand-alone top-1 overall and inside the MACs
terciles (where params and MACs alone cannot rank), beside two references: the τ that params and
MACs alone reach against stand-alone top-1 (the baseline a supernet must beat) and the stand-alone
proxy's own seed-to-seed τ (the ceiling: no score can agree with one seed better than another
seed does, on average).

Follows: Once-for-All (Cai et al., arXiv:1908.09791 §3.3, BN recalibration), the rank-correlation
evaluation of weight-sharing NAS in Yu et al. ("Evaluating the search phase of neural architecture
search", arXiv:1902.08142 §4: Kendall τ of supernet against stand-alone ranks) and AttentiveNAS
(Wang et al., arXiv:2011.09011 §4.2).
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from explore.device import resolve_device
from explore.errors import ExploreError
from explore.evaluate import RunBudget, count_model, evaluate_candidate
from explore.nn import build
from explore.records import CONFIG_HASH
from explore.search.inherited import InheritedScorer, check_supernet
from explore.space import load_space
from explore.stats import kendall_tau, spearman_rho

__all__ = ["SECOND_SEED_OFFSET", "SupernetValidity", "stratified_subnets", "rank_table", "validate_supernet"]

SECOND_SEED_OFFSET = 100_000
"""Subnet i trains on its own with seed ``seed + i`` and, for the ceiling, ``seed + SECOND_SEED_OFFSET + i``."""
POOL_PER_ARCH = 4
"""Random subnets drawn per requested subnet before the MACs stratification."""


@dataclass(frozen=True)
class SupernetValidity:
    """Result of :func:`validate_supernet`.

    Attributes:
        table: one row per subnet (``arch``, ``summary``, ``config_hash``, ``params``, ``macs``,
            ``tercile`` (0-2, by MACs), ``inherited_top1``, ``inherited_seconds``, ``standalone_top1``,
            ``standalone_top1_seed2`` (%), ``standalone_seconds``, ``config``).
        ranks: :func:`rank_table` of ``table``.
        epochs: the stand-alone proxy budget (epochs).
        meta: space, supernet folder, data, seeds, recalibration images, the supernet's training
            wall seconds (``supernet_train_seconds``); the cost baseline: the largest subnet of the
            supernet's first group (``largest_summary``) trained on its own at the supernet's epochs and
            data (``largest_train_seconds``: its trial's wall seconds, training and evaluation;
            ``cost_ratio``: supernet seconds / that), absent when not measured.
    """

    table: pd.DataFrame
    ranks: pd.DataFrame
    epochs: float
    meta: dict[str, Any]

    def tau(self, comparison: str, subset: str = "all") -> float:
        """Kendall τ of one row of :attr:`ranks` (NaN where absent)."""
        row = self.ranks[(self.ranks["comparison"] == comparison) & (self.ranks["subset"] == subset)]
        return float(row["kendall_tau"].iloc[0]) if len(row) else float("nan")


def stratified_subnets(sample: Callable[[random.Random], Any], count: int, *, macs_of: Callable[[Any], int],
                       seed: int = 0, pool: int | None = None) -> list[tuple[Any, int]]:
    """``count`` distinct subnets spread over MACs: ``pool`` distinct random draws (default
    ``POOL_PER_ARCH x count``) sorted by MACs and cut into ``count`` equal bins, one drawn per bin.

    Args:
        sample: draws one config with a ``random.Random``.
        count: subnets wanted.
        macs_of: MACs of one config (one image).
        seed: seeds the draws.
        pool: distinct configs drawn first.

    Returns:
        (config, MACs) pairs, fewest MACs first.

    Raises:
        ExploreError: field ``--archs``: the space holds fewer than ``count`` distinct subnets (in 50x
            as many draws).
    """
    rng = random.Random(seed)
    wanted = max(count, pool or POOL_PER_ARCH * count)
    found: dict[str, Any] = {}
    for _ in range(50 * wanted):
        if len(found) >= wanted:
            break
        config = sample(rng)
        found.setdefault(config.config_hash(), config)
    if len(found) < count:
        raise ExploreError("--archs", count, f"the space holds only {len(found)} distinct subnets found in "
                                             f"{50 * wanted} draws")
    scored = sorted(((macs_of(c), h, c) for h, c in found.items()), key=lambda t: (t[0], t[1]))
    picked = []
    for part in np.array_split(np.arange(len(scored)), count):
        macs, _, config = scored[int(part[rng.randrange(len(part))])]
        picked.append((config, macs))
    return picked


def rank_table(table: pd.DataFrame) -> pd.DataFrame:
    """Kendall τ and Spearman ρ of the scores against stand-alone top-1.

    Args:
        table: :attr:`SupernetValidity.table`.

    Returns:
        Columns ``comparison``, ``subset`` (``all`` or ``MACs tercile k``), ``archs``, ``kendall_tau``,
        ``spearman_rho``; rows: inherited top-1 (overall and per tercile), params, MACs (overall and
        per tercile) and the stand-alone seed-to-seed ceiling (overall and per tercile). NaN below 3
        subnets or with a constant side.
    """
    subsets = [("all", table)] + [(f"MACs tercile {k + 1}", table[table["tercile"] == k]) for k in range(3)]
    rows = []
    for name, column in (("inherited top-1", "inherited_top1"), ("params", "params"), ("MACs", "macs"),
                         ("stand-alone, second seed (ceiling)", "standalone_top1_seed2")):
        for subset, part in subsets:
            rows.append({"comparison": name, "subset": subset, "archs": len(part),
                         "kendall_tau": kendall_tau(part[column], part["standalone_top1"]),
                         "spearman_rho": spearman_rho(part[column], part["standalone_top1"])})
    return pd.DataFrame(rows)


def validate_supernet(space: str, supernet_dir: str, archs: int, *, budget: RunBudget | None = None,
                      epochs: float = 1.0, recalibration_images: int = 2000, cost_baseline: bool = True,
                      on_arch: Callable[[dict[str, Any]], None] | None = None) -> SupernetValidity:
    """Inherited against stand-alone proxy top-1 on ``archs`` subnets stratified over MACs.

    Args:
        space: the space (name or file); must be the supernet's.
        supernet_dir: the supernet's folder (``explore supernet train --out``).
        archs: K, the number of subnets (>= 3; >= 9 for three per MACs tercile).
        budget: data, subsets, batch, lr, seed and device (:class:`explore.evaluate.RunBudget`; its
            ``epochs`` are replaced by ``epochs``). The seed draws the subnets and the data subsets;
            subnet i trains with seed + i and seed + ``SECOND_SEED_OFFSET`` + i.
        epochs: the stand-alone proxy budget (epochs).
        recalibration_images: training images of each BN recalibration.
        cost_baseline: also train the largest subnet (of the supernet's first group) on its own for the
            supernet's epochs on the same data, once, and store the supernet's training time over that
            trial's wall time (issue 26's cost target: <= 5x).
        on_arch: called with each finished row (progress).

    Returns:
        :class:`SupernetValidity`.

    Raises:
        ExploreError: K < 3, recalibration images < 1, a supernet of another space or dataset (field
            ``--supernet``), or bad space / dataset / device.
    """
    if archs < 3:
        raise ExploreError("--archs", archs, "expected >= 3 subnets to rank")
    if recalibration_images < 1:
        raise ExploreError("--recalibration-images", recalibration_images, "expected >= 1 training image")
    budget = budget or RunBudget()
    dev = resolve_device(budget.device)
    stored = check_supernet(supernet_dir, load_space(space), budget.dataset)
    budget = dataclasses.replace(budget, epochs=epochs, device=str(dev))
    data = budget.load_data(budget.seed)
    scorer = InheritedScorer(supernet_dir, data, dev, recalibration_images)
    supernet = scorer.supernet

    def macs_of(config: Any) -> int:
        return count_model(build(config), config.img_size, config.in_chans)[1]

    picked = stratified_subnets(supernet.sample, archs, macs_of=macs_of, seed=budget.seed)
    terciles = np.array_split(np.arange(len(picked)), 3)
    tercile_of = {int(i): k for k, part in enumerate(terciles) for i in part}
    rows = []
    for i, (config, macs) in enumerate(picked):
        top1, seconds = scorer.score(config)
        row: dict[str, Any] = {"arch": i, "summary": config.summary(), CONFIG_HASH: config.config_hash(),
                               "macs": macs, "tercile": tercile_of[i], "inherited_top1": top1,
                               "inherited_seconds": round(seconds, 3)}
        spent = 0.0
        for column, seed in (("standalone_top1", budget.seed + i),
                             ("standalone_top1_seed2", budget.seed + SECOND_SEED_OFFSET + i)):
            evaluation = evaluate_candidate(config, seed=seed, count=column == "standalone_top1", data=data,
                                            recipe=budget.proxy_recipe(), device=dev)
            if column == "standalone_top1":
                row["params"] = evaluation.params
            row[column] = evaluation.proxy.top1
            spent += evaluation.proxy.train_seconds
        row["standalone_seconds"] = round(spent / 2, 2)
        row["config"] = config.to_json(sort_keys=True)
        rows.append(row)
        if on_arch is not None:
            on_arch(row)
    table = pd.DataFrame(rows)
    state = scorer.state
    meta = {"space": space, "supernet": str(supernet_dir), "archs": archs, "dataset": budget.dataset,
            "max_train": budget.max_train, "max_val": budget.max_val, "batch_size": budget.batch_size, "lr": budget.lr,
            "device": str(dev), "seed": budget.seed, "recalibration_images": recalibration_images,
            "supernet_epochs": stored["epochs"], "supernet_random_subnets": stored["random_subnets"],
            "supernet_train_seconds": float(state.get("train_seconds", float("nan"))),
            "supernet_command": state.get("command", "")}
    if cost_baseline:
        largest = supernet.largest(supernet.groups[0])
        started = time.perf_counter()
        evaluate_candidate(largest, seed=budget.seed, count=False, data=data, device=dev,
                           recipe=dataclasses.replace(budget.proxy_recipe(), epochs=float(stored["epochs"])))
        seconds = time.perf_counter() - started
        meta.update(largest_summary=largest.summary(), largest_train_seconds=seconds,
                    cost_ratio=meta["supernet_train_seconds"] / seconds)
    return SupernetValidity(table, rank_table(table), epochs, meta)
