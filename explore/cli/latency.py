"""``explore latency-table``: measure a space's units on the target device, or evaluate a table's predictor."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from explore.cli.common import app, console, err_console, fail, run_or_exit
from explore.cli.options import DEVICE, SEED, reproduce_line
from explore.errors import ExploreError

__all__ = ["latency_table"]


@app.command("latency-table")
def latency_table(
    ctx: typer.Context,
    *,
    space: Annotated[Optional[str], typer.Option(help="Space name (cga, msla, hybrid) or file, to build a table.")] = None,
    protocol: Annotated[str, typer.Option(help="cpu-latency | onnx-cpu | gpu-throughput | gpu-latency")] = "cpu-latency",
    mode: Annotated[Optional[str], typer.Option(
        help="eager | fused | compile | cuda-graph (default: fused on CPU, cuda-graph on CUDA, as a study).")] = None,
    device: DEVICE.option("the protocol's") = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Override the protocol's batch.")] = None,
    repeats: Annotated[Optional[int], typer.Option(help="Timed runs per measurement (default: the protocol's).")] = None,
    latency_figure: Annotated[Optional[str], typer.Option(
        help="normalised (CPU default: every entry paired with a reference model, the table keeps its calibration) "
             "| raw (as timed; CUDA: always).")] = None,
    archs: Annotated[Optional[int], typer.Option(
        help="Architectures sampled from the space, their units measured (default 100); with --evaluate: "
             "held-out ones (default 30).")] = None,
    calibration: Annotated[int, typer.Option(help="Sampled architectures also measured whole.")] = 30,
    in_chans: Annotated[int, typer.Option(help="Input channels of the models (Fashion-MNIST: 1).")] = 1,
    num_classes: Annotated[int, typer.Option(help="Classes of the models (Fashion-MNIST: 10).")] = 10,
    seed: SEED.option("0; --evaluate: 1000, away from the table's own architectures") = None,
    out: Annotated[Optional[str], typer.Option(
        help="The table file to write or resume (build), or the report folder (--evaluate).")] = None,
    evaluate: Annotated[Optional[str], typer.Option(
        help="A table file: measure --archs held-out architectures here and compare with its predictor.")] = None,
    regressor: Annotated[Optional[str], typer.Option(
        help="linear | trees (default: the lower calibration error).")] = None,
    rounds: Annotated[int, typer.Option(
        help="Interleaved measurement rounds of every entry / held-out architecture (the fastest counts).")] = 3,
    study: Annotated[Optional[str], typer.Option(
        help="With --evaluate: measure this study's complete trials (a run folder) instead of a sample.")] = None,
    note: Annotated[Optional[str], typer.Option(
        help="With --evaluate: a sentence on the run's context (the machine's load, earlier evaluations of the "
             "table), stored in evaluation.json and shown in the report.")] = None,
) -> None:
    """Build a latency table of a space's units on this device (resumable), or evaluate one."""
    from explore.measure import get_protocol

    if evaluate is not None:
        _evaluate(ctx, evaluate, archs or 30, 1000 if seed is None else seed, regressor, out, rounds, study, note)
        return
    if note is not None:
        raise fail(ExploreError("--note", note, "a note of an --evaluate run (a table stores none)"))
    if space is None or out is None:
        raise fail(ExploreError("--space", space, "a space and --out table.json (or --evaluate table.json)"))
    if not out.endswith(".json"):
        raise fail(ExploreError("--out", out, "a .json file for the table"))
    from explore.measure.latency_table_jobs import build_table
    from explore.search.settings import DEFAULT_LATENCY_MODE, LATENCY_WARMUP

    try:
        base = get_protocol(protocol)
        dev = device or base.device
        chosen = get_protocol(protocol, device=dev, batch_size=batch_size, repeats=repeats,
                              warmup=min(base.warmup, LATENCY_WARMUP) if base.device == "cpu" else None,
                              mode=mode or DEFAULT_LATENCY_MODE["cuda" if dev.startswith("cuda") else "cpu"],
                              figure=latency_figure)
    except ExploreError as exc:
        raise fail(exc) from None
    console.print(f"latency table of {space} · {chosen.name} {chosen.mode} batch {chosen.batch_size} on {dev} · "
                  f"{archs or 100} architectures, {calibration} measured whole -> {out}", highlight=False)
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("measuring", total=None)

        def on_progress(what: str, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, description=what[:48])

        table = run_or_exit(lambda: build_table(space, chosen, out, archs=archs or 100, calibration=calibration,
                                                in_chans=in_chans, num_classes=num_classes, seed=seed or 0, rounds=rounds,
                                                on_progress=on_progress),
                            f"{out} keeps what was measured; run the same command again to go on")
    console.print(f"wrote {out}: {len(table.units)} units, {len(table.models)} calibration models", highlight=False)


def _evaluate(ctx: typer.Context, path: str, archs: int, seed: int, regressor: Optional[str], out: Optional[str],
              rounds: int, study: Optional[str], note: Optional[str] = None) -> None:
    from explore.arch import ArchConfig
    from explore.measure.latency_table_jobs import evaluate_table
    from explore.records import TrialRecord
    from explore.report.latency_table import write_table_evaluation
    from explore.search import open_study

    configs, numbers = None, []
    if study is not None:
        try:
            trials = [t for t in open_study(study).get_trials(deepcopy=False)
                      if t.state.name == "COMPLETE" and TrialRecord.of(t).config]
        except ExploreError as exc:
            raise fail(ExploreError("--study", study, exc.expected)) from None
        configs = [ArchConfig.from_json(TrialRecord.of(t).config) for t in trials]
        numbers = [t.number for t in trials]

    def on_arch(row: dict) -> None:
        console.print(f"#{row['arch']} measured {row['measured (ms/img)']:.4f} predicted {row['predicted (ms/img)']:.4f} "
                      f"ms/img ({row['error (%)']:+.1f} %)  MACs fit {row['MACs error (%)']:+.1f} %", highlight=False)

    try:
        result = evaluate_table(path, archs, seed=seed, regressor=regressor, rounds=rounds, configs=configs,
                                on_arch=on_arch)
    except ExploreError as exc:
        raise fail(exc) from None
    if study is not None:
        result.meta.update(study=study, trials=numbers)
        result.meta["settings"]["study"] = study
    if note is not None:
        result.meta["note"] = note
    for difference in result.differences:
        err_console.print(f"warning: measured elsewhere: {difference}", highlight=False)
    s, m = result.stats["predictor"], result.stats["macs"]
    console.print(f"latency table ({result.regressor}): MAPE {s['mape']:.2f} %, within ±10 % {s['within_10']:.1f} %, "
                  f"Kendall τ {s['kendall_tau']:.3f} · MACs: MAPE {m['mape']:.2f} %, within ±10 % "
                  f"{m['within_10']:.1f} %, τ {m['kendall_tau']:.3f}", highlight=False)
    if out is not None:
        command = reproduce_line(ctx, ["explore", "latency-table"])
        md = write_table_evaluation(result.rows, result.stats, result.regressor, result.choice, result.differences,
                                    result.meta, Path(out), command, calibration=result.calibration,
                                    correction=result.correction)
        console.print(f"wrote {md}", highlight=False)
