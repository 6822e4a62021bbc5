"""``explore compare-schedules``: full vs successive halving / Hyperband at the same training budget."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from explore.cli.common import app, console, fail, float_list, int_list, names, print_table, run_or_exit
from explore.cli.options import BATCH_SIZE, DATA_ROOT, DATASET, DEVICE, EPOCHS, MAX_TRAIN, MAX_VAL, given, reproduce_line
from explore.errors import ExploreError

__all__ = ["compare_schedules"]


@app.command("compare-schedules")
def compare_schedules(
    ctx: typer.Context,
    *,
    space: Annotated[str, typer.Option(help="Space name (cga) or path to a space TOML file.")] = "cga",
    schedules: Annotated[str, typer.Option(
        help="Schedules compared, full first: full,sha[,hyperband][,supernet].")] = "full,sha",
    seeds: Annotated[str, typer.Option(help="Study seeds, one run per schedule and seed.")] = "0,1,2",
    budget: Annotated[float, typer.Option(
        help="Training budget of every run, in epochs of the training subset (epochs x images / subset).")] = 16.0,
    epochs: EPOCHS.option("2 (the top rung: one architecture's full proxy budget)") = None,
    rungs: Annotated[Optional[str], typer.Option(
        help="Rungs of sha / hyperband, cumulative epochs (last = --epochs); default --epochs/eta^2, /eta, 1x.")] = None,
    eta: Annotated[int, typer.Option(help="sha / hyperband: about one job in eta promoted per rung.")] = 3,
    long_epochs: Annotated[float, typer.Option(help="Epochs of the final fronts' re-training.")] = 4.0,
    long_seed: Annotated[int, typer.Option(help="Seed (and data subset) of the re-training.")] = 0,
    ref_latency_ms: Annotated[Optional[float], typer.Option(
        help="Reference latency of the hypervolume, ms/img (default 1.05 x the largest measured).")] = None,
    dataset: DATASET.option("fashion_mnist") = None,
    data_root: DATA_ROOT.option() = None,
    max_train: MAX_TRAIN.option(10000) = None,
    max_val: MAX_VAL.option(2000) = None,
    batch_size: BATCH_SIZE.option(128) = None,
    device: DEVICE.option("cpu") = None,
    sampler: Annotated[str, typer.Option(help="tpe | nsga2 | random")] = "tpe",
    train_threads: Annotated[int, typer.Option(help="CPU threads of training (0 = the usable cores, shared by the workers).")] = 0,
    out: Annotated[str, typer.Option(help="Folder of the comparison: its runs, stored results and report.")] =
        "reports/compare_schedules",
    supernet_epochs: Annotated[int, typer.Option(
        help="supernet: epochs of the supernet's training (charged x (2 + --random-subnets) to its runs).")] = 5,
    random_subnets: Annotated[int, typer.Option(
        help="supernet: random subnets per step besides the largest and smallest.")] = 2,
    supernet_trials: Annotated[int, typer.Option(
        help="supernet: architectures each run scores by inherited top-1 (no training).")] = 50,
    recalibration_images: Annotated[int, typer.Option(
        help="supernet: training images of each trial's BN recalibration.")] = 2000,
) -> None:
    """Run full and the schedule(s) with several seeds at one training budget; re-train the final fronts
    at the long budget; report hypervolumes, hypervolume vs training spent and the budget ratio.
    Resumable: the same command goes on where it stopped."""
    from explore.report.schedules import summary_table, write_schedules_report
    from explore.search.schedule_comparison import CompareSettings, compare_schedules as run

    rung_list = float_list(rungs, "--rungs")
    seed_list = int_list(seeds, "--seeds") or []
    settings = CompareSettings(
        space=space, schedules=tuple(names(schedules)), seeds=tuple(seed_list), budget=budget,
        rungs=tuple(rung_list) if rung_list else None, eta=eta, long_epochs=long_epochs, long_seed=long_seed,
        ref_latency_ms=ref_latency_ms, sampler=sampler, train_threads=train_threads or None, out=out,
        supernet_epochs=supernet_epochs, random_subnets=random_subnets, supernet_trials=supernet_trials,
        recalibration_images=recalibration_images,
        **given(ctx, EPOCHS, DATASET, DATA_ROOT, MAX_TRAIN, MAX_VAL, BATCH_SIZE, DEVICE))
    try:
        settings.validate()
    except ExploreError as exc:
        raise fail(exc) from None
    command = reproduce_line(ctx, ["explore", "compare-schedules"])
    comparison = run_or_exit(lambda: run(settings, on_event=lambda text: console.print(text, highlight=False)),
                             "the finished studies and runs are stored; run the same command again to go on")
    paths = write_schedules_report(comparison, Path(out), command)
    table = summary_table(comparison.summary)
    print_table([[str(v) for v in row] for row in table.itertuples(index=False)], list(table.columns),
                "schedules (mean ± std over seeds)")
    console.print(f"wrote {paths.markdown}\nwrote {paths.png}")
