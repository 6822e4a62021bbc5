"""``explore validate-proxy``, ``explore ablate``, ``explore importance`` and ``explore acceptance``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from explore.cli.common import DataRootOpt, DatasetOpt, app, console, fail, int_list, names
from explore.errors import ExploreError, NonFiniteLossError
from explore.reproduce import command_line
from explore.resources import safe_name

__all__ = ["validate_proxy", "ablate", "importance", "acceptance"]


@app.command("validate-proxy")
def validate_proxy(
    *,
    space: Annotated[str, typer.Option(help="Space name or file to sample architectures from.")] = "cga",
    archs: Annotated[int, typer.Option(help="K: architectures to train with both budgets.")] = 12,
    short_epochs: Annotated[float, typer.Option(help="The proxy budget (epochs).")] = 1.0,
    long_epochs: Annotated[float, typer.Option(help="The reference budget (>= 5x short).")] = 5.0,
    dataset: DatasetOpt = "fashion_mnist",
    data_root: DataRootOpt = None,
    max_train: Annotated[int, typer.Option(help="Training images (0 = all).")] = 10000,
    max_val: Annotated[int, typer.Option(help="Held-out images (0 = all).")] = 2000,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 128,
    device: Annotated[str, typer.Option(help="cpu | cuda[:N]")] = "cpu",
    seed: Annotated[int, typer.Option(help="Sampling and training seed.")] = 0,
    out: Annotated[Optional[str], typer.Option(help="Output folder; default runs/validate-proxy-<space>.")] = None,
) -> None:
    """Rank agreement (Kendall tau, Spearman rho) of the short proxy against a >= 5x longer budget."""
    from explore.analysis import validate_proxy as run_validation
    from explore.report import write_validity_report

    def on_arch(row: dict) -> None:
        console.print(f"arch {row['arch']}: {row['summary']}  short {row['short_top1']:.2f}%  "
                      f"long {row['long_top1']:.2f}%  ({row['short_seconds']:.0f} s + {row['long_seconds']:.0f} s)",
                      highlight=False)

    try:
        result = run_validation(space, archs, dataset=dataset, data_root=data_root, max_train=max_train or None,
                                max_val=max_val or None, short_epochs=short_epochs, long_epochs=long_epochs,
                                batch_size=batch_size, device=device, seed=seed, on_arch=on_arch)
    except ExploreError as exc:
        raise fail(exc) from None
    command = command_line(["explore", "validate-proxy"], [
        ("--space", space), ("--archs", archs), ("--short-epochs", short_epochs), ("--long-epochs", long_epochs),
        ("--dataset", dataset), ("--max-train", max_train), ("--max-val", max_val), ("--batch-size", batch_size),
        ("--device", device), ("--seed", seed), ("--data-root", data_root or None), ("--out", out or None)])
    folder = Path(out) if out else Path("runs") / safe_name(f"validate-proxy-{Path(space).stem}")
    paths = write_validity_report(result, folder, command)
    console.print(f"Kendall tau {result.kendall_tau:.3f}, Spearman rho {result.spearman_rho:.3f} over {archs} "
                  f"architectures; wrote {', '.join(str(p) for p in paths)}")


@app.command()
def ablate(
    recipe: Annotated[str, typer.Argument(help="Recipe name (cga_table6, mit_ablation, ...) or file under studies/.")],
    *,
    out: Annotated[Optional[str], typer.Option(help="Run and report folder; default runs/ablate-<recipe>.")] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda[:N]: training device; CUDA also runs gpu-throughput.")] = "cpu",
    epochs: Annotated[Optional[float], typer.Option(help="Override the recipe's proxy epochs.")] = None,
    max_train: Annotated[Optional[int], typer.Option(help="Override the training subset size.")] = None,
    max_val: Annotated[Optional[int], typer.Option(help="Override the val subset size.")] = None,
    img_size: Annotated[Optional[int], typer.Option(help="Override the training resolution (pixels).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Override the training batch size.")] = None,
    seeds: Annotated[Optional[str], typer.Option(
        help="Override the seeds, e.g. 0,1,2 (>= 2), or auto[:MAX]: add seeds only to rows still undecided.")] = None,
    variants: Annotated[Optional[str], typer.Option(help="Run only these variants (comma-separated; include the baseline).")] = None,
    protocols: Annotated[Optional[str], typer.Option(help="Override the protocols, e.g. cpu-latency,onnx-cpu.")] = None,
    measure_img_sizes: Annotated[Optional[str], typer.Option(help="Override the measurement resolutions, e.g. 224.")] = None,
    repeats: Annotated[Optional[int], typer.Option(help="Override timed runs per measurement.")] = None,
    data_root: Annotated[Optional[str], typer.Option(help="Local data folder for the recipe's dataset.")] = None,
    remeasure: Annotated[bool, typer.Option(help="Measure latency again (e.g. on a now quiet machine); training rows are reused.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Validate the recipe and list its variants; run nothing.")] = False,
) -> None:
    """Run an ablation recipe: every variant's params, MACs, latency and proxy top-1 over seeds, and a
    report with the paper's numbers beside ours (Δ vs baseline, Kendall τ, verdicts)."""
    from explore.analysis import ablation as ab
    from explore.device import resolve_device
    from explore.report import write_ablation_report

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
    command = command_line(["explore", "ablate", recipe], [
        ("--device", device if device != "cpu" else None), ("--epochs", epochs), ("--max-train", max_train),
        ("--max-val", max_val), ("--img-size", img_size), ("--batch-size", batch_size), ("--seeds", seeds),
        ("--variants", variants), ("--protocols", protocols), ("--measure-img-sizes", measure_img_sizes),
        ("--repeats", repeats), ("--data-root", data_root), ("--out", out), ("--remeasure", remeasure)])
    paths = write_ablation_report(summary, run.measurements, folder, ab.report_meta(run, loaded), taus,
                                  ab.check_findings(run, summary), command)
    console.print(", ".join(f"{k} tau {v:.2f}" for k, v in taus.items()) or "no paper rows to rank")
    console.print(f"wrote {paths.markdown}, {paths.csv}, {paths.png}")


@app.command()
def importance(
    *,
    model: Annotated[str, typer.Option(help="Preset, config file (.json/.toml) or STUDY:TRIAL (e.g. runs/cga:3).")],
    dataset: DatasetOpt = "fashion_mnist",
    data_root: DataRootOpt = None,
    target: Annotated[float, typer.Option(help="Fraction of the prunable params (or MACs, --by macs) to remove, in (0, 1).")] = 0.5,
    by: Annotated[str, typer.Option(help="params | macs: the cost targeted.")] = "params",
    rank: Annotated[str, typer.Option(help="per-cost (score / cost) | score (raw Taylor score): the global order.")] = "per-cost",
    img_size: Annotated[Optional[int], typer.Option(help="Input side; default 64 for presets, the config's own otherwise.")] = None,
    epochs: Annotated[float, typer.Option(help="Proxy training epochs (original and suggested).")] = 1.0,
    batch_size: Annotated[int, typer.Option(help="Training and scoring batch size.")] = 128,
    max_train: Annotated[int, typer.Option(help="Training images (random subset; 0 = all).")] = 5000,
    max_val: Annotated[int, typer.Option(help="Held-out images for top-1 (0 = all).")] = 1000,
    score_batches: Annotated[int, typer.Option(help="Training batches the Taylor scores are summed over.")] = 8,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N (training and scoring).")] = "cpu",
    checkpoint: Annotated[Optional[str], typer.Option(help="State dict to load instead of training.")] = None,
    save_checkpoint: Annotated[bool, typer.Option("--save-checkpoint", help="Write the trained weights to OUT/checkpoint.pt.")] = False,
    retrain: Annotated[bool, typer.Option(help="Train the suggested architecture for its top-1.")] = True,
    latency_repeats: Annotated[int, typer.Option(help="Timed runs per latency (CPU, batch 16, one thread).")] = 20,
    out: Annotated[Optional[str], typer.Option(help="Output folder; default runs/importance-<name>.")] = None,
    enqueue: Annotated[Optional[str], typer.Option(help="Study run folder to enqueue the suggested architecture into.")] = None,
) -> None:
    """Taylor importance of QK / V / heads / FFN channels, global pruning, and a reallocated architecture
    (arXiv:2305.07027 §3.3, Fig. 5)."""
    from explore.analysis import importance as imp
    from explore.report import write_importance_report

    try:
        settings = imp.ImportanceSettings(
            model=model, dataset=dataset, data_root=data_root, target=target, by=by, rank=rank, img_size=img_size,
            epochs=epochs, batch_size=batch_size, max_train=max_train or None, max_val=max_val or None,
            score_batches=score_batches, seed=seed, device=device, checkpoint=checkpoint,
            save_checkpoint=save_checkpoint, retrain=retrain, latency_repeats=latency_repeats, out=out, enqueue=enqueue)
        prepared = imp.prepare_importance(settings)  # every check before anything is written
        result = imp.run_importance(settings, prepared, log=lambda line: console.print(line, highlight=False))
    except (ExploreError, NonFiniteLossError) as exc:
        raise fail(exc) from None
    paths = write_importance_report(result, prepared.out, imp.command_line(settings))
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


@app.command()
def acceptance(
    *,
    device: Annotated[str, typer.Option(help="cuda | cuda:N | cpu: the device whose paths to check.")] = "cuda",
    out: Annotated[Optional[str], typer.Option(help="Report folder; default runs/acceptance_<device>.")] = None,
    budget_s: Annotated[Optional[float], typer.Option(help="Time budget for all checks (s).")] = None,
    only: Annotated[Optional[str], typer.Option(help="Comma-separated check names (study, bench-throughput, ...).")] = None,
) -> None:
    """Run every path of a device for real (bench vs timm in every mode, a study, validate-proxy, an ablation,
    the proxy benchmark, peak memory and out-of-memory halving on CUDA) and write one report; exit 1 on a failure."""
    from explore.cli.acceptance import run_acceptance
    from explore.report import write_acceptance_report

    folder = out or f"runs/acceptance_{device.replace(':', '')}"
    try:
        run = run_acceptance(device, folder, budget_s=budget_s, only=names(only) if only else None,
                             echo=lambda line: print(line, flush=True))
    except ExploreError as exc:
        raise fail(exc) from None
    path = write_acceptance_report(run)
    print(f"acceptance {'FAILED' if run.failed else 'PASSED'}: {len(run.results) - run.failed} of {len(run.results)} "
          f"checks passed or skipped in {run.wall_s:.0f} s; report {path}", flush=True)
    if run.failed:
        raise typer.Exit(code=1)
