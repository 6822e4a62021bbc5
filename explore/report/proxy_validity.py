"""The proxy-validity report: short against long top-1 per architecture, Kendall tau, Spearman rho."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from explore.records import CONFIG_HASH
from explore.report.common import pyplot

if TYPE_CHECKING:  # the result's type, for annotations only
    from explore.analysis.proxy_validity import ProxyValidity

__all__ = ["write_validity_report"]


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
