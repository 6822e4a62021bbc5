"""The ``explore`` command line: thin typer commands over the pipeline stages.

    explore study --space cga                 # run or resume a study (Fashion-MNIST, CPU)
    explore report runs/cga                   # Pareto plot, trials CSV, markdown summary
    explore describe efficientvit_m0 --json   # params and MACs of a preset or config file

Bad input prints one ``error:`` line naming the option and value, exits with code 1, and writes
nothing.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from explore.config import ArchConfig, StageConfig, stage_field_used
from explore.device import resolve_device
from explore.errors import ConfigError, ExploreError, NonFiniteLossError
from explore.report import safe_name

# no locals in tracebacks: they would print storage URLs with their passwords
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Architecture exploration and ablation for efficient vision transformers.")
# wide tables when the output is a file or a pipe (rich falls back to 80 columns there)
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _fail(exc: Exception) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


def _report_command(study_ref: str, storage: Optional[str], out: Optional[str]) -> str:
    """The ``explore report`` command line that remakes a report (password masked)."""
    from explore.study import mask_password

    words = ["explore", "report", study_ref]
    if storage:
        words += ["--storage", mask_password(storage)]
    if out:
        words += ["--out", out]
    return " ".join(shlex.quote(w) for w in words)


# --------------------------------------------------------------------------------------------------
@app.command()
def study(
    *,
    space: Annotated[str, typer.Option(help="Space name (cga) or path to a space TOML file.")] = "cga",
    trials: Annotated[int, typer.Option(help="COMPLETE trials to reach (pruned ones don't count).")] = 8,
    study_name: Annotated[Optional[str], typer.Option(help="Study name; default: the space's name.")] = None,
    storage: Annotated[Optional[str], typer.Option(
        envvar="EXPLORE_STORAGE", show_envvar=False,
        help="Optuna storage URL (postgresql://... for many machines) or journal file path; "
             "default: the run folder's study.db (or journal.log with --workers > 1). Env: EXPLORE_STORAGE.")] = None,
    out: Annotated[str, typer.Option(help="Parent folder of run folders.")] = "runs",
    workers: Annotated[int, typer.Option(help="Worker processes on this machine sharing the study.")] = 1,
    devices: Annotated[Optional[str], typer.Option(
        help="CUDA devices of the workers, e.g. 0,1,2,3: worker i uses cuda:<i-th, round-robin>.")] = None,
    dataset: Annotated[str, typer.Option(help="fashion_mnist | cifar10 | cifar100 | imagefolder")] = "fashion_mnist",
    data_root: Annotated[Optional[str], typer.Option(help="Local data folder (default for fashion_mnist: the Debian package's).")] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N (training and latency).")] = "cpu",
    seed: Annotated[int, typer.Option(help="Sampler seed; trial k trains with seed+k.")] = 0,
    sampler: Annotated[str, typer.Option(help="tpe | nsga2 | random")] = "tpe",
    epochs: Annotated[float, typer.Option(help="Proxy training epochs (fractions allowed).")] = 2.0,
    batch_size: Annotated[int, typer.Option(help="Proxy training batch size.")] = 128,
    max_train: Annotated[int, typer.Option(help="Training images used (random subset; 0 = all).")] = 10000,
    max_val: Annotated[int, typer.Option(help="Held-out images for top-1 (0 = all).")] = 2000,
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
        help="At the end, measure the Pareto trials' latency again (the front uses the lower figure).")] = True,
) -> None:
    """Run (or resume) a multi-objective study: maximise proxy top-1, minimise latency."""
    from explore.study import StudySettings, prepare_study, run_study, trials_frame

    try:
        name = study_name or Path(space).stem
        settings = StudySettings(
            space=space, study_name=name, trials=trials, out=out, storage=storage, dataset=dataset,
            data_root=data_root, max_train=max_train or None, max_val=max_val or None, device=device, seed=seed,
            sampler=sampler, epochs=epochs, batch_size=batch_size, latency_batch=latency_batch or None,
            latency_mode=latency_mode, objective=objective, latency_threads=latency_threads or None,
            latency_repeats=latency_repeats,
            workers=workers, devices=tuple(_int_list(devices, "--devices")) if devices else None,
            heartbeat_s=heartbeat_interval, remeasure_front=remeasure_front,
            train_threads=train_threads or None,
        )
        prepared = prepare_study(settings)  # every check before anything is written
    except ExploreError as exc:
        raise _fail(exc) from None

    from explore.report import dataset_line
    from explore.resources import display_path

    console.print(f"study [bold]{settings.study_name}[/] · space {prepared[0].name} "
                  f"({display_path(prepared[0].path, 'search_spaces')}) · "
                  f"{dataset} · device {prepared[1]} · target {trials} complete trials"
                  + (f" · {workers} workers" if workers > 1 else ""), highlight=False)
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("trials", total=trials)

        def on_trial(study_obj, trial) -> None:  # noqa: ANN001 - optuna types
            done = sum(1 for t in study_obj.get_trials(deepcopy=False) if t.state.name == "COMPLETE")
            progress.update(task, completed=min(done, trials))
            if trial.state.name == "COMPLETE":
                cached = " (cached)" if trial.user_attrs.get("latency_cached") else ""
                latency_ms = trial.user_attrs.get("latency_ms_per_img", float("nan"))
                text = (f"#{trial.number} top-1 {trial.values[0]:.2f}%  latency {latency_ms:.3f} ms/img{cached}  "
                        f"params {trial.user_attrs.get('params', 0) / 1e6:.2f}M")
            else:
                reason = trial.user_attrs.get("pruned_reason") or trial.user_attrs.get("fail_reason", "")
                text = f"#{trial.number} {trial.state.name}: {reason}"
            progress.console.print(text, highlight=False, soft_wrap=True)

        def on_data(info: dict) -> None:
            progress.console.print(f"data: {escape(dataset_line(info))}", highlight=False, soft_wrap=True)

        try:
            def on_remeasure(number: int, first: float, again: float) -> None:
                progress.console.print(f"#{number} latency measured again: {first:.3f} -> {again:.3f} ms/img "
                                       f"({(again / first - 1) * 100:+.1f} %)", highlight=False)

            summary = run_study(settings, on_trial=on_trial, prepared=prepared, on_data=on_data,
                                on_remeasure=on_remeasure)
            progress.update(task, completed=min(summary.complete, trials))
        except ExploreError as exc:
            raise _fail(exc) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: the running trial is marked FAIL; run the same command again to resume",
                              highlight=False)
            raise typer.Exit(code=130) from None

    extra = f"; {summary.running} still running" if summary.running else ""
    console.print(f"done: {summary.complete} complete, {summary.pruned} pruned, {summary.failed} failed{extra}; "
                  f"this run {summary.wall_seconds:.1f} s; storage {summary.storage}", highlight=False, soft_wrap=True)
    if summary.workers_failed:
        err_console.print(f"warning: {summary.workers_failed} of {summary.workers} workers exited abnormally; "
                          "their trials are retried once their heartbeat is stale", highlight=False)
    if summary.note:
        err_console.print(f"warning: {summary.complete} of {trials} trials complete: {summary.note}", highlight=False)
    elif summary.complete < trials:
        err_console.print(f"warning: {summary.complete} of {trials} trials complete; run the same command again "
                          "to go on", highlight=False)
    from explore.study import open_study

    frame = trials_frame(open_study(settings.study_name, settings.storage_url))
    _print_pareto(frame)
    if report:
        if settings.storage is None:
            paths = _write_report(str(settings.run_dir), None, settings.run_dir / "report")
        else:
            paths = _write_report(settings.study_name, settings.storage, settings.run_dir / "report")
        console.print(f"report: {paths.markdown}, {paths.png}, {paths.csv}")
    if summary.complete < trials and summary.workers_failed:
        raise typer.Exit(code=1)


def _print_pareto(frame) -> None:  # noqa: ANN001 - DataFrame
    from explore.report import pareto_table

    table = pareto_table(frame)
    out = Table(title="Pareto front")
    for col in table.columns:
        out.add_column(str(col))
    for row in table.itertuples(index=False):
        out.add_row(*(str(v) for v in row))
    console.print(out)


def _write_report(study_ref: str, storage: Optional[str], out_dir: Path):  # noqa: ANN202
    from explore.report import write_report
    from explore.study import open_study, study_meta, trials_frame

    study_obj = open_study(study_ref, storage)
    command = _report_command(study_ref, storage, str(out_dir))
    return write_report(trials_frame(study_obj), out_dir, study_meta(study_obj), command)


# --------------------------------------------------------------------------------------------------
@app.command()
def report(
    study: Annotated[str, typer.Argument(help="Run folder (runs/cga), or a study name with --storage.")],
    *,
    storage: Annotated[Optional[str], typer.Option(
        envvar="EXPLORE_STORAGE", show_envvar=False,
        help="Optuna storage URL or journal file holding the study. Env: EXPLORE_STORAGE.")] = None,
    out: Annotated[Optional[str], typer.Option(help="Output folder; default <run>/report or reports/<name>.")] = None,
) -> None:
    """Write a Pareto-front plot (PNG), all trials (CSV) and a markdown summary of the Pareto set."""
    from explore.study import open_study

    try:
        study_obj = open_study(study, storage)  # validates before writing
    except ExploreError as exc:
        raise _fail(exc) from None
    if out is not None:
        out_dir = Path(out)
    elif storage is None:
        out_dir = Path(study) / "report"
    else:
        out_dir = Path("reports") / safe_name(study_obj.study_name)
    paths = _write_report(study, storage, out_dir)
    console.print(f"wrote {paths.markdown}\nwrote {paths.png}\nwrote {paths.csv}")


# --------------------------------------------------------------------------------------------------
def load_config(name_or_file: str) -> ArchConfig:
    """A preset name or a config file (JSON or TOML with :class:`ArchConfig` fields).

    Raises:
        ConfigError: unknown preset, unreadable/malformed file, or invalid config.
    """
    from explore.presets import PRESETS

    if name_or_file in PRESETS:
        return PRESETS[name_or_file]
    path = Path(name_or_file)
    if not path.is_file():
        raise ConfigError("NAME_OR_FILE", name_or_file,
                          f"neither a preset ({', '.join(PRESETS)}) nor an existing config file")
    return ArchConfig.from_file(path, "NAME_OR_FILE")


@app.command()
def describe(
    name_or_file: Annotated[str, typer.Argument(help="Preset (efficientvit_m0..m5, efficientvit_b0..b3) or config file (.json/.toml).")],
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object: params, macs, config.")] = False,
) -> None:
    """Print params (M), MACs (M) and the config of an architecture."""
    from explore.measure import count_macs, count_params
    from explore.models import build

    try:
        config = load_config(name_or_file)
    except ExploreError as exc:
        raise _fail(exc) from None
    model = build(config)
    params = count_params(model)
    macs = count_macs(model, config.img_size, config.in_chans)
    if as_json:
        print(json.dumps({"name": config.name or name_or_file, "params": params, "macs": macs,
                          "img_size": config.img_size, "config": config.to_dict()}))
        return
    console.print(f"[bold]{config.name or name_or_file}[/]  params {params / 1e6:.3f} M  "
                  f"MACs {macs / 1e6:.1f} M  at {config.img_size}x{config.img_size}, {config.in_chans} ch, "
                  f"{config.num_classes} classes")
    table = Table("stage", "C", "L", "mixer", "H", "QK", "V ratio", "Q kernels", "win", "scales", "FFN", "N",
                  "expand")
    for i, s in enumerate(config.stages):
        def shown(field: str, text: str, stage: StageConfig = s) -> str:
            return text if stage_field_used(field, config.layout, stage.token_mixer) else "-"

        table.add_row(str(i), str(s.width), str(s.depth), s.token_mixer, shown("heads", str(s.heads)),
                      shown("qk_dim", str(s.qk_dim)), shown("v_ratio", f"{s.v_ratio:g}"),
                      shown("kernels", ",".join(map(str, s.kernels[: s.heads]))),
                      shown("window_size", str(s.window_size)), shown("scales", ",".join(map(str, s.scales))),
                      shown("ffn_ratio", f"{s.ffn_ratio:g}"), shown("sandwich_n", str(s.sandwich_n)),
                      shown("expand_ratio", f"{s.expand_ratio:g}"))
    console.print(table)
    switches = []
    for i, s in enumerate(config.stages):
        if not s.cascade and stage_field_used("cascade", config.layout, s.token_mixer):
            switches.append(f"stage {i}: CGA without cascade")
        if not s.dw_conv and stage_field_used("dw_conv", config.layout, s.token_mixer):
            switches.append(f"stage {i}: no DW conv before the FFNs")
        if s.linear_window and stage_field_used("linear_window", config.layout, s.token_mixer):
            switches.append(f"stage {i}: linear attention in {s.linear_window}x{s.linear_window} windows")
    if switches:
        console.print("; ".join(switches))
    extra = f", stem {config.stem_width} x{config.stem_depth}" if config.layout == "mbconv" else ""
    head = f"MLP head {list(config.head_widths)}" if config.head_widths else "norm + linear head"
    console.print(f"layout {config.layout}{extra}, norm {config.norm}, activation {config.activation}, {head}")


@app.command()
def presets(
    *,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a markdown table instead.")] = False,
) -> None:
    """Params and MACs of every preset at 224x224, beside timm's params and the paper's MACs."""
    from explore.measure import count_macs, count_params
    from explore.models import build
    from explore.paper import TIMM_PARAM_COUNTS, paper_macs
    from explore.presets import PRESETS

    header = ["model", "params", "timm params", "MACs (M)", "paper MACs (M)", "MACs vs paper (%)"]
    rows = []
    for name, config in PRESETS.items():
        model = build(config)
        params, macs = count_params(model), count_macs(model, config.img_size, config.in_chans)
        paper = paper_macs(name)
        rows.append([name, f"{params:,}", f"{TIMM_PARAM_COUNTS[name]:,}", f"{macs / 1e6:.2f}", f"{paper:g}",
                     f"{(macs / 1e6 / paper - 1) * 100:+.2f}"])
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    table = Table(*header, title="presets at 224x224, 1000 classes (MACs: fvcore, norms not counted)")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@app.command()
def bench(
    *,
    device: Annotated[Optional[str], typer.Option(help="cpu | cuda[:N]; default: the protocol's.")] = None,
    protocol: Annotated[str, typer.Option(help="gpu-throughput | gpu-latency | cpu-latency | onnx-cpu")] = "cpu-latency",
    models: Annotated[str, typer.Option(help="Comma-separated presets, or 'all', 'm' (M0-M5), 'b' (B0-B3).")] = "all",
    modes: Annotated[str, typer.Option(help="Comma-separated: eager, fused, compile, cuda-graph.")] = "eager,fused",
    batch_size: Annotated[Optional[int], typer.Option(help="Override the protocol's batch.")] = None,
    repeats: Annotated[Optional[int], typer.Option(help="Timed runs (default: the protocol's).")] = None,
    warmup: Annotated[Optional[int], typer.Option(help="Untimed runs first.")] = None,
    img_size: Annotated[Optional[int], typer.Option(help="Input side (default 224).")] = None,
    reference: Annotated[bool, typer.Option(help="Measure timm's model of the same name too.")] = True,
    out: Annotated[Optional[str], typer.Option(help="Folder for bench_<protocol>_<device>.csv/.md.")] = None,
) -> None:
    """Our presets vs timm's models of the same names: same protocol, same mode, one run; ratio ours/timm."""
    from explore.bench import bench as run_bench
    from explore.presets import PRESETS

    groups = {"all": list(PRESETS), "m": [n for n in PRESETS if "_m" in n], "b": [n for n in PRESETS if "_b" in n]}
    names = groups.get(models, _names(models))
    mode_list = tuple(_names(modes))

    def on_row(row) -> None:  # noqa: ANN001 - BenchRow
        data = row.as_row()
        ratio = f"ratio {data['ratio_ours_timm']:.3f}" if data["ratio_ours_timm"] is not None else ""
        console.print(f"{data['model']} {data['mode']}: ours {data['ours_img_s']} img/s (cv {data['ours_cv']:.3f}), "
                      f"timm {data['timm_img_s']} img/s {ratio}", highlight=False)

    try:
        frame = run_bench(names, protocol, mode_list, device=device, batch_size=batch_size, repeats=repeats,
                          warmup=warmup, img_size=img_size, reference=reference, on_row=on_row)
    except ExploreError as exc:
        raise _fail(exc) from None
    shown = frame.drop(columns=["device", "versions"])
    table = Table(*map(str, shown.columns), title=f"{protocol} on {frame['device'].iloc[0]} ({frame['versions'].iloc[0]})")
    for row in shown.itertuples(index=False):
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"bench_{protocol}_{frame['device'].iloc[0].split()[0].lower()}"
        stem = safe_name(stem)
        frame.to_csv(folder / f"{stem}.csv", index=False)
        words = ["explore", "bench", "--protocol", protocol, "--models", models, "--modes", modes]
        for flag, value in (("--device", device), ("--batch-size", batch_size), ("--repeats", repeats),
                            ("--warmup", warmup), ("--img-size", img_size)):
            if value is not None:
                words += [flag, str(value)]
        header = (f"# {protocol}: ours vs timm\n\nCommand: `{' '.join(words)} --out {out}`\n\n"
                  f"Device: {frame['device'].iloc[0]}; {frame['versions'].iloc[0]}. img/s = batch / median time; "
                  "ratio = ours / timm (>= 1: ours at least as fast); cv = coefficient of variation of the "
                  "repeats; paper_img_s measured by the paper on its own hardware (context only).\n\n")
        (folder / f"{stem}.md").write_text(header + frame.to_markdown(index=False) + "\n", encoding="utf-8")
        console.print(f"wrote {folder / (stem + '.csv')} and .md")


@app.command("validate-proxy")
def validate_proxy(
    *,
    space: Annotated[str, typer.Option(help="Space name or file to sample architectures from.")] = "cga",
    archs: Annotated[int, typer.Option(help="K: architectures to train with both budgets.")] = 12,
    short_epochs: Annotated[float, typer.Option(help="The proxy budget (epochs).")] = 1.0,
    long_epochs: Annotated[float, typer.Option(help="The reference budget (>= 5x short).")] = 5.0,
    dataset: Annotated[str, typer.Option(help="fashion_mnist | cifar10 | cifar100 | imagefolder")] = "fashion_mnist",
    data_root: Annotated[Optional[str], typer.Option(help="Local data folder.")] = None,
    max_train: Annotated[int, typer.Option(help="Training images (0 = all).")] = 10000,
    max_val: Annotated[int, typer.Option(help="Held-out images (0 = all).")] = 2000,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 128,
    device: Annotated[str, typer.Option(help="cpu | cuda[:N]")] = "cpu",
    seed: Annotated[int, typer.Option(help="Sampling and training seed.")] = 0,
    out: Annotated[Optional[str], typer.Option(help="Output folder; default runs/validate-proxy-<space>.")] = None,
) -> None:
    """Rank agreement (Kendall tau, Spearman rho) of the short proxy against a >= 5x longer budget."""
    from explore.proxy import validate_proxy as run_validation
    from explore.proxy import write_validity_report

    def on_arch(row: dict) -> None:
        console.print(f"arch {row['arch']}: {row['summary']}  short {row['short_top1']:.2f}%  "
                      f"long {row['long_top1']:.2f}%  ({row['short_seconds']:.0f} s + {row['long_seconds']:.0f} s)",
                      highlight=False)

    try:
        result = run_validation(space, archs, dataset=dataset, data_root=data_root, max_train=max_train or None,
                                max_val=max_val or None, short_epochs=short_epochs, long_epochs=long_epochs,
                                batch_size=batch_size, device=device, seed=seed, on_arch=on_arch)
    except ExploreError as exc:
        raise _fail(exc) from None
    words = ["explore", "validate-proxy", "--space", space, "--archs", str(archs), "--short-epochs", f"{short_epochs:g}",
             "--long-epochs", f"{long_epochs:g}", "--dataset", dataset, "--max-train", str(max_train), "--max-val",
             str(max_val), "--batch-size", str(batch_size), "--device", device, "--seed", str(seed)]
    if data_root:
        words += ["--data-root", data_root]
    folder = Path(out) if out else Path("runs") / safe_name(f"validate-proxy-{Path(space).stem}")
    if out:
        words += ["--out", out]
    paths = write_validity_report(result, folder, " ".join(shlex.quote(w) for w in words))
    console.print(f"Kendall tau {result.kendall_tau:.3f}, Spearman rho {result.spearman_rho:.3f} over {archs} "
                  f"architectures; wrote {', '.join(str(p) for p in paths)}")


def _names(text: str) -> list[str]:
    """A comma-separated option as a list of its non-empty, stripped items."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _int_list(text: Optional[str], field: str) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        return [int(v) for v in _names(text)]
    except ValueError:
        raise _fail(ExploreError(field, text, "expected comma-separated integers, e.g. 0,1")) from None


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
    seeds: Annotated[Optional[str], typer.Option(help="Override the seeds, e.g. 0,1,2 (>= 2).")] = None,
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
    import dataclasses as _dc

    from explore import ablate as ab
    from explore.report import write_ablation_report

    try:
        loaded = ab.load_recipe(recipe)
        chosen = ab.with_overrides(
            loaded, epochs=epochs, max_train=max_train, max_val=max_val, img_size=img_size, batch_size=batch_size,
            seeds=_int_list(seeds, "--seeds"), variants=_names(variants) if variants else None,
            protocols=_names(protocols) if protocols else None,
            measure_img_sizes=_int_list(measure_img_sizes, "--measure-img-sizes"), repeats=repeats,
            data_root=data_root)
        resolve_device(device)
    except ExploreError as exc:
        raise _fail(exc) from None
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
        raise _fail(exc) from None
    summary, taus = ab.summarise(run)
    findings = ab.check_findings(run, summary)
    changed = [f"{f.name} {getattr(chosen.budget, f.name)} (recipe: {getattr(loaded.budget, f.name)})"
               for f in _dc.fields(chosen.budget) if getattr(chosen.budget, f.name) != getattr(loaded.budget, f.name)]
    if len(chosen.variants) != len(loaded.variants):
        changed.append(f"{len(chosen.variants)} of {len(loaded.variants)} variants")
    train_seconds = float(run.training["train_seconds"].sum()) if not run.training.empty else 0.0
    meta = {**run.meta, "training_seconds": train_seconds, "paper_source": chosen.paper_source, "paper_note": chosen.paper_note,
            "paper_accuracy": chosen.paper_accuracy, "description": chosen.description, "reduced": "; ".join(changed)}
    words = ["explore", "ablate", recipe]
    for flag, value in (("--device", device if device != "cpu" else None), ("--epochs", epochs),
                        ("--max-train", max_train), ("--max-val", max_val), ("--img-size", img_size),
                        ("--batch-size", batch_size), ("--seeds", seeds), ("--variants", variants),
                        ("--protocols", protocols), ("--measure-img-sizes", measure_img_sizes),
                        ("--repeats", repeats), ("--data-root", data_root), ("--out", out)):
        if value is not None:
            words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if remeasure:
        words.append("--remeasure")
    command = " ".join(shlex.quote(w) for w in words)
    paths = write_ablation_report(summary, run.measurements, folder, meta, taus, findings, command)
    console.print(", ".join(f"{k} tau {v:.2f}" for k, v in taus.items()) or "no paper rows to rank")
    console.print(f"wrote {paths.markdown}, {paths.csv}, {paths.png}")


@app.command()
def importance(
    *,
    model: Annotated[str, typer.Option(help="Preset, config file (.json/.toml) or STUDY:TRIAL (e.g. runs/cga:3).")],
    dataset: Annotated[str, typer.Option(help="fashion_mnist | cifar10 | cifar100 | imagefolder | synthetic")] = "fashion_mnist",
    data_root: Annotated[Optional[str], typer.Option(help="Local data folder (default for fashion_mnist: the Debian package's).")] = None,
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
    from explore.importance import (ImportanceSettings, command_line, prepare_importance, run_importance,
                                    write_importance_report)

    try:
        settings = ImportanceSettings(
            model=model, dataset=dataset, data_root=data_root, target=target, by=by, rank=rank, img_size=img_size, epochs=epochs,
            batch_size=batch_size, max_train=max_train or None, max_val=max_val or None, score_batches=score_batches,
            seed=seed, device=device, checkpoint=checkpoint, save_checkpoint=save_checkpoint, retrain=retrain,
            latency_repeats=latency_repeats, out=out, enqueue=enqueue)
        prepared = prepare_importance(settings)  # every check before anything is written
        result = run_importance(settings, prepared, log=lambda line: console.print(line, highlight=False))
    except (ExploreError, NonFiniteLossError) as exc:
        raise _fail(exc) from None
    paths = write_importance_report(result, prepared.out, command_line(settings))
    table = Table(*map(str, result.comparison.columns), title=f"{result.name}: original, pruned, suggested")
    for row in result.comparison.itertuples(index=False):
        table.add_row(*(f"{v:,}" if isinstance(v, int) else f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
    console.print(f"paper's trend (V > QK, FFN shrinks, more in later blocks): {result.trend['verdict']}")
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
    if result.enqueue_error is not None:
        raise _fail(RuntimeError(f"not enqueued (the report is written): {result.enqueue_error}"))


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
    from explore.acceptance import main as run_main

    argv = ["--device", device]
    for flag, value in (("--out", out), ("--budget-s", budget_s), ("--only", only)):
        if value is not None:
            argv += [flag, str(value)]
    code = run_main(argv)
    if code:
        raise typer.Exit(code=code)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
