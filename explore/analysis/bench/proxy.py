"""Benchmark: training throughput of the proxy loop against a plain DataLoader loop.

``explore bench proxy [--device cpu|cuda] [--model efficientvit_m0] [--img-size 64] [--batch-size 256]
[--images 10000] [--epochs 1] [--warmup-steps 5] [--out reports/proxy_throughput]``.

Both loops train the same preset (re-headed for the dataset) on the same Fashion-MNIST subset with
the same optimisation and training step (:func:`explore.train.optimisation`,
:func:`explore.train.train_step`: AdamW, warm-up + cosine, label smoothing), augmentation kind
(random crop with padding, horizontal flip) and precision (:func:`explore.train.choose_precision`,
with a gradient scaler for fp16), with cuDNN autotuning on for both, and are timed over the
training steps only (the first epoch included, as a study pays it). Before either is timed, each is
warmed up for ``--warmup-steps`` untimed steps on a model of its own, so that neither pays the
process's one-time costs (CUDA context, cuBLAS and cuDNN start-up and autotuning) in its timing.
The plain loop is what one writes first: a ``torch.utils.data.DataLoader`` over a Dataset whose
items go through torchvision transforms one image at a time, worker processes on the CPU,
``loss.item()`` every step. The proxy loop (:func:`explore.train.train_proxy`) keeps the uint8
data in memory (on the GPU when training there), converts and augments whole batches and, on
CUDA, synchronises only every few steps. A table, not a timed test: these machines are noisy.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from explore.arch import get_preset
from explore.device import resolve_device
from explore.errors import ExploreError
from explore.measure import device_name
from explore.nn import build
from explore.train import (
    DatasetBundle,
    ProxyRecipe,
    choose_precision,
    load_dataset,
    optimisation,
    seed_everything,
    train_proxy,
    train_step,
)

__all__ = ["ProxyBench", "plain_loop", "run_proxy_bench"]


class _TransformedImages(Dataset):
    """uint8 (N, C, H, W) images -> float tensors through per-image torchvision transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, img_size: int, mean, std) -> None:  # noqa: ANN001
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

    The optimisation and the step are the proxy loop's own (:func:`explore.train.optimisation`,
    :func:`explore.train.train_step`); only the data path differs, and the loss is read on the
    host every step.

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
    total = max(1, round(recipe.epochs * len(loader)))
    opt = optimisation(model, recipe, device, precision, total)
    seen, step, start = 0, 0, time.perf_counter()
    while step < total:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            loss = train_step(model, x, y, opt, device, precision, data.num_classes)
            if not math.isfinite(loss.item()):
                raise RuntimeError("non-finite loss")
            opt.scheduler.step()
            seen += len(y)
            step += 1
            if step >= total:
                break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - start)


@dataclass(frozen=True)
class ProxyBench:
    """Images/s of the plain loop and of the proxy loop, with what was run (for the report)."""

    plain_img_s: float
    proxy_img_s: float
    model: str
    img_size: int
    batch_size: int
    images: int
    epochs: float
    workers: int
    warmup_steps: int
    device_type: str
    device_name: str
    precision: str
    torch_version: str


def run_proxy_bench(*, device: str = "cpu", model: str = "efficientvit_m0", img_size: int = 64, batch_size: int = 256,
                    images: int = 10000, epochs: float = 1.0, workers: int = 2, warmup_steps: int = 5) -> ProxyBench:
    """Warm both loops up, then time the plain loop and the proxy loop on ``images`` Fashion-MNIST images.

    Raises:
        ExploreError: ``--images`` below one batch (field ``--images``), ``--warmup-steps`` < 0,
            an unknown preset, or a device that is not available.
    """
    if images < batch_size:
        raise ExploreError("--images", images, f"expected at least --batch-size {batch_size}")
    if warmup_steps < 0:
        raise ExploreError("--warmup-steps", warmup_steps, "expected >= 0")
    dev = resolve_device(device)
    # train_proxy ends with an (untimed) evaluation: a small val split keeps it short
    data = load_dataset("fashion_mnist", max_train=images, max_val=64, seed=0)
    config = get_preset(model, img_size=img_size, in_chans=data.in_chans, num_classes=data.num_classes)
    recipe = ProxyRecipe(epochs=epochs, batch_size=batch_size)
    precision = choose_precision(dev)

    def run_plain(r: ProxyRecipe) -> float:
        seed_everything(0)
        return plain_loop(build(config), data, img_size=img_size, recipe=r, device=dev, workers=workers,
                          precision=precision)

    def run_proxy(r: ProxyRecipe) -> float:
        seed_everything(0)
        return train_proxy(build(config), data, img_size=img_size, recipe=r, device=str(dev), seed=0,
                           precision=precision).train_img_s

    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = dev.type == "cuda"  # both loops autotune (the proxy loop does anyway)
    try:
        if warmup_steps:
            warm = replace(recipe, epochs=warmup_steps / (len(data.train) // batch_size))
            run_plain(warm)
            run_proxy(warm)
        plain = run_plain(recipe)
        ours = run_proxy(recipe)
    finally:
        torch.backends.cudnn.benchmark = benchmark
    name = device_name(dev) if dev.type == "cuda" else f"{device_name(dev)}, {torch.get_num_threads()} threads"
    return ProxyBench(plain, ours, model, img_size, batch_size, images, epochs, workers, warmup_steps, dev.type, name,
                      precision, torch.__version__)
