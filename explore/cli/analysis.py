"""``explore validate-proxy``, ``explore ablate`` and ``explore importance``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from explore.cli.common import app, console, fail, int_list, names
from explore.cli.options import (BATCH_SIZE, DATA_ROOT, DATASET, DEVICE, EPOCHS, MAX_TRAIN, MAX_VAL, SEED, given,
                                 reproduce_line)
from explore.errors import ExploreError, NonFiniteLossError
from explore.resources import safe_name

__all__ = ["validate_proxy", "ablate", "importance"]


@app.command("validate-proxy")
def validate_proxy(
    ctx: typer.Context,
    *,
    space: Annotated[str, typer.Option(help="Space name or file to sample architectures from.")] = "cga",
    archs: Annotated[int, typer.Option(help="K: architectures to train with both budgets.")] = 12,
    short_epochs: Annotated[float, typer.Option(help="The proxy budget (epochs).")] = 1.0,
    long_epochs: Annotated[float, typer.Option(help="The reference budget (>= 5x short).")] = 5.0,
    dataset: DATASET.option("fashion_mnist") = None,
    data_root: DATA_ROOT.option() = None,
    max_train: MAX_TRAIN.option(10000) = None,
    max_val: MAX_VAL.option(2000) = None,
    batch_size: BATCH_SIZE.option(128) = None,
    device: DEVICE.option("cpu") = None,
    seed: SEED.option(0) = None,
    out: Annotated[Optional[str], typer.Option(help="Output folder; default runs/validate-proxy-<space>.")] = None,
    supernet: Annotated[Optional[str], typer.Option(
        help="Supernet folder of the same space: rank inherited top-1 against stand-alone proxy top-1 "
             "(--short-epochs, two seeds) on --archs subnets stratified over MACs, instead of short vs long.")] = None,
    recalibration_images: Annotated[int, typer.Option(
        help="With --supernet: training images of each BN recalibration.")] = 2000,
    note: Annotated[Optional[str], typer.Option(
        help="With --supernet: a sentence on the run's context (e.g. 'machine shared, load average 3'), "
             "stored and shown in the report.")] = None,
) -> None:
    """Rank agreement (Kendall tau, Spearman rho) of the short proxy against a >= 5x longer budget; with
    --supernet, of inherited top-1 against the stand-alone proxy."""
    from explore.analysis import validate_proxy as run_validation
    from explore.evaluate import RunBudget
    from explore.report import write_validity_report

    if supernet is not None:
        _validate_supernet(ctx, space, supernet, archs, short_epochs, recalibration_images, out, note)
        return
    if note is not None:
        raise fail(ExploreError("--note", note, "a note of a --supernet run (the short-vs-long report has none)"))

    def on_arch(row: dict) -> None:
        console.print(f"arch {row['arch']}: {row['summary']}  short {row['short_top1']:.2f}%  "
                      f"long {row['long_top1']:.2f}%  ({row['short_seconds']:.0f} s + {row['long_seconds']:.0f} s)",
                      highlight=False)

    budget = RunBudget(**given(ctx, DATASET, DATA_ROOT, MAX_TRAIN, MAX_VAL, BATCH_SIZE, DEVICE, SEED))
    try:
        result = run_validation(space, archs, budget=budget, short_epochs=short_epochs, long_epochs=long_epochs,
                                on_arch=on_arch)
    except ExploreError as exc:
        raise fail(exc) from None
    command = reproduce_line(ctx, ["explore", "validate-proxy"])
    folder = Path(out) if out else Path("runs") / safe_name(f"validate-proxy-{Path(space).stem}")
    paths = write_validity_report(result, folder, command)
    console.print(f"Kendall tau {result.kendall_tau:.3f}, Spearman rho {result.spearman_rho:.3f} over {archs} "
                  f"architectures; wrote {', '.join(str(p) for p in paths)}")


def _validate_supernet(ctx: typer.Context, space: str, supernet: str, archs: int, epochs: float,
                       recalibration_images: int, out: Optional[str], note: Optional[str]) -> None:
    """``validate-proxy --supernet``: the data options not given are the supernet's own."""
    from explore.analysis import validate_supernet
    from explore.evaluate import RunBudget
    from explore.report import write_supernet_validity_report
    from explore.search.inherited import check_supernet
    from explore.space import load_space

    def on_arch(row: dict) -> None:
        console.print(f"subnet {row['arch']}: {row['summary']}  MACs {row['macs'] / 1e6:.2f}M  inherited "
                      f"{row['inherited_top1']:.2f}%  stand-alone {row['standalone_top1']:.2f}% / "
                      f"{row['standalone_top1_seed2']:.2f}%  ({row['inherited_seconds']:.1f} s + 2 x "
                      f"{row['standalone_seconds']:.0f} s)", highlight=False)

    options = given(ctx, DATASET, DATA_ROOT, MAX_TRAIN, MAX_VAL, BATCH_SIZE, DEVICE, SEED)
    try:
        stored = check_supernet(supernet, load_space(space))
        for name in ("dataset", "data_root", "max_train", "max_val"):
            options.setdefault(name, stored[name])
        result = validate_supernet(space, supernet, archs, budget=RunBudget(**options), epochs=epochs,
                                   recalibration_images=recalibration_images, on_arch=on_arch)
    except ExploreError as exc:
        raise fail(exc) from None
    command = reproduce_line(ctx, ["explore", "validate-proxy"])
    folder = Path(out) if out else Path("runs") / safe_name(f"validate-proxy-{Path(space).stem}-supernet")
    paths = write_supernet_validity_report(result, folder, command, note)
    if "cost_ratio" in result.meta:
        console.print(f"cost: the supernet's training took {result.meta['cost_ratio']:.2f}x one stand-alone trial of "
                      f"its largest subnet ({result.meta['largest_train_seconds']:.0f} s)", highlight=False)
    console.print(f"inherited vs stand-alone: Kendall tau {result.tau('inherited top-1'):.3f} over {archs} subnets "
                  f"(params {result.tau('params'):.3f}, MACs {result.tau('MACs'):.3f}, seed-to-seed "
                  f"{result.tau('stand-alone, second seed (ceiling)'):.3f}); wrote {', '.join(str(p) for p in paths)}")


@app.command()
def ablate(
    ctx: typer.Context,
    recipe: Annotated[str, typer.Argument(help="Recipe name (cga_table6, mit_ablation, ...) or file under studies/.")],
    *,
    out: Annotated[Optional[str], typer.Option(help="Run and report folder; default runs/ablate-<recipe>.")] = None,
    device: DEVICE.option("cpu; CUDA also runs the recipe's gpu-throughput protocol") = None,
    epochs: EPOCHS.option("the recipe's") = None,
    max_train: MAX_TRAIN.option("the recipe's") = None,
    max_val: MAX_VAL.option("the recipe's") = None,
    img_size: Annotated[Optional[int], typer.Option(help="Override the training resolution (pixels).")] = None,
    batch_size: BATCH_SIZE.option("the recipe's") = None,
    seeds: Annotated[Optional[str], typer.Option(
        help="Override the seeds, e.g. 0,1,2 (>= 2), or auto[:MAX]: add seeds only to rows still undecided.")] = None,
    variants: Annotated[Optional[str], typer.Option(help="Run only these variants (comma-separated; include the baseline).")] = None,
    protocols: Annotated[Optional[str], typer.Option(help="Override the protocols, e.g. cpu-latency,onnx-cpu.")] = None,
    measure_img_sizes: Annotated[Optional[str], typer.Option(help="Override the measurement resolutions, e.g. 224.")] = None,
    repeats: Annotated[Optional[int], typer.Option(help="Override timed runs per measurement.")] = None,
    data_root: DATA_ROOT.option() = None,
    remeasure: Annotated[bool, typer.Option(help="Measure latency again (e.g. on a now quiet machine); training rows are reused.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Validate the recipe and list its variants; run nothing.")] = False,
) -> None:
    """Run an ablation recipe: every variant's params, MACs, latency and proxy top-1 over seeds, and a
    report with the paper's numbers beside ours (Δ vs baseline, Kendall τ, verdicts)."""
    from explore.analysis import ablation as ab
    from explore.device import resolve_device
    from explore.report import write_ablation_report

    device = device or "cpu"

    try:
        loaded = ab.load_recipe(recipe)
        chosen = ab.with_overrides(
            loaded, epochs=epochs, max_train=max_train, max_val=max_val, img_size=img_size, batch_size=batch_size,
            seeds=seeds if seeds and seeds.startswith("auto") else int_list(seeds, "--seeds"), variants=names(variants) if variants else None,
            protocols=names(protocols) if protocols else None,
            measure_img_sizes=int_list(measure_img_sizes, "--measure-img-sizes"), repeats=repeats,
            data_root=data_root)
        resolve_device(device)
    except ExploreError as exc:
        raise fail(exc) from None
    table = Table("variant", "label", "changes", "MACs check", title=f"{chosen.title} ({chosen.path})")
    for v in chosen.variants:
        table.add_row(v.name + (" (baseline)" if v.baseline else ""), v.label, json.dumps(v.overrides) or "-",
                      f"match {chosen.match_field}" if chosen.match_field and not v.baseline else "")
    console.print(table)
    if dry_run:
        return
    folder = Path(out) if out else Path("runs") / safe_name(f"ablate-{chosen.name}")
    try:
        run = ab.run_recipe(chosen, folder, device=device, progress=lambda m: console.print(m, highlight=False),
                            remeasure=remeasure)
    except (ExploreError, NonFiniteLossError) as exc:
        raise fail(exc) from None
    summary, taus = ab.summarise(run)
    command = reproduce_line(ctx, ["explore", "ablate", recipe], leave_out=("dry_run",))
    paths = write_ablation_report(summary, run.measurements, folder, ab.report_meta(run, loaded), taus,
                                  ab.check_findings(run, summary), command)
    console.print(", ".join(f"{k} tau {v:.2f}" for k, v in taus.items()) or "no paper rows to rank")
    console.print(f"wrote {paths.markdown}, {paths.csv}, {paths.png}")


@app.command()
def importance(
    ctx: typer.Context,
    *,
    model: Annotated[str, typer.Option(help="Preset, config file (.json/.toml) or STUDY:TRIAL (e.g. runs/cga:3).")],
    dataset: DATASET.option("fashion_mnist") = None,
    data_root: DATA_ROOT.option() = None,
    target: Annotated[float, typer.Option(help="Fraction of the prunable params (or MACs, --by macs) to remove, in (0, 1).")] = 0.5,
    by: Annotated[str, typer.Option(help="params | macs: the cost targeted.")] = "params",
    rank: Annotated[str, typer.Option(help="per-cost (score / cost) | score (raw Taylor score): the global order.")] = "per-cost",
    img_size: Annotated[Optional[int], typer.Option(help="Input side; default 64 for presets, the config's own otherwise.")] = None,
    epochs: EPOCHS.option(1.0) = None,
    batch_size: BATCH_SIZE.option(128) = None,
    max_train: MAX_TRAIN.option(5000) = None,
    max_val: MAX_VAL.option(1000) = None,
    score_batches: Annotated[int, typer.Option(help="Training batches the Taylor scores are summed over.")] = 8,
    seed: SEED.option(0) = None,
    device: DEVICE.option("cpu") = None,
    checkpoint: Annotated[Optional[str], typer.Option(help="State dict to load instead of training.")] = None,
    save_checkpoint: Annotated[bool, typer.Option("--save-checkpoint", help="Write the trained weights to OUT/checkpoint.pt.")] = False,
    retrain: Annotated[bool, typer.Option(help="Train the suggested architecture for its top-1.")] = True,
    latency_repeats: Annotated[int, typer.Option(help="Timed runs per latency (CPU, batch 16, one thread).")] = 20,
    out: Annotated[Optional[str], typer.Option(help="Output folder; default runs/importance-<name>.")] = None,
    enqueue: Annotated[Optional[str], typer.Option(help="Study run folder to enqueue the suggested architecture into.")] = None,
    note: Annotated[Optional[str], typer.Option(
        help="A sentence on the run's context (e.g. 'machine shared, load average 1.7'): stored in importance.json "
             "and shown as the summary's closing paragraph.")] = None,
) -> None:
    """Taylor importance of QK / V / heads / FFN channels, global pruning, and a reallocated architecture
    (arXiv:2305.07027 §3.3, Fig. 5)."""
    from explore.analysis import importance as imp
    from explore.report import write_importance_report

    try:
        settings = imp.ImportanceSettings(
            model=model, target=target, by=by, rank=rank, img_size=img_size, score_batches=score_batches,
            checkpoint=checkpoint, save_checkpoint=save_checkpoint, retrain=retrain, latency_repeats=latency_repeats,
            out=out, enqueue=enqueue,
            **given(ctx, DATASET, DATA_ROOT, EPOCHS, BATCH_SIZE, MAX_TRAIN, MAX_VAL, SEED, DEVICE))
        prepared = imp.prepare_importance(settings)  # every check before anything is written
        result = imp.run_importance(settings, prepared, log=lambda line: console.print(line, highlight=False))
    except (ExploreError, NonFiniteLossError) as exc:
        raise fail(exc) from None
    paths = write_importance_report(result, prepared.out, imp.command_line(settings), note)
    checkpoint_path = imp.save_checkpoint(result, prepared.out)
    if checkpoint_path is not None:
        paths["checkpoint"] = checkpoint_path
    table = Table(*map(str, result.comparison.columns), title=f"{result.name}: original, pruned, suggested")
    for row in result.comparison.itertuples(index=False):
        table.add_row(*(f"{v:,}" if isinstance(v, int) else f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
    console.print(f"paper's trend (V > QK, FFN shrinks, more in later blocks): {result.trend['verdict']}")
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
    if result.enqueue_error is not None:
        raise fail(RuntimeError(f"not enqueued (the report is written): {result.enqueue_error}"))
