"""``explore bench``: our presets against timm (``explore bench`` with options, or ``explore bench
models``), attention cost against tokens (``attention``), the proxy loop against a plain DataLoader
loop (``proxy``) and a study's latency repeatability under load (``repeatability``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from explore.cli.common import app, console, fail, names
from explore.cli.options import BATCH_SIZE, DEVICE, EPOCHS
from explore.errors import ExploreError
from explore.reproduce import command_line

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

__all__ = ["bench_app", "models", "attention", "proxy", "repeatability", "bench_table"]

_TABLE_COLUMNS = {"model": "model", "mode": "mode", "batch": "batch", "ours_img_s": "ours img/s", "ours_cv": "ours cv",
                  "timm_img_s": "timm img/s", "timm_cv": "timm cv", "ratio_ours_timm": "ratio",
                  "ratio_paired": "paired", "ratio_low": "95% low", "ratio_high": "95% high", "verdict": "verdict",
                  "paper_img_s": "paper img/s"}
"""The columns of ``explore bench``'s terminal table (the CSV has them all), with their headers."""


def bench_table(frame: pd.DataFrame, protocol: str) -> Table:
    """The terminal table of ``explore bench``: short model names (``M0``), the ratios and their
    interval, within 120 columns (the CSV and the .md keep every column and the full names).

    Args:
        frame: the rows of :func:`explore.analysis.bench.bench`.
        protocol: the protocol's name (the title).

    Returns:
        A ``rich.table.Table``.
    """
    from rich.table import Table

    from explore.analysis.bench.models import short_name

    shown = frame[[c for c in _TABLE_COLUMNS if c in frame]].copy()
    shown["model"] = shown["model"].map(short_name)
    shown = shown.loc[:, [c for c in shown.columns if shown[c].notna().any()]]
    device = str(frame["device"].iloc[0])
    table = Table(*(_TABLE_COLUMNS[c] for c in shown.columns), title=f"{protocol} on {device}", padding=(0, 1))
    for row in shown.itertuples(index=False):
        table.add_row(*("" if v is None or v != v else str(v) for v in row))
    return table

bench_app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False,
                        help="Benchmarks: ours vs timm (the default), attention, proxy, repeatability.")
app.add_typer(bench_app, name="bench")

OutOpt = Annotated[Optional[str], typer.Option(help="Folder for the report (.md, .csv); default: print only.")]
NoteOpt = Annotated[Optional[str], typer.Option(
    help="A sentence on the run's context (e.g. 'machine shared, load average 1.7'): stored with the figures "
         "and shown as the report's closing paragraph (not on its Command line: it changes no figure).")]


def models(
    ctx: typer.Context,
    *,
    device: DEVICE.option("the protocol's") = None,
    protocol: Annotated[str, typer.Option(help="gpu-throughput | gpu-latency | cpu-latency | onnx-cpu")] = "cpu-latency",
    models: Annotated[str, typer.Option(help="Comma-separated presets, or 'all', 'm' (M0-M5), 'b' (B0-B3).")] = "all",
    modes: Annotated[str, typer.Option(help="Comma-separated: eager, fused, compile, cuda-graph.")] = "eager,fused",
    batch_size: Annotated[Optional[int], typer.Option(help="Override the protocol's batch.")] = None,
    repeats: Annotated[Optional[int], typer.Option(help="Timed runs (default: the protocol's).")] = None,
    warmup: Annotated[Optional[int], typer.Option(help="Untimed runs first.")] = None,
    img_size: Annotated[Optional[int], typer.Option(help="Input side (default 224).")] = None,
    reference: Annotated[bool, typer.Option(help="Measure timm's model of the same name too.")] = True,
    compile_backend: Annotated[str, typer.Option(
        help="torch.compile backend of compile rows: inductor, aot_eager or eager (capture only).")] = "inductor",
    out: Annotated[Optional[str], typer.Option(help="Folder for bench_<protocol>_<device>.csv/.md.")] = None,
) -> None:
    """Our presets vs timm's models of the same names: same protocol, same mode, one run; ratio ours/timm."""
    if ctx.invoked_subcommand is not None:  # `explore bench attention ...`: the group's options are unused
        return
    from explore.analysis.bench.models import bench, model_names
    from explore.report import write_bench_models

    def on_row(row) -> None:  # noqa: ANN001 - BenchRow
        data = row.as_row()
        ratio = f"ratio {data['ratio_ours_timm']:.3f}" if data["ratio_ours_timm"] is not None else ""
        if data.get("ratio_paired") is not None:
            ratio += (f", paired {data['ratio_paired']:.3f} [{data['ratio_low']:.3f}, {data['ratio_high']:.3f}] "
                      f"{data['verdict']}")
        console.print(f"{data['model']} {data['mode']}: ours {data['ours_img_s']} img/s (cv {data['ours_cv']:.3f}), "
                      f"timm {data['timm_img_s']} img/s {ratio}", highlight=False)

    try:
        frame = bench(model_names(models), protocol, tuple(names(modes)), device=device, batch_size=batch_size,
                      repeats=repeats, warmup=warmup, img_size=img_size, reference=reference,
                      compile_backend=compile_backend, on_row=on_row)
    except ExploreError as exc:
        raise fail(exc) from None
    console.print(bench_table(frame, protocol))
    if out:
        command = command_line(["explore", "bench"], [
            ("--protocol", protocol), ("--models", models), ("--modes", modes), ("--device", device),
            ("--batch-size", batch_size), ("--repeats", repeats), ("--warmup", warmup), ("--img-size", img_size),
            ("--no-reference", not reference),
            ("--compile-backend", compile_backend if compile_backend != "inductor" else None), ("--out", out)])
        path = write_bench_models(frame, Path(out), protocol, command)
        console.print(f"wrote {path} and .md")


bench_app.callback(invoke_without_command=True)(models)
bench_app.command("models")(models)


@bench_app.command()
def attention(
    *,
    device: DEVICE.option("cpu") = "cpu",
    sides: Annotated[str, typer.Option(help="Map sides; N = side^2 tokens.")] = "8,16,24,32,48,64",
    channels: Annotated[int, typer.Option(help="Channels C of the layer.")] = 64,
    batch: Annotated[int, typer.Option(help="Batch.")] = 1,
    repeats: Annotated[int, typer.Option(help="Timed runs (median).")] = 10,
    threads: Annotated[int, typer.Option(help="CPU threads (0: torch default).")] = 1,
    note: NoteOpt = None,
    out: OutOpt = None,
) -> None:
    """Latency of one attention layer of every kind against the number of tokens, and its growth exponent.
    With ``--out``: ``attention_scaling_<device>.md``, ``.csv`` (the figures) and ``.json`` (the settings, the
    command and the note), from which ``explore rerender`` writes the report again."""
    import torch

    from explore.analysis.bench.attention import growth_exponents, run
    from explore.device import resolve_device
    from explore.measure import device_name
    from explore.report.bench import (attention_scaling_figures, attention_scaling_header, render_attention_scaling,
                                      write_attention_scaling)

    sizes = tuple(int(s) for s in names(sides))
    try:
        dev = resolve_device(device)
        tokens, measured = run(device, sizes, channels, batch, repeats, threads or None)
    except ExploreError as exc:
        raise fail(exc) from None
    results = attention_scaling_figures(measured)  # the figures the CSV stores: the report shows those
    command = command_line(["explore", "bench", "attention"], [
        ("--device", device), ("--sides", sides), ("--channels", channels), ("--batch", batch), ("--repeats", repeats),
        ("--threads", threads), ("--out", out)])
    settings = {"channels": channels, "batch": batch, "repeats": repeats, "threads": threads, "device_type": dev.type,
                "device_name": device_name(dev), "torch": torch.__version__}
    text = render_attention_scaling(tokens, results, growth_exponents(tokens, results),
                                    attention_scaling_header(settings, command), note)
    print(text)
    if out:
        write_attention_scaling(text, tokens, results, Path(out), dev.type,
                                {"command": command, "settings": settings, "note": note})


@bench_app.command()
def proxy(
    *,
    device: DEVICE.option("cpu") = "cpu",
    model: Annotated[str, typer.Option(help="Preset to train (re-headed for the dataset).")] = "efficientvit_m0",
    img_size: Annotated[int, typer.Option(help="Input side (pixels).")] = 64,
    batch_size: BATCH_SIZE.option(256) = 256,
    images: Annotated[int, typer.Option(help="Fashion-MNIST training images.")] = 10000,
    epochs: EPOCHS.option(1.0) = 1.0,
    workers: Annotated[int, typer.Option(help="DataLoader workers of the plain loop.")] = 2,
    warmup_steps: Annotated[int, typer.Option(help="Untimed steps each loop runs first, on a model of its own.")] = 5,
    note: NoteOpt = None,
    out: OutOpt = None,
) -> None:
    """Training throughput of the proxy loop against a plain DataLoader loop (same model, optimiser, step).
    With ``--out``: ``proxy_throughput_<device>.md`` and ``.json`` (the figures unrounded, the settings, the
    command and the note), from which ``explore rerender`` writes the report again."""
    import dataclasses

    from explore.analysis.bench.proxy import run_proxy_bench
    from explore.report.bench import render_proxy_throughput, write_proxy_throughput

    try:
        result = run_proxy_bench(device=device, model=model, img_size=img_size, batch_size=batch_size, images=images,
                                 epochs=epochs, workers=workers, warmup_steps=warmup_steps)
    except ExploreError as exc:
        raise fail(exc) from None
    command = command_line(["explore", "bench", "proxy"], [
        ("--device", device), ("--model", model), ("--img-size", img_size), ("--batch-size", batch_size),
        ("--images", images), ("--epochs", epochs), ("--workers", workers), ("--warmup-steps", warmup_steps),
        ("--out", out)])
    text = render_proxy_throughput(result, command, note)
    print(text)
    if out:
        write_proxy_throughput(text, Path(out), result.device_type,
                               {"command": command, "run": dataclasses.asdict(result), "note": note})


@bench_app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def repeatability(
    ctx: typer.Context,
    *,
    loads: Annotated[str, typer.Option(
        help="Competing loads, one loaded run each: compute (matrix products on --load-threads threads), "
             "bandwidth (one thread streaming 256 MB arrays).")] = "compute",
    load_threads: Annotated[int, typer.Option(help="Threads of the compute load.")] = 2,
    work: Annotated[str, typer.Option(help="Run folder of the two studies.")] = "runs/repeatability",
    out: OutOpt = None,
) -> None:
    """A study run from one seed, idle and beside each competing load: how far its latencies move (normalised, raw).
    Options after ``--`` go to both ``explore study --space cga`` runs."""
    from explore.analysis.bench.repeatability import run_repeatability
    from explore.report import render_repeatability, write_repeatability

    study_args = list(ctx.args)
    try:
        result = run_repeatability(study_args, load_threads=load_threads, work=work, loads=tuple(names(loads)))
    except ExploreError as exc:
        raise fail(exc) from None
    words = command_line(["explore", "bench", "repeatability"], [("--loads", loads), ("--load-threads", load_threads),
                                                                 ("--work", work),
                                                                 ("--out", out)])
    command = words + (" -- " + command_line(study_args) if study_args else "")
    text = render_repeatability(result, command)
    print(text)
    if out:
        write_repeatability(text, result, Path(out), command)
