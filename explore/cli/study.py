"""``explore study`` and ``explore report``: run or resume a study; write its report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from explore.cli.common import (DataRootOpt, DatasetOpt, StorageOpt, app, console, err_console, fail, float_list,
                                 int_list, run_or_exit)
from explore.errors import ExploreError
from explore.reproduce import command_line
from explore.resources import display_path, safe_name

__all__ = ["study", "report", "write_study_report"]


def write_study_report(study_ref: str, storage: Optional[str], out_dir: Path,
                       front_seeds: Optional[int] = None):  # noqa: ANN201 - ReportPaths
    """Write the report of a stored study (``trials.csv``, ``pareto.png``, ``summary.md``, and the
    front's common-seed runs where the study stores any) with the ``explore report`` command that
    remakes it (password masked; ``--front-seeds`` where it was given)."""
    from explore.report import write_report
    from explore.search import mask_password, open_study, study_meta, trials_frame
    from explore.search.front_seeds import front_runs, front_table

    study_obj = open_study(study_ref, storage)
    command = command_line(["explore", "report", study_ref],
                           [("--storage", mask_password(storage) if storage else None), ("--out", str(out_dir)),
                            ("--front-seeds", front_seeds)])
    frame = trials_frame(study_obj)
    runs = front_runs(study_obj)
    front = front_table(frame, runs) if runs and len(study_obj.directions) > 1 else None
    return write_report(frame, out_dir, study_meta(study_obj), command, front)


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
    *,
    space: Annotated[str, typer.Option(help="Space name (cga) or path to a space TOML file.")] = "cga",
    trials: Annotated[int, typer.Option(
        help="COMPLETE trials to reach (pruned ones don't count); with --schedule sha|hyperband: architectures started.")] = 8,
    study_name: Annotated[Optional[str], typer.Option(help="Study name; default: the space's name.")] = None,
    storage: StorageOpt = None,
    out: Annotated[str, typer.Option(help="Parent folder of run folders.")] = "runs",
    workers: Annotated[int, typer.Option(help="Worker processes on this machine sharing the study.")] = 1,
    devices: Annotated[Optional[str], typer.Option(
        help="CUDA devices of the workers, e.g. 0,1,2,3: worker i uses cuda:<i-th, round-robin>.")] = None,
    dataset: DatasetOpt = "fashion_mnist",
    data_root: DataRootOpt = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N (training and latency).")] = "cpu",
    seed: Annotated[int, typer.Option(help="Sampler seed; trial k trains with seed+k.")] = 0,
    sampler: Annotated[str, typer.Option(help="tpe | nsga2 | random")] = "tpe",
    epochs: Annotated[Optional[float], typer.Option(
        help="Proxy training epochs (fractions allowed); default 2, or the last of --rungs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        help="Proxy training batch size (default 128; segmentation 16).")] = None,
    max_train: Annotated[Optional[int], typer.Option(
        help="Training images used (random subset; 0 = all; default 10000); segmentation: scenes (default 1000).")] = None,
    max_val: Annotated[Optional[int], typer.Option(
        help="Held-out images for top-1 (0 = all; default 2000); segmentation: scenes (default 200).")] = None,
    latency_batch: Annotated[int, typer.Option(help="Latency batch (0 = the protocol's: 16 on CPU, 2048 on CUDA).")] = 0,
    latency_mode: Annotated[Optional[str], typer.Option(
        help="Latency mode: eager | fused | compile | cuda-graph; default fused on cpu, cuda-graph on cuda.")] = None,
    objective: Annotated[str, typer.Option(help="pareto (top-1 and latency) | top1 (one objective, median pruner).")] = "pareto",
    latency_threads: Annotated[int, typer.Option(help="CPU threads for latency (paper: 1; 0 = torch default).")] = 1,
    latency_repeats: Annotated[int, typer.Option(help="Timed runs of the latency measurement (median).")] = 20,
    heartbeat_interval: Annotated[int, typer.Option(
        hidden=True, help="Seconds between trial heartbeats; a trial is stale after 3x that.")] = 10,
    report: Annotated[bool, typer.Option(help="Write the report into <run>/report at the end.")] = True,
    train_threads: Annotated[int, typer.Option(
        help="CPU threads of proxy training (0 = the cores free at each trial's start).")] = 0,
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
) -> None:
    """Run (or resume) a multi-objective study: maximise proxy top-1, minimise latency."""
    from explore.report import accuracy_name, dataset_line, metric_label
    from explore.search import StudySettings, open_study, prepare_study, run_study, trials_frame
    from explore.records import TrialRecord
    from explore.search.schedule import is_promotion

    segmentation = task == "segmentation"
    if segmentation and dataset == "fashion_mnist":
        dataset = "fashion_scenes"  # the task's built-in data
    if max_train is None:
        max_train = 1000 if segmentation else 10000
    if max_val is None:
        max_val = 200 if segmentation else 2000
    if batch_size is None:
        batch_size = 16 if segmentation else 128
    rung_list = float_list(rungs, "--rungs")
    if epochs is None:
        epochs = rung_list[-1] if rung_list else 2.0
    try:
        settings = StudySettings(
            space=space, study_name=study_name or Path(space).stem, trials=trials, out=out, storage=storage,
            dataset=dataset, data_root=data_root, max_train=max_train or None, max_val=max_val or None, device=device,
            seed=seed, sampler=sampler, epochs=epochs, batch_size=batch_size, latency_batch=latency_batch or None,
            latency_mode=latency_mode, objective=objective, latency_threads=latency_threads or None,
            latency_repeats=latency_repeats,
            workers=workers, devices=tuple(int_list(devices, "--devices")) if devices else None,
            heartbeat_s=heartbeat_interval, remeasure_front=remeasure_front,
            train_threads=train_threads or None, latency_table=latency_table, max_latency_ms=max_latency_ms,
            schedule=schedule, rungs=tuple(rung_list) if rung_list else None, eta=eta, task=task, seg_size=seg_size,
            seg_head_width=seg_head_width, seg_head_depth=seg_head_depth,
        )
        prepared = prepare_study(settings)  # every check before anything is written
        if latency_table is not None:
            from explore.measure.latency_table import LatencyTable, table_differences

            table = LatencyTable.load(latency_table)
            for difference in table_differences(table, settings.latency_protocol(), prepared[1]):
                err_console.print(f"warning: the latency table was measured elsewhere: {difference}; the study "
                                  f"optimises the table's device ({table.device_name})", highlight=False)
    except ExploreError as exc:
        raise fail(exc) from None

    console.print(f"study [bold]{settings.study_name}[/] · space {prepared[0].name} "
                  f"({display_path(prepared[0].path, 'search_spaces')}) · "
                  f"{dataset} · device {prepared[1]} · target {trials} "
                  + ("complete trials" if schedule == "full" else
                     f"architectures · {schedule}, rungs {', '.join(f'{r:g}' for r in settings.plan.rungs)} epochs, "
                     f"eta {eta}")
                  + (f" · {workers} workers" if workers > 1 else ""), highlight=False)
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("trials", total=trials)

        def on_trial(study_obj, trial) -> None:  # noqa: ANN001 - optuna types
            done = sum(1 for t in study_obj.get_trials(deepcopy=False) if t.state.name == "COMPLETE"
                       and not is_promotion(t))
            progress.update(task, completed=min(done, trials))
            record = TrialRecord.of(trial)
            if trial.state.name == "COMPLETE":
                cached = " (cached)" if record.latency_cached else ""
                latency_ms = float("nan") if record.latency_ms_per_img is None else record.latency_ms_per_img
                rung = record.rung
                where = "" if rung is None else (f" rung {rung} ({settings.plan.rungs[rung]:g} ep) of "
                                                 f"arch #{record.arch_trial}")
                text = (f"#{trial.number}{where} {accuracy_name(settings.task)} {trial.values[0]:.2f}%  latency {latency_ms:.3f} ms/img{cached}  "
                        f"params {(record.params or 0) / 1e6:.2f}M")
            else:
                text = f"#{trial.number} {trial.state.name}: {record.reason}"
            progress.console.print(text, highlight=False, soft_wrap=True)

        def on_data(info: dict) -> None:
            progress.console.print(f"data: {escape(dataset_line(info))}", highlight=False, soft_wrap=True)

        def on_remeasure(number: int, first: float, again: float) -> None:
            progress.console.print(f"#{number} latency measured again: {first:.3f} -> {again:.3f} ms/img "
                                   f"({(again / first - 1) * 100:+.1f} %)", highlight=False)

        summary = run_or_exit(lambda: run_study(settings, on_trial=on_trial, prepared=prepared, on_data=on_data,
                                                on_remeasure=on_remeasure),
                              "the running trial is marked FAIL; run the same command again to resume")
        progress.update(task, completed=min(summary.architectures, trials))

    extra = f"; {summary.running} still running" if summary.running else ""
    console.print(f"done: {summary.complete} complete, {summary.pruned} pruned, {summary.failed} failed{extra}; "
                  f"this run {summary.wall_seconds:.1f} s; storage {summary.storage}", highlight=False, soft_wrap=True)
    if summary.workers_failed:
        err_console.print(f"warning: {summary.workers_failed} of {summary.workers} workers exited abnormally; "
                          "their trials are retried once their heartbeat is stale", highlight=False)
    if summary.note:
        err_console.print(f"warning: {summary.architectures} of {trials} trials complete: {summary.note}", highlight=False)
    elif summary.architectures < trials:
        err_console.print(f"warning: {summary.architectures} of {trials} trials complete; run the same command again "
                          "to go on", highlight=False)
    _print_pareto(trials_frame(open_study(settings.study_name, settings.storage_url)), metric_label({"task": settings.task}))
    if report:
        if settings.storage is None:
            paths = write_study_report(str(settings.run_dir), None, settings.run_dir / "report")
        else:
            paths = write_study_report(settings.study_name, settings.storage, settings.run_dir / "report")
        console.print(f"report: {paths.markdown}, {paths.png}, {paths.csv}")
    if summary.architectures < trials and summary.workers_failed:
        raise typer.Exit(code=1)


@app.command()
def report(
    study: Annotated[str, typer.Argument(help="Run folder (runs/cga), or a study name with --storage.")],
    *,
    storage: StorageOpt = None,
    out: Annotated[Optional[str], typer.Option(help="Output folder; default <run>/report or reports/<name>.")] = None,
    front_seeds: Annotated[Optional[int], typer.Option(
        help="Re-train every Pareto-front member with this many common seeds (stored runs count; >= 2) and mark "
             "which members are distinguishable.")] = None,
    device: Annotated[str, typer.Option(help="Training device of --front-seeds: cpu | cuda | cuda:N.")] = "cpu",
    train_threads: Annotated[int, typer.Option(
        help="CPU threads of --front-seeds training (0 = the study's setting, else torch's default).")] = 0,
) -> None:
    """Write a Pareto-front plot (PNG), all trials (CSV) and a markdown summary of the Pareto set;
    with ``--front-seeds N``, first re-train the front with N common seeds (resumable)."""
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
                  + (f"\nwrote {paths.front_csv}\nwrote {paths.front_png}" if paths.front_csv else ""))
