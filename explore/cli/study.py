"""``explore study`` and ``explore report``: run or resume a study; write its report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from explore.cli.common import app, console, err_console, fail, float_list, int_list, run_or_exit
from explore.cli.options import (BATCH_SIZE, BUDGET, DATA_ROOT, DATASET, DEVICE, EPOCHS, MAX_TRAIN, MAX_VAL, SEED,
                                 STORAGE, given)
from explore.errors import ExploreError
from explore.reproduce import command_line
from explore.resources import display_path, safe_name

__all__ = ["study", "run_study_command", "report", "write_study_report"]


def write_study_report(study_ref: str, storage: Optional[str], out_dir: Path,
                       front_seeds: Optional[int] = None):  # noqa: ANN201 - ReportPaths
    """Write the report of a stored study (``trials.csv``, ``pareto.png``, ``summary.md``, and the
    front's common-seed runs where the study stores any: ``front_seeds.csv`` computed from the rows
    of ``front_seed_runs.csv``) with the ``explore report`` command that remakes it (password
    masked; ``--front-seeds`` where it was given)."""
    from explore.report import write_report
    from explore.search import mask_password, open_study, study_meta, trials_frame
    from explore.search.front_seeds import front_runs_table, front_table, runs_of_table
    from explore.search.inherited import supernet_front_runs, supernet_front_table

    study_obj = open_study(study_ref, storage)
    command = command_line(["explore", "report", study_ref],
                           [("--storage", mask_password(storage) if storage else None), ("--out", str(out_dir)),
                            ("--front-seeds", front_seeds)])
    frame = trials_frame(study_obj)
    runs_table = front_runs_table(study_obj)  # written beside the front table: its figures come from these rows
    runs = runs_of_table(runs_table)
    front = front_table(frame, runs) if runs and len(study_obj.directions) > 1 else None
    alone = supernet_front_runs(study_obj)
    supernet_front = supernet_front_table(frame, alone) if alone else None
    return write_report(frame, out_dir, study_meta(study_obj), command, front, supernet_front,
                        front_seed_runs=runs_table)


def _print_pareto(frame, metric: str = "top-1 (%)") -> None:  # noqa: ANN001 - DataFrame
    from explore.report import pareto_table

    table = pareto_table(frame, metric)
    out = Table(title="Pareto front")
    for col in table.columns:
        out.add_column(str(col))
    for row in table.itertuples(index=False):
        out.add_row(*(str(v) for v in row))
    console.print(out)


@app.command()
def study(
    ctx: typer.Context,
    *,
    space: Annotated[str, typer.Option(help="Space name (cga) or path to a space TOML file.")] = "cga",
    trials: Annotated[int, typer.Option(
        help="COMPLETE trials to reach (pruned ones don't count); with --schedule sha|hyperband: architectures started.")] = 8,
    study_name: Annotated[Optional[str], typer.Option(help="Study name; default: the space's name.")] = None,
    storage: STORAGE.option() = None,
    out: Annotated[str, typer.Option(help="Parent folder of run folders.")] = "runs",
    workers: Annotated[int, typer.Option(help="Worker processes on this machine sharing the study.")] = 1,
    devices: Annotated[Optional[str], typer.Option(
        help="CUDA devices of the workers, e.g. 0,1,2,3: worker i uses cuda:<i-th, round-robin>.")] = None,
    dataset: DATASET.option("fashion_mnist; segmentation: fashion_scenes") = None,
    data_root: DATA_ROOT.option() = None,
    device: DEVICE.option("cpu") = None,
    seed: SEED.option(0) = None,
    sampler: Annotated[str, typer.Option(help="tpe | nsga2 | random")] = "tpe",
    epochs: EPOCHS.option("2, or the last of --rungs") = None,
    batch_size: BATCH_SIZE.option("128; segmentation: 16") = None,
    max_train: MAX_TRAIN.option("10000; segmentation: 1000") = None,
    max_val: MAX_VAL.option("2000; segmentation: 200") = None,
    latency_batch: Annotated[int, typer.Option(help="Latency batch (0 = the protocol's: 16 on CPU, 2048 on CUDA).")] = 0,
    latency_mode: Annotated[Optional[str], typer.Option(
        help="Latency mode: eager | fused | compile | cuda-graph; default fused on cpu, cuda-graph on cuda.")] = None,
    latency_figure: Annotated[Optional[str], typer.Option(
        help="Latency figure that ranks: normalised (CPU default: paired with a reference model, robust to a "
             "shared machine) | raw (as timed; CUDA: always).")] = None,
    objective: Annotated[str, typer.Option(help="pareto (top-1 and latency) | top1 (one objective, median pruner).")] = "pareto",
    latency_threads: Annotated[int, typer.Option(help="CPU threads for latency (paper: 1; 0 = torch default).")] = 1,
    latency_repeats: Annotated[int, typer.Option(help="Timed runs of the latency measurement (median).")] = 20,
    heartbeat_interval: Annotated[int, typer.Option(
        hidden=True, help="Seconds between trial heartbeats; a trial is stale after 3x that.")] = 10,
    report: Annotated[bool, typer.Option(help="Write the report into <run>/report at the end.")] = True,
    train_threads: Annotated[int, typer.Option(
        help="CPU threads of proxy training (0 = the cores this process may use, shared by the workers).")] = 0,
    train_threads_from_load: Annotated[bool, typer.Option(
        help="With --train-threads 0: the cores free at each trial's start instead (faster beside other jobs; "
             "top-1 then depends on the load).")] = False,
    remeasure_front: Annotated[bool, typer.Option(
        help="At the end, measure every complete trial's latency again, 3 interleaved rounds (the front uses the lowest figure).")] = True,
    latency_table: Annotated[Optional[str], typer.Option(
        help="Optimise the latency a table (explore latency-table) predicts for its device; nothing is timed here.")] = None,
    max_latency_ms: Annotated[Optional[float], typer.Option(
        help="Latency budget (ms/img; predicted with --latency-table, else measured): trials over it are pruned "
             "before training, and TPE / NSGA-II treat it as a constraint.")] = None,
    schedule: Annotated[str, typer.Option(
        help="full (every architecture trained --epochs) | sha (asynchronous successive halving) | hyperband.")] = "full",
    rungs: Annotated[Optional[str], typer.Option(
        help="Rungs of sha / hyperband in cumulative epochs, e.g. 0.5,1,2 (the last = --epochs); "
             "default --epochs/eta^2, --epochs/eta, --epochs.")] = None,
    eta: Annotated[int, typer.Option(help="sha / hyperband: about one job in eta is promoted at each rung.")] = 3,
    task: Annotated[str, typer.Option(
        help="classification (top-1) | segmentation (mIoU, MIT head; default data: fashion_scenes).")] = "classification",
    seg_size: Annotated[int, typer.Option(help="Segmentation: scene side and model input, pixels.")] = 128,
    seg_head_width: Annotated[int, typer.Option(help="Segmentation: the MIT head's width.")] = 32,
    seg_head_depth: Annotated[int, typer.Option(help="Segmentation: the MIT head's MBConv layers.")] = 2,
    supernet: Annotated[Optional[str], typer.Option(
        help="Supernet folder (explore supernet train --out) of the same space: score trials by inherited top-1 "
             "after BN recalibration (no training); the final front is then trained on its own.")] = None,
    recalibration_images: Annotated[int, typer.Option(
        help="With --supernet: training images each trial's BN statistics are recalibrated on.")] = 2000,
) -> None:
    """Run (or resume) a multi-objective study: maximise proxy top-1, minimise latency."""
    from explore.search import StudySettings

    rung_list = float_list(rungs, "--rungs")
    settings = StudySettings.for_task(
        space=space, study_name=study_name, trials=trials, out=out, workers=workers,
        devices=tuple(int_list(devices, "--devices")) if devices else None, sampler=sampler,
        latency_batch=latency_batch or None, latency_mode=latency_mode, latency_figure=latency_figure,
        objective=objective,
        latency_threads=latency_threads or None, latency_repeats=latency_repeats, heartbeat_s=heartbeat_interval,
        remeasure_front=remeasure_front, train_threads=train_threads or None,
        train_threads_from_load=train_threads_from_load, latency_table=latency_table,
        max_latency_ms=max_latency_ms, schedule=schedule, rungs=tuple(rung_list) if rung_list else None, eta=eta,
        task=task, seg_size=seg_size, seg_head_width=seg_head_width, seg_head_depth=seg_head_depth,
        supernet=supernet, recalibration_images=recalibration_images, **given(ctx, STORAGE, *BUDGET))
    run_study_command(settings, report=report)


def run_study_command(settings, *, report: bool = True) -> None:  # noqa: ANN001 - StudySettings
    """What ``explore study`` does with its settings: check them (one ``error:`` line, nothing
    written), run the study with a progress bar and a line per trial, print the summary and the
    Pareto front, and write the report.

    Raises:
        typer.Exit: code 1 after the ``error:`` line for bad settings, or when workers failed and the
            study ended short; 130 on Ctrl-C.
    """
    prepared = run_or_exit(lambda: _prepare(settings), "nothing was written")
    console.print(_header(settings, prepared), highlight=False)
    summary = _run_with_progress(settings, prepared)
    _print_summary(settings, summary)
    if report:
        ref = str(settings.run_dir) if settings.storage is None else settings.study_name
        paths = write_study_report(ref, settings.storage, settings.run_dir / "report")
        console.print(f"report: {paths.markdown}, {paths.png}, {paths.csv}")
    if summary.architectures < settings.trials and summary.workers_failed:
        raise typer.Exit(code=1)


def _prepare(settings):  # noqa: ANN001, ANN202 - StudySettings -> (SearchSpace, device)
    """Every check before anything is written; warns when a latency table was measured elsewhere."""
    from explore.search import prepare_study

    prepared = prepare_study(settings)
    if settings.latency_table is not None:
        from explore.measure.latency_table import LatencyTable, table_differences

        table = LatencyTable.load(settings.latency_table)
        for difference in table_differences(table, settings.latency_protocol(), prepared[1]):
            err_console.print(f"warning: the latency table was measured elsewhere: {difference}; the study "
                              f"optimises the table's device ({table.device_name})", highlight=False)
    return prepared


def _header(settings, prepared) -> str:  # noqa: ANN001 - StudySettings, (SearchSpace, device)
    """The study's first line: name, space, data, device, target and schedule."""
    space, device = prepared
    target = ("complete trials" if settings.schedule == "full" else
              f"architectures · {settings.schedule}, rungs {', '.join(f'{r:g}' for r in settings.plan.rungs)} "
              f"epochs, eta {settings.eta}")
    return (f"study [bold]{settings.study_name}[/] · space {space.name} ({display_path(space.path, 'search_spaces')}) · "
            f"{settings.dataset} · device {device} · target {settings.trials} {target}"
            + (f" · {settings.workers} workers" if settings.workers > 1 else "")
            + (f" · inherited top-1 from supernet {settings.supernet}" if settings.supernet else ""))


def trial_line(settings, study, trial) -> str:  # noqa: ANN001 - StudySettings, Study, FrozenTrial
    """One line per finished trial: its accuracy, latency and params, or why it did not complete
    (:func:`explore.search.results.state_reason`: never empty)."""
    from explore.records import TrialRecord
    from explore.report import accuracy_name
    from explore.report.common import sig3
    from explore.search.results import state_reason

    record = TrialRecord.of(trial)
    if trial.state.name != "COMPLETE":
        return f"#{trial.number} {trial.state.name}: {state_reason(study, trial)}"
    cached = " (cached)" if record.latency_cached else ""
    latency_ms = float("nan") if record.latency_ms_per_img is None else record.latency_ms_per_img
    where = "" if record.rung is None else (f" rung {record.rung} ({settings.plan.rungs[record.rung]:g} ep) of "
                                            f"arch #{record.arch_trial}")
    source = " (inherited)" if record.attrs.get("top1_source") == "inherited" else ""
    return (f"#{trial.number}{where} {accuracy_name(settings.task)} {trial.values[0]:.2f}%{source}  latency {sig3(latency_ms)} "
            f"ms/img{cached}  params {(record.params or 0) / 1e6:.2f}M")


def _run_with_progress(settings, prepared):  # noqa: ANN001, ANN202 - StudySettings -> StudySummary
    """Run the study under a progress bar of COMPLETE architectures, a line per finished trial."""
    from explore.report import dataset_line
    from explore.search import run_study
    from explore.search.schedule import is_promotion

    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        bar = progress.add_task("trials", total=settings.trials)

        def on_trial(study_obj, trial) -> None:  # noqa: ANN001 - optuna types
            done = sum(1 for t in study_obj.get_trials(deepcopy=False) if t.state.name == "COMPLETE"
                       and not is_promotion(t))
            progress.update(bar, completed=min(done, settings.trials))
            progress.console.print(trial_line(settings, study_obj, trial), highlight=False, soft_wrap=True)

        def on_data(info: dict) -> None:
            progress.console.print(f"data: {escape(dataset_line(info))}", highlight=False, soft_wrap=True)

        def on_remeasure(number: int, first: float, again: float) -> None:
            from explore.report.common import sig3

            progress.console.print(f"#{number} latency measured again: {sig3(first)} -> {sig3(again)} ms/img "
                                   f"({(again / first - 1) * 100:+.1f} %)", highlight=False)

        def on_front_run(number: int, alone: float, inherited: float, seconds: float) -> None:
            progress.console.print(f"front #{number} trained on its own: top-1 {alone:.2f}% (inherited {inherited:.2f}%, "
                                   f"{seconds:.0f} s training)", highlight=False)

        summary = run_or_exit(lambda: run_study(settings, on_trial=on_trial, prepared=prepared, on_data=on_data,
                                                on_remeasure=on_remeasure, on_front_run=on_front_run),
                              "the running trial is marked FAIL; run the same command again to resume")
        progress.update(bar, completed=min(summary.architectures, settings.trials))
    return summary


def _print_summary(settings, summary) -> None:  # noqa: ANN001 - StudySettings, StudySummary
    """The counts, the warnings of a run that ended short, and the Pareto front."""
    from explore.report import metric_label
    from explore.search import open_study, trials_frame

    extra = f"; {summary.running} still running" if summary.running else ""
    console.print(f"done: {summary.complete} complete, {summary.pruned} pruned, {summary.failed} failed{extra}; "
                  f"this run {summary.wall_seconds:.1f} s; storage {summary.storage}", highlight=False, soft_wrap=True)
    if summary.workers_failed:
        err_console.print(f"warning: {summary.workers_failed} of {summary.workers} workers exited abnormally; "
                          "their trials are retried once their heartbeat is stale", highlight=False)
    if summary.note:
        err_console.print(f"warning: {summary.architectures} of {settings.trials} trials complete: {summary.note}",
                          highlight=False)
    elif summary.architectures < settings.trials:
        err_console.print(f"warning: {summary.architectures} of {settings.trials} trials complete; run the same "
                          "command again to go on", highlight=False)
    _print_pareto(trials_frame(open_study(settings.study_name, settings.storage_url)), metric_label({"task": settings.task, "supernet": settings.supernet}))


@app.command()
def report(
    study: Annotated[str, typer.Argument(help="Run folder (runs/cga), or a study name with --storage.")],
    *,
    storage: STORAGE.option() = None,
    out: Annotated[Optional[str], typer.Option(help="Output folder; default <run>/report or reports/<name>.")] = None,
    front_seeds: Annotated[Optional[int], typer.Option(
        help="Re-train every Pareto-front member with this many common seeds (stored runs count; >= 2) and mark "
             "which members are distinguishable.")] = None,
    device: DEVICE.option("cpu") = None,
    train_threads: Annotated[int, typer.Option(
        help="CPU threads of --front-seeds training (0 = the study's setting, else torch's default).")] = 0,
) -> None:
    """Write a Pareto-front plot (PNG), all trials (CSV) and a markdown summary of the Pareto set;
    with ``--front-seeds N``, first re-train the front with N common seeds (resumable)."""
    device = device or "cpu"
    from explore.device import resolve_device
    from explore.search import open_study
    from explore.search.front_seeds import retrain_front

    try:
        study_obj = open_study(study, storage)  # validates before writing
        if front_seeds is not None:
            resolve_device(device)
    except ExploreError as exc:
        raise fail(exc) from None
    if front_seeds is not None:
        def on_run(number: int, index: int, top1: float, seconds: float) -> None:
            console.print(f"front #{number} seed {index}: top-1 {top1:.2f}%  ({seconds:.0f} s training)",
                          highlight=False)

        trained = run_or_exit(lambda: retrain_front(study_obj, front_seeds, device=device,
                                                    threads=train_threads or None, on_run=on_run),
                              "the runs that ended are stored; run the same command again to go on")
        console.print(f"front seeds: {trained} new runs", highlight=False)
    if out is not None:
        out_dir = Path(out)
    elif storage is None:
        out_dir = Path(study) / "report"
    else:
        out_dir = Path("reports") / safe_name(study_obj.study_name)
    paths = write_study_report(study, storage, out_dir, front_seeds)
    console.print(f"wrote {paths.markdown}\nwrote {paths.png}\nwrote {paths.csv}"
                  + (f"\nwrote {paths.front_csv}\nwrote {paths.front_runs_csv}\nwrote {paths.front_png}"
                     if paths.front_csv else ""))
