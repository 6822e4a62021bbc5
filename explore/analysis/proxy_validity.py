"""Proxy validity: does the short training budget rank architectures the way a longer one does?

``explore validate-proxy`` samples K feasible architectures from a space, trains each twice from
the same initialisation (the short proxy budget and a budget at least 5x longer), and reports the
rank agreement of the two top-1 lists: Kendall's tau and Spearman's rho (scipy,
:mod:`explore.stats`); :func:`explore.report.write_validity_report` draws the scatter plot. A proxy is useful for a search when tau is high on architectures *of one space*, where the
differences are small.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd

from explore.device import resolve_device
from explore.errors import ExploreError
from explore.evaluate import RunBudget, evaluate_candidate
from explore.records import CONFIG_HASH
from explore.space import load_space, sample_architectures
from explore.stats import kendall_tau, spearman_rho
from explore.train import check_dataset

__all__ = ["ProxyValidity", "validate_proxy"]


@dataclass(frozen=True)
class ProxyValidity:
    """Result of :func:`validate_proxy`: one row per architecture, and the rank statistics."""

    table: pd.DataFrame
    kendall_tau: float
    spearman_rho: float
    short_epochs: float
    long_epochs: float
    meta: dict[str, Any]


def validate_proxy(space: str, archs: int, *, budget: RunBudget | None = None, short_epochs: float = 1.0,
                   long_epochs: float = 5.0, on_arch: Callable[[dict[str, Any]], None] | None = None) -> ProxyValidity:
    """Train ``archs`` sampled architectures with the short and the long budget; rank-correlate.

    Args:
        space: space name or file.
        archs: K, the number of architectures (>= 3).
        budget: data, subsets, batch, lr, seed and device (:class:`explore.evaluate.RunBudget`; its
            ``epochs`` are replaced by the two budgets). The seed draws the architectures and the
            subsets; architecture i trains with seed + i.
        short_epochs: the short budget (epochs).
        long_epochs: the long budget (epochs); must be >= 5x ``short_epochs``.
        on_arch: called with each finished row (progress).

    Returns:
        :class:`ProxyValidity`.

    Raises:
        ExploreError: K < 3, long < 5x short, or bad space / dataset / device.
    """
    if archs < 3:
        raise ExploreError("--archs", archs, "expected >= 3 architectures to rank")
    if not long_epochs >= 5 * short_epochs:
        raise ExploreError("--long-epochs", long_epochs, f"expected >= 5x the short budget ({5 * short_epochs:g})")
    budget = budget or RunBudget()
    dev = resolve_device(budget.device)
    load_space(space)
    check_dataset(budget.dataset, budget.data_root)
    budget = dataclasses.replace(budget, epochs=short_epochs, device=str(dev))
    seed = budget.seed
    data = budget.load_data(seed)
    configs = sample_architectures(space, archs, in_chans=data.in_chans, num_classes=data.num_classes, seed=seed)
    rows = []
    for i, config in enumerate(configs):
        row: dict[str, Any] = {"arch": i, "summary": config.summary(), CONFIG_HASH: config.config_hash()}
        for name, epochs in (("short", short_epochs), ("long", long_epochs)):
            # the same initialisation for both budgets; params and MACs counted once
            evaluation = evaluate_candidate(config, seed=seed + i, count=name == "short", data=data,
                                            recipe=budget.proxy_recipe(epochs), device=dev)
            if name == "short":
                row["params"], row["macs"] = evaluation.params, evaluation.macs
            result = evaluation.proxy
            row[f"{name}_top1"] = result.top1
            row[f"{name}_seconds"] = round(result.train_seconds + result.eval_seconds, 2)
        row["config"] = config.to_json(sort_keys=True)
        rows.append(row)
        if on_arch is not None:
            on_arch(row)
    table = pd.DataFrame(rows)
    tau = kendall_tau(table["short_top1"], table["long_top1"])
    rho = spearman_rho(table["short_top1"], table["long_top1"])
    meta = {"space": space, "archs": archs, "dataset": budget.dataset, "max_train": budget.max_train,
            "max_val": budget.max_val, "batch_size": budget.batch_size, "lr": budget.lr, "device": str(dev), "seed": seed}
    return ProxyValidity(table, tau, rho, short_epochs, long_epochs, meta)
