"""Proxy validity: does the short training budget rank architectures the way a longer one does?

``explore validate-proxy`` samples K feasible architectures from a space, trains each twice from
the same initialisation (the short proxy budget and a budget at least 5x longer), and reports the
rank agreement of the two top-1 lists: Kendall's tau and Spearman's rho (scipy), with a scatter
plot. A proxy is useful for a search when tau is high on architectures *of one space*, where the
differences are small.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
import pandas as pd
from scipy import stats

from explore.data import check_dataset, load_dataset
from explore.device import resolve_device
from explore.errors import ConfigError, ExploreError
from explore.measure import count_macs, count_params
from explore.models import build
from explore.space import load_space
from explore.train import ProxyRecipe, seed_everything, train_proxy

__all__ = ["ProxyValidity", "sample_architectures", "validate_proxy", "write_validity_report"]


@dataclass(frozen=True)
class ProxyValidity:
    """Result of :func:`validate_proxy`: one row per architecture, and the rank statistics."""

    table: pd.DataFrame
    kendall_tau: float
    spearman_rho: float
    short_epochs: float
    long_epochs: float
    meta: dict[str, Any]


def sample_architectures(space_name: str, count: int, *, in_chans: int, num_classes: int, seed: int = 0,
                         max_attempts: int = 1000) -> list:
    """``count`` distinct feasible configs drawn at random from a space (infeasible draws skipped).

    Raises:
        ExploreError: fewer than ``count`` distinct feasible points in ``max_attempts`` draws.
    """
    space = load_space(space_name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs, seen = [], set()
    for _ in range(max_attempts):
        trial = study.ask()
        try:
            config = space.sample(trial, in_chans=in_chans, num_classes=num_classes)
        except ConfigError:
            continue
        if config.config_hash() not in seen:
            seen.add(config.config_hash())
            configs.append(config)
        if len(configs) == count:
            return configs
    raise ExploreError("--archs", count, f"found only {len(configs)} distinct feasible architectures in the space")


def validate_proxy(space: str, archs: int, *, dataset: str = "fashion_mnist", data_root: str | None = None,
                   max_train: int | None = 10000, max_val: int | None = 2000, short_epochs: float = 1.0,
                   long_epochs: float = 5.0, batch_size: int = 128, lr: float = 2e-3, device: str = "cpu",
                   seed: int = 0, on_arch: Callable[[dict[str, Any]], None] | None = None) -> ProxyValidity:
    """Train ``archs`` sampled architectures with the short and the long budget; rank-correlate.

    Args:
        space: space name or file.
        archs: K, the number of architectures (>= 3).
        short_epochs, long_epochs: the two budgets; long must be >= 5x short.
        others: as for ``explore study``.
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
    dev = resolve_device(device)
    load_space(space)
    check_dataset(dataset, data_root)
    data = load_dataset(dataset, data_root, max_train=max_train, max_val=max_val, seed=seed)
    configs = sample_architectures(space, archs, in_chans=data.in_chans, num_classes=data.num_classes, seed=seed)
    rows = []
    for i, config in enumerate(configs):
        row: dict[str, Any] = {"arch": i, "summary": config.summary(), "config_hash": config.config_hash()}
        for budget, epochs in (("short", short_epochs), ("long", long_epochs)):
            seed_everything(seed + i)
            model = build(config)  # the same initialisation for both budgets
            if budget == "short":
                row["params"] = count_params(model)
                row["macs"] = count_macs(model, config.img_size, config.in_chans)
            recipe = ProxyRecipe(epochs=epochs, batch_size=batch_size, lr=lr)
            result = train_proxy(model, data, img_size=config.img_size, recipe=recipe, device=str(dev), seed=seed + i)
            row[f"{budget}_top1"] = result.top1
            row[f"{budget}_seconds"] = round(result.train_seconds + result.eval_seconds, 2)
        row["config"] = config.to_json(sort_keys=True)
        rows.append(row)
        if on_arch is not None:
            on_arch(row)
    table = pd.DataFrame(rows)
    tau = float(stats.kendalltau(table["short_top1"], table["long_top1"]).statistic)
    rho = float(stats.spearmanr(table["short_top1"], table["long_top1"]).statistic)
    meta = {"space": space, "archs": archs, "dataset": dataset, "max_train": max_train, "max_val": max_val,
            "batch_size": batch_size, "lr": lr, "device": str(dev), "seed": seed}
    return ProxyValidity(table, tau, rho, short_epochs, long_epochs, meta)


def write_validity_report(result: ProxyValidity, out_dir: Path, command: str) -> list[Path]:
    """Write ``proxy_validity.csv``, ``proxy_validity.png`` (short vs long top-1) and ``.md``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    csv, png, md = (out_dir / f"proxy_validity.{ext}" for ext in ("csv", "png", "md"))
    table = result.table
    table.to_csv(csv, index=False)
    fig, ax = plt.subplots(figsize=(5.2, 4.4), dpi=120)
    ax.scatter(table["short_top1"], table["long_top1"], c="C0")
    for _, row in table.iterrows():
        ax.annotate(str(int(row["arch"])), (row["short_top1"], row["long_top1"]), xytext=(3, 3),
                    textcoords="offset points", fontsize=8)
    ax.set_xlabel(f"top-1 after {result.short_epochs:g} epoch(s) (%)")
    ax.set_ylabel(f"top-1 after {result.long_epochs:g} epochs (%)")
    ax.set_title(f"{result.meta['space']}: Kendall tau {result.kendall_tau:.2f}, Spearman rho {result.spearman_rho:.2f}",
                 fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    meta = result.meta
    shown = table.drop(columns=["config", "config_hash"])
    md.write_text(
        f"# Proxy validity: `{meta['space']}`\n\nCommand: `{command}`\n\n"
        f"- {meta['archs']} architectures sampled at random (seed {meta['seed']}), each trained from the same "
        f"initialisation for {result.short_epochs:g} and {result.long_epochs:g} epochs\n"
        f"- data: `{meta['dataset']}`, train subset {meta['max_train']}, val subset {meta['max_val']}, "
        f"batch {meta['batch_size']}, lr {meta['lr']}; device `{meta['device']}`\n"
        f"- **Kendall tau {result.kendall_tau:.3f}**, **Spearman rho {result.spearman_rho:.3f}** "
        f"(short vs long top-1)\n\n" + shown.to_markdown(index=False) + "\n",
        encoding="utf-8",
    )
    return [csv, png, md]
