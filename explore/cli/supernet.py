"""``explore supernet train`` and ``explore supernet extract``: the weight-sharing supernet of a space."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from explore.cli.common import app, console, fail, run_or_exit
from explore.cli.options import BATCH_SIZE, DATA_ROOT, DATASET, DEVICE, EPOCHS, MAX_TRAIN, MAX_VAL, SEED, given, reproduce_line
from explore.errors import ExploreError

__all__ = ["supernet_app", "train", "extract"]

supernet_app = typer.Typer(no_args_is_help=True, help="The weight-sharing supernet of a space: train it, extract subnets.")
app.add_typer(supernet_app, name="supernet")


@supernet_app.command()
def train(
    ctx: typer.Context,
    *,
    space: Annotated[str, typer.Option(help="Space name (cga) or path to a space TOML file.")] = "cga",
    out: Annotated[str, typer.Option(help="Run directory: supernet.pt (weights, optimizer, settings, command).")] =
        "runs/supernet",
    random_subnets: Annotated[int, typer.Option(help="Random subnets per step besides the largest and smallest.")] = 2,
    lr: Annotated[float, typer.Option(help="AdamW learning rate (constant).")] = 1e-3,
    dataset: DATASET.option("fashion_mnist") = None,
    data_root: DATA_ROOT.option() = None,
    max_train: MAX_TRAIN.option(5000) = None,
    max_val: MAX_VAL.option(1000) = None,
    epochs: EPOCHS.option(5) = None,
    batch_size: BATCH_SIZE.option(128) = None,
    seed: SEED.option(0) = None,
    device: DEVICE.option("cpu") = None,
) -> None:
    """Train the supernet of a space with the sandwich rule and in-place distillation; a checkpoint
    every epoch; the same command resumes a killed run."""
    from explore.supernet.train import SupernetSettings, train_supernet

    options = given(ctx, DATASET, DATA_ROOT, MAX_TRAIN, MAX_VAL, EPOCHS, BATCH_SIZE, SEED, DEVICE)
    if "epochs" in options:
        if options["epochs"] < 1 or not float(options["epochs"]).is_integer():
            raise fail(ExploreError("--epochs", options["epochs"], "a supernet trains whole epochs: expected 1, 2, ..."))
        options["epochs"] = int(options["epochs"])
    settings = SupernetSettings(space=space, random_subnets=random_subnets, lr=lr, **options)
    command = reproduce_line(ctx, ["explore", "supernet", "train"])
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("supernet", total=None)

        def on_step(step: int, total: int, loss: float) -> None:
            progress.update(task, completed=step, total=total, description=f"supernet loss {loss:.3f}")

        path = run_or_exit(lambda: train_supernet(settings, out, command=command, progress=on_step),
                           "the last epoch's checkpoint is kept; the same command resumes")
    console.print(f"supernet: {path}")


@supernet_app.command()
def extract(
    run_dir: Annotated[str, typer.Argument(help="Run directory of explore supernet train.")],
    arch: Annotated[str, typer.Argument(help="Config file (.json/.toml), preset name or RUN:TRIAL of a study.")],
    *,
    out: Annotated[str, typer.Option(help="File written: {config, model (build(config)'s state dict)}, "
                                          "loadable with torch.load(weights_only=True).")] = "model.pt",
    recalibration_images: Annotated[int, typer.Option(
        help="Training images BN statistics are recalibrated on (0 = keep the supernet's).")] = 2000,
    device: DEVICE.option("cpu") = None,
) -> None:
    """Write a subnet as the plain model build(config) makes, with the supernet's weights and BN
    statistics recalibrated on training images."""
    import torch

    from explore.arch import resolve_arch
    from explore.search import trial_config
    from explore.supernet import extract as extract_subnet, recalibrate_bn
    from explore.supernet.train import SupernetSettings, load_run_data, load_supernet

    def work() -> Path:
        supernet, state = load_supernet(run_dir, device or "cpu")
        config = resolve_arch(arch, "ARCH", load_trial=trial_config).config
        model = extract_subnet(supernet, config)
        if recalibration_images:
            settings = SupernetSettings(**state["settings"])
            data = load_run_data(settings)
            recalibrate_bn(model, data.train, img_size=config.img_size, mean=data.mean, std=data.std,
                           images=recalibration_images, device=device or "cpu")
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"config": config.to_dict(), "model": model.cpu().state_dict(), "supernet": str(run_dir)}, path)
        return path

    path = run_or_exit(work, "nothing written")
    console.print(f"model: {path}")
