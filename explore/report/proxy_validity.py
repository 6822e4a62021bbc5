"""The proxy-validity reports: short against long top-1 per architecture, and a supernet's inherited
against stand-alone top-1; Kendall tau, Spearman rho."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from explore.records import CONFIG_HASH
from explore.report.common import fmt, pyplot

if TYPE_CHECKING:  # the result's type, for annotations only
    import pandas as pd

    from explore.analysis.proxy_validity import ProxyValidity
    from explore.analysis.supernet_validity import SupernetValidity

__all__ = ["write_validity_report", "write_supernet_validity_report", "SUPERNET_VALIDITY_JSON"]


def _label_and_save(fig: Any, ax: Any, table: pd.DataFrame, xy: tuple[str, str], png: Path, fontsize: int,
                    title: str) -> None:
    """Label each point of a (x, y) top-1 scatter with its ``arch`` number, title and grid the axes, and
    write the figure to ``png`` (closed)."""
    for _, row in table.iterrows():
        ax.annotate(str(int(row["arch"])), (row[xy[0]], row[xy[1]]), xytext=(3, 3), textcoords="offset points",
                    fontsize=fontsize)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png)
    pyplot().close(fig)


def write_validity_report(result: ProxyValidity, out_dir: Path, command: str) -> list[Path]:
    """Write ``proxy_validity.csv``, ``proxy_validity.png`` (short vs long top-1) and ``.md`` of a
    proxy-validity run (its table, statistics and settings)."""
    plt = pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, png, md = (out_dir / f"proxy_validity.{ext}" for ext in ("csv", "png", "md"))
    table = result.table
    table.to_csv(csv, index=False)
    fig, ax = plt.subplots(figsize=(5.2, 4.4), dpi=120)
    ax.scatter(table["short_top1"], table["long_top1"], c="C0")
    ax.set_xlabel(f"top-1 after {result.short_epochs:g} epoch(s) (%)")
    ax.set_ylabel(f"top-1 after {result.long_epochs:g} epochs (%)")
    _label_and_save(fig, ax, table, ("short_top1", "long_top1"), png, 8,
                    f"{result.meta['space']}: Kendall tau {result.kendall_tau:.2f}, Spearman rho {result.spearman_rho:.2f}")
    meta = result.meta
    shown = table.drop(columns=["config", CONFIG_HASH])
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


SUPERNET_VALIDITY_JSON = "supernet_validity.json"
"""The command, note, stand-alone epochs and settings of a supernet-validity run, beside its table."""


def write_supernet_validity_report(result: SupernetValidity, out_dir: Path, command: str,
                                   note: str | None = None) -> list[Path]:
    """Write a supernet's rank validity (``explore validate-proxy --supernet``): the raw per-subnet
    ``supernet_validity.csv``, ``supernet_validity.json`` (command, note, epochs, settings: with the
    table, what ``explore rerender`` needs), the scatter plot ``supernet_validity.png`` (inherited
    against stand-alone top-1, coloured by MACs tercile) and ``supernet_validity.md`` (the command, the
    cost line, τ and ρ overall and per tercile beside the params, MACs and seed-to-seed rows).

    Args:
        result: what :func:`explore.analysis.supernet_validity.validate_supernet` found (or its stored
            table, :func:`~explore.analysis.supernet_validity.rank_table` of it, epochs and meta).
        out_dir: target folder (created).
        command: the command that made it.
        note: a sentence on the run's context (the machine's load, why a budget), shown under the command.

    Returns:
        The CSV, JSON, PNG and markdown paths.
    """
    plt = pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, png, md = (out_dir / f"supernet_validity.{ext}" for ext in ("csv", "png", "md"))
    stored = out_dir / SUPERNET_VALIDITY_JSON
    table = result.table
    table.to_csv(csv, index=False)
    stored.write_text(json.dumps({"command": command, "note": note, "epochs": result.epochs, "meta": result.meta},
                                 indent=1, sort_keys=True), encoding="utf-8")
    fig, ax = plt.subplots(figsize=(5.6, 4.6), dpi=120)
    for k in range(3):
        part = table[table["tercile"] == k]
        ax.scatter(part["inherited_top1"], part["standalone_top1"], c=f"C{k}", label=f"MACs tercile {k + 1}")
    ax.set_xlabel("inherited top-1, BN recalibrated (%)")
    ax.set_ylabel(f"stand-alone top-1 after {result.epochs:g} epoch(s) (%)")
    ax.legend(fontsize=8)
    _label_and_save(fig, ax, table, ("inherited_top1", "standalone_top1"), png, 7,
                    f"{result.meta['space']}: Kendall tau {fmt(result.tau('inherited top-1'))} over {len(table)} subnets")
    meta = result.meta
    ranks = result.ranks.assign(kendall_tau=[fmt(v, 3) for v in result.ranks["kendall_tau"]],
                                spearman_rho=[fmt(v, 3) for v in result.ranks["spearman_rho"]])
    shown = table.drop(columns=["config", CONFIG_HASH])
    inherited_s = float(table["inherited_seconds"].mean()) if len(table) else float("nan")
    cost = ""
    if "cost_ratio" in meta:
        ratio = float(meta["cost_ratio"])
        cost = (f"- cost: the supernet's training took {fmt(ratio, 2)}x the wall time of one stand-alone proxy trial "
                f"of its largest subnet (`{meta['largest_summary']}`, {meta['supernet_epochs']} epoch(s) on the same "
                f"data, training and evaluation: {fmt(meta['largest_train_seconds'], 0)} s); target <= 5x: "
                f"{'met' if ratio <= 5 else 'missed'}\n")
    md.write_text(
        f"# Supernet rank validity: `{meta['space']}`\n\nCommand: `{command}`\n\n"
        + (f"Note: {note}\n\n" if note else "")
        + f"- supernet `{meta['supernet']}`: {meta['supernet_epochs']} epoch(s), "
        f"{2 + int(meta['supernet_random_subnets'])} subnets per step, training {fmt(meta['supernet_train_seconds'], 0)} s "
        f"wall (made by `{meta['supernet_command']}`)\n" + cost +
        f"- {len(table)} subnets stratified over MACs (one per equal bin of a random pool, seed {meta['seed']}); "
        f"inherited top-1 after BN recalibration on {meta['recalibration_images']} training images "
        f"(mean {fmt(inherited_s)} s per subnet); stand-alone: each subnet trained {result.epochs:g} epoch(s) "
        f"from scratch with two seeds\n"
        f"- data: `{meta['dataset']}`, train subset {meta['max_train']}, val subset {meta['max_val']}, "
        f"batch {meta['batch_size']}, lr {meta['lr']}; device `{meta['device']}`\n\n"
        "## Rank correlation with stand-alone top-1 (first seed)\n\n"
        "`params` and `MACs`: what the cost alone ranks (the baseline); `second seed`: the stand-alone proxy "
        "against itself with another seed (the ceiling). Terciles: the subnets cut by MACs into three equal "
        "groups, where cost alone ranks little.\n\n"
        + ranks.to_markdown(index=False) + "\n\n## Subnets\n\n" + shown.to_markdown(index=False) + "\n\n"
        "Files: `supernet_validity.csv` (raw, with configs), `supernet_validity.json` (command, settings), "
        "`supernet_validity.png`.\n",
        encoding="utf-8",
    )
    return [csv, stored, png, md]
