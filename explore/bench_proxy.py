"""Benchmark: training throughput of the proxy loop against a plain DataLoader loop.

Run: ``python -m explore.bench_proxy [--device cpu|cuda] [--model efficientvit_m0] [--img-size 64]
[--batch-size 256] [--images 10000] [--epochs 1] [--warmup-steps 5] [--out reports/proxy_throughput]``.

Both loops train the same preset (re-headed for the dataset) on the same Fashion-MNIST subset with
the same optimiser, schedule, augmentation kind (random crop with padding, horizontal flip) and
precision (:func:`explore.train.choose_precision`, with a gradient scaler for fp16), with cuDNN
autotuning on for both, and are timed over the training steps only (the first epoch included, as
a study pays it). Before either is timed, each is warmed up for ``--warmup-steps`` untimed steps
on a model of its own, so that neither pays the process's one-time costs (CUDA context, cuBLAS
and cuDNN start-up and autotuning) in its timing. The plain loop is what one writes first: a ``torch.utils.data.DataLoader`` over a
Dataset whose items go through torchvision transforms one image at a time, worker processes
on the CPU, ``loss.item()`` every step. The proxy loop (:func:`explore.train.train_proxy`) keeps
the uint8 data in memory (on the GPU when training there), converts and augments whole batches
and, on CUDA, synchronises only every few steps. It prints images/s of each and the ratio.
A table, not a timed test: these machines are noisy.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from explore.data import DatasetBundle, load_dataset
from explore.device import resolve_device
from explore.models import build
from explore.presets import get_preset
from explore.train import (
    ProxyRecipe,
    _autocast,
    _lr_lambda,
    _optimizer,
    _param_groups,
    choose_precision,
    seed_everything,
    train_proxy,
)

__all__ = ["plain_loop", "main"]


class _TransformedImages(Dataset):
    """uint8 (N, C, H, W) images -> float tensors through per-image torchvision transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, img_size: int, mean, std) -> None:
        from torchvision.transforms import v2

        self.images, self.labels = images, labels
        pad = max(1, img_size // 8)
        self.transform = v2.Compose([
            v2.ToDtype(torch.float32, scale=True),
            v2.Resize((img_size, img_size), antialias=False),
            v2.RandomCrop(img_size, padding=pad),
            v2.RandomHorizontalFlip(),
            v2.Normalize(list(mean), list(std)),
        ])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):  # noqa: ANN204 - Dataset protocol
        return self.transform(self.images[i]), self.labels[i]


def plain_loop(model: nn.Module, data: DatasetBundle, *, img_size: int, recipe: ProxyRecipe, device: torch.device,
               workers: int, precision: str | None = None) -> float:
    """Train with a DataLoader over per-image transforms; returns training images/s.

    Args:
        model: maps float32 (B, C, img_size, img_size) to logits (B, num_classes); trained in place.
        data: the dataset; its train split is what is trained on.
        img_size: side in pixels of the model input.
        recipe: the epochs (fractional allowed), batch size, lr, schedule and label smoothing used.
        device: a resolved torch device.
        workers: DataLoader worker processes.
        precision: ``"bf16"``, ``"fp16"`` (with a gradient scaler) or ``"fp32"``; ``None`` for
            :func:`explore.train.choose_precision` of the device, as the proxy loop does.

    Returns:
        Training throughput, images/s, over all the steps (start-up of the loader included).

    Raises:
        ValueError: the training split holds fewer images than one batch.
        RuntimeError: the loss became NaN or infinite.
    """
    precision = choose_precision(device) if precision is None else precision
    dataset = _TransformedImages(data.train.images, data.train.labels, img_size, data.mean, data.std)
    loader = DataLoader(dataset, batch_size=recipe.batch_size, shuffle=True, drop_last=True, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    if len(loader) == 0:
        raise ValueError(f"{len(dataset)} training images make no full batch of {recipe.batch_size}")
    model.to(device).train()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(_param_groups(model, recipe.weight_decay), recipe.lr, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    total = max(1, round(recipe.epochs * len(loader)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total, int(recipe.warmup_fraction * total)))
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    seen, step, start = 0, 0, time.perf_counter()
    while step < total:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, precision):
                loss = criterion(model(x).float(), y)
            if not math.isfinite(loss.item()):
                raise RuntimeError("non-finite loss")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            seen += len(y)
            step += 1
            if step >= total:
                break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: print the comparison and optionally write it as markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="efficientvit_m0")
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the plain loop")
    parser.add_argument("--warmup-steps", type=int, default=5,
                        help="untimed steps each loop runs first, on a model of its own")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.images < args.batch_size:
        parser.error(f"--images {args.images} must be at least --batch-size {args.batch_size}")
    if args.warmup_steps < 0:
        parser.error("--warmup-steps must be >= 0")
    dev = resolve_device(args.device)
    # train_proxy ends with an (untimed) evaluation: a small val split keeps it short
    data = load_dataset("fashion_mnist", max_train=args.images, max_val=64, seed=0)
    config = get_preset(args.model, img_size=args.img_size, in_chans=data.in_chans, num_classes=data.num_classes)
    recipe = ProxyRecipe(epochs=args.epochs, batch_size=args.batch_size)
    precision = choose_precision(dev)

    def run_plain(r: ProxyRecipe) -> float:
        seed_everything(0)
        return plain_loop(build(config), data, img_size=args.img_size, recipe=r, device=dev, workers=args.workers,
                          precision=precision)

    def run_proxy(r: ProxyRecipe) -> float:
        seed_everything(0)
        return train_proxy(build(config), data, img_size=args.img_size, recipe=r, device=str(dev), seed=0,
                           precision=precision).train_img_s

    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = dev.type == "cuda"  # both loops autotune (the proxy loop does anyway)
    try:
        if args.warmup_steps:
            warm = replace(recipe, epochs=args.warmup_steps / (len(data.train) // args.batch_size))
            run_plain(warm)
            run_proxy(warm)
        plain = run_plain(recipe)
        ours = run_proxy(recipe)
    finally:
        torch.backends.cudnn.benchmark = benchmark
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    warm_note = (f"Each loop was warmed up first for {args.warmup_steps} untimed step(s) on a model of its own, so "
                 "neither timing includes the process's start-up (CUDA context, cuDNN autotuning)."
                 if args.warmup_steps else "No warm-up (--warmup-steps 0): the first loop timed, the plain one, pays "
                 "the process's start-up.")
    command = "python -m explore.bench_proxy " + " ".join(argv if argv is not None else sys.argv[1:])
    text = (f"Proxy training throughput, {args.model} at {args.img_size}x{args.img_size}, batch {args.batch_size}, "
            f"{args.images} Fashion-MNIST images x {args.epochs:g} epoch(s), device {dev.type} ({name}), "
            f"precision {precision}, torch {torch.__version__}. {warm_note} Command: `{command}`\n\n"
            f"| loop | train img/s |\n|---|---|\n"
            f"| plain DataLoader ({args.workers} workers, per-image transforms) | {plain:.1f} |\n"
            f"| proxy loop (explore.train) | {ours:.1f} |\n"
            f"| ratio proxy / plain | {ours / plain:.2f} |\n")
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"proxy_throughput_{dev.type}.md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
