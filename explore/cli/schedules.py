"""``explore compare-schedules``: full vs successive halving / Hyperband at the same training budget."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from explore.cli.common import (DataRootOpt, DatasetOpt, app, console, fail, float_list, int_list, names, print_table,
                                run_or_exit)
from explore.errors import ExploreError
from explore.reproduce import command_line

__all__ = ["compare_schedules"]


@app.command("compare-schedules")
def compare_schedules(
    *,
    space: Annotated[str, typer.Option(help="Space name (cga) or path to a space TOML file.")] = "cga",
    schedules: Annotated[str, typer.Option(help="Schedules compared, full first: full,sha[,hyperband].")] = "full,sha",
    seeds: Annotated[str, typer.Option(help="Study seeds, one run per schedule and seed.")] = "0,1,2",
    budget: Annotated[float, typer.Option(
        help="Training budget of every run, in epochs of the training subset (epochs x images / subset).")] = 16.0,
    epochs: Annotated[float, typer.Option(help="Full proxy budget of one architecture (the top rung), epochs.")] = 2.0,
    rungs: Annotated[Optional[str], typer.Option(
        help="Rungs of sha / hyperband, cumulative epochs (last = --epochs); default --epochs/eta^2, /eta, 1x.")] = None,
    eta: Annotated[int, typer.Option(help="sha / hyperband: about one job in eta promoted per rung.")] = 3,
    long_epochs: Annotated[float, typer.Option(help="Epochs of the final fronts' re-training.")] = 4.0,
    long_seed: Annotated[int, typer.Option(help="Seed (and data subset) of the re-training.")] = 0,
    ref_latency_ms: Annotated[Optional[float], typer.Option(
        help="Reference latency of the hypervolume, ms/img (default 1.05 x the largest measured).")] = None,
    dataset: DatasetOpt = "fashion_mnist",
    data_root: DataRootOpt = None,
    max_train: Annotated[int, typer.Option(help="Training images used (random subset; 0 = all).")] = 10000,
    max_val: Annotated[int, typer.Option(help="Held-out images for top-1 (0 = all).")] = 2000,
    batch_size: Annotated[int, typer.Option(help="Proxy training batch size.")] = 128,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N.")] = "cpu",
    sampler: Annotated[str, typer.Option(help="tpe | nsga2 | random")] = "tpe",
    train_threads: Annotated[int, typer.Option(help="CPU threads of training (0 = the free cores).")] = 0,
    out: Annotated[str, typer.Option(help="Folder of the comparison: its runs, stored results and report.")] =
        "reports/compare_schedules",
) -> None:
    """Run full and the schedule(s) with several seeds at one training budget; re-train the final fronts
    at the long budget; report hypervolumes, hypervolume vs training spent and the budget ratio.
    Resumable: the same command goes on where it stopped."""
    from explore.report.schedules import summary_table, write_schedules_report
    from explore.search.schedule_comparison import CompareSettings, compare_schedules as run

    rung_list = float_list(rungs, "--rungs")
    seed_list = int_list(seeds, "--seeds") or []
    settings = CompareSettings(
        space=space, schedules=tuple(names(schedules)), seeds=tuple(seed_list), budget=budget, epochs=epochs,
        rungs=tuple(rung_list) if rung_list else None, eta=eta, long_epochs=long_epochs, long_seed=long_seed,
        ref_latency_ms=ref_latency_ms, dataset=dataset, data_root=data_root, max_train=max_train or None,
        max_val=max_val or None, batch_size=batch_size, device=device, sampler=sampler,
        train_threads=train_threads or None, out=out)
    try:
        settings.validate()
    except ExploreError as exc:
        raise fail(exc) from None
    command = command_line(["explore", "compare-schedules"], [
        ("--space", space), ("--schedules", schedules), ("--seeds", seeds), ("--budget", budget), ("--epochs", epochs),
        ("--rungs", rungs), ("--eta", eta), ("--long-epochs", long_epochs), ("--long-seed", long_seed),
        ("--ref-latency-ms", ref_latency_ms), ("--dataset", dataset), ("--data-root", data_root),
        ("--max-train", max_train), ("--max-val", max_val), ("--batch-size", batch_size), ("--device", device),
        ("--sampler", sampler), ("--train-threads", train_threads or None), ("--out", out)])
    comparison = run_or_exit(lambda: run(settings, on_event=lambda text: console.print(text, highlight=False)),
                             "the finished studies and runs are stored; run the same command again to go on")
    paths = write_schedules_report(comparison, Path(out), command)
    table = summary_table(comparison.summary)
    print_table([[str(v) for v in row] for row in table.itertuples(index=False)], list(table.columns),
                "schedules (mean ± std over seeds)")
    console.print(f"wrote {paths.markdown}\nwrote {paths.png}")
