"""Short-proxy training: train a candidate briefly and measure its top-1 on a held-out split.

The recipe (AdamW, linear warm-up then cosine decay, label smoothing, crop + flip augmentation)
is ours; it ranks architectures cheaply rather than reproducing any paper's full schedule.
Batches are drawn by a seeded permutation over the in-memory uint8 tensors of a
:class:`~explore.data.DatasetBundle` and converted per batch on the target device.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from explore.data import DatasetBundle, ImageData, to_model_input
from explore.device import resolve_device
from explore.errors import DataError, ExploreError, NonFiniteLossError

__all__ = ["ProxyRecipe", "ProxyResult", "train_proxy", "evaluate", "seed_everything"]


@dataclass(frozen=True)
class ProxyRecipe:
    """Hyper-parameters of a short proxy training run.

    Attributes:
        epochs: passes over the training split; may be fractional (0.5 runs half an epoch of
            steps). Must be > 0.
        batch_size: training images per step (capped at the training-set size).
        lr: AdamW peak learning rate.
        weight_decay: AdamW weight decay, applied to weights of 2 or more dimensions only.
        warmup_fraction: share of the total steps spent in linear warm-up, in [0, 1); the rest
            decays by a cosine to 0.
        label_smoothing: label smoothing of the cross-entropy loss, in [0, 1).
        augment: random crop (zero padding of ``img_size // 8`` pixels, at least 1, in
            normalised units) and horizontal flip, applied per sample on each batch.
        eval_batch_size: images per evaluation batch.
        max_seconds: optional wall-clock budget for training steps, in seconds (evaluation
            time excluded); training stops after the step that exceeds it.
        compile: train through ``torch.compile`` (worth it for long GPU runs; the first steps
            pay the compilation).
        nan_check_every: on CUDA, check the loss for NaN/inf every this many steps (one host
            sync each) instead of every step; on CPU every step is checked.
    """

    epochs: float = 1.0
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.1
    augment: bool = True
    eval_batch_size: int = 256
    max_seconds: float | None = None
    compile: bool = False
    nan_check_every: int = 25

    def validate(self) -> None:
        """Check every field.

        Raises:
            ExploreError: a field (named ``"recipe.<field>"``) is out of range.
        """
        checks = [
            ("epochs", self.epochs, _is_number(self.epochs) and self.epochs > 0, "expected a number > 0"),
            ("batch_size", self.batch_size, _is_int(self.batch_size) and self.batch_size >= 1,
             "expected an integer >= 1"),
            ("lr", self.lr, _is_number(self.lr) and self.lr > 0, "expected a number > 0"),
            ("weight_decay", self.weight_decay, _is_number(self.weight_decay) and self.weight_decay >= 0,
             "expected a number >= 0"),
            ("warmup_fraction", self.warmup_fraction,
             _is_number(self.warmup_fraction) and 0 <= self.warmup_fraction < 1, "expected a number in [0, 1)"),
            ("label_smoothing", self.label_smoothing,
             _is_number(self.label_smoothing) and 0 <= self.label_smoothing < 1, "expected a number in [0, 1)"),
            ("eval_batch_size", self.eval_batch_size, _is_int(self.eval_batch_size) and self.eval_batch_size >= 1,
             "expected an integer >= 1"),
            ("nan_check_every", self.nan_check_every, _is_int(self.nan_check_every) and self.nan_check_every >= 1,
             "expected an integer >= 1"),
            ("max_seconds", self.max_seconds,
             self.max_seconds is None or (_is_number(self.max_seconds) and self.max_seconds > 0),
             "expected None or a number of seconds > 0"),
        ]
        for field, value, ok, expected in checks:
            if not ok:
                raise ExploreError(f"recipe.{field}", value, expected)


@dataclass(frozen=True)
class ProxyResult:
    """Outcome of :func:`train_proxy`.

    Attributes:
        top1: top-1 accuracy on the val split, percent (0-100).
        train_loss: mean training loss over the steps of the last (possibly partial) epoch.
        steps: optimizer steps run (fewer than planned when ``max_seconds`` stopped training).
        train_seconds: wall-clock seconds spent in training steps (evaluation excluded).
        eval_seconds: wall-clock seconds spent in evaluation (all evaluations of the run).
        train_img_s: training throughput, images/s (images seen / train_seconds).
    """

    top1: float
    train_loss: float
    steps: int
    train_seconds: float
    eval_seconds: float
    train_img_s: float


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and all CUDA devices).

    Args:
        seed: the seed, a non-negative integer.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weights of >= 2 dims, none on norms, biases and attention biases."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or "attention_biases" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak lr at step s: linear warm-up to 1, then cosine decay to 0."""

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-sample random crop (zero padding) and horizontal flip of float (B, C, H, W)."""
    b, _, h, w = x.shape
    pad = max(1, min(h, w) // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    dev = gen.device  # draws happen where the generator lives (the GPU on CUDA: no host round trip)
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=dev).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=dev).to(x.device)
    flip = (torch.rand((b,), generator=gen, device=dev) < 0.5).to(x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = torch.arange(w, device=x.device).expand(b, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + ox[:, None]  # (B, W)
    bidx = torch.arange(b, device=x.device)[:, None, None]
    out = padded[bidx, :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


def _prepare(x_uint8: torch.Tensor, device: torch.device, img_size: int, mean, std) -> torch.Tensor:
    x = to_model_input(x_uint8.to(device, non_blocking=True), img_size, mean, std)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return torch.autocast(device_type=device.type, enabled=False)


def evaluate(
    model: nn.Module,
    data: ImageData,
    *,
    img_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> float:
    """Top-1 accuracy of a model on a split.

    The model is moved to ``device`` and run in eval mode without gradients (bf16 autocast and
    channels_last on CUDA); its previous train/eval mode is restored afterwards.

    Args:
        model: maps float32 (B, C, img_size, img_size) to logits (B, num_classes).
        data: uint8 images (N, C, H, W) and int64 labels (N,).
        img_size: side in pixels of the model input.
        mean: per-channel mean in [0, 1] units, length C.
        std: per-channel standard deviation in [0, 1] units, length C.
        batch_size: images per forward pass.
        device: torch device string.

    Returns:
        Top-1 accuracy, percent (0-100).

    Raises:
        DataError: the split is empty.
        DeviceError: the device is unknown or unavailable.
    """
    n = len(data.labels)
    if n == 0:
        raise DataError("val", 0, "expected at least one image to evaluate on")
    dev = resolve_device(device)
    model.to(dev)
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.no_grad(), _autocast(dev):
            for start in range(0, n, batch_size):
                x = _prepare(data.images[start : start + batch_size], dev, img_size, mean, std)
                y = data.labels[start : start + batch_size].to(dev, non_blocking=True)
                logits = model(x)
                correct += int((logits.argmax(dim=1) == y).sum().item())
    finally:
        model.train(was_training)
    return 100.0 * correct / n


def train_proxy(
    model: nn.Module,
    data: DatasetBundle,
    *,
    img_size: int,
    recipe: ProxyRecipe = ProxyRecipe(),
    device: str | torch.device = "cpu",
    seed: int = 0,
    on_epoch_end: Callable[[int, float], None] | None = None,
) -> ProxyResult:
    """Train a model briefly on ``data.train`` and measure its top-1 on ``data.val``.

    AdamW (no weight decay on 1-D parameters or parameters named ``*attention_biases*``),
    linear warm-up then cosine decay to 0 (per step), cross-entropy with label smoothing.
    Each epoch visits a seeded random permutation of the training split in batches of
    ``recipe.batch_size`` (the last incomplete batch is dropped). On CUDA the whole uint8
    dataset is moved to the GPU once, batches are gathered, converted and augmented there (the
    random draws too), the model runs in bf16 autocast with channels_last, and the host
    synchronises only every ``recipe.nan_check_every`` steps, so small models are not held back
    by the host. On CPU it runs in float32, and a run is reproducible given ``seed``.

    Args:
        model: maps float32 (B, C, img_size, img_size) to logits (B, num_classes); moved to
            ``device`` and trained in place.
        data: the dataset; images uint8 (N, C, H, W) are converted per batch by
            :func:`~explore.data.to_model_input`.
        img_size: side in pixels of the model input.
        recipe: training hyper-parameters.
        device: torch device string (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``).
        seed: seeds torch, NumPy, ``random`` and the batch order and augmentation.
        on_epoch_end: when given, called as ``on_epoch_end(epoch_index, val_top1)`` after
            each full epoch, with top-1 in percent (it may raise, e.g. to prune a trial; the
            exception propagates). Without it the model is evaluated only at the end.

    Returns:
        A :class:`ProxyResult` (top-1 percent, loss, steps, seconds, img/s).

    Raises:
        ExploreError: a recipe field is out of range, or the model's logits do not have shape
            (B, num_classes).
        DataError: the training or val split is empty.
        DeviceError: the device is unknown or unavailable.
        NonFiniteLossError: the loss became NaN or infinite (raised at that step).
    """
    recipe.validate()
    dev = resolve_device(device)
    n_train = len(data.train.labels)
    if n_train == 0:
        raise DataError("train", 0, "expected at least one training image")
    if len(data.val.labels) == 0:
        raise DataError("val", 0, "expected at least one image to evaluate on")

    seed_everything(seed)
    on_cuda = dev.type == "cuda"
    gen = torch.Generator(device=dev if on_cuda else "cpu").manual_seed(int(seed))
    # CUDA: hold the (uint8) training split on the GPU, so batches never cross the bus
    train_images = data.train.images.to(dev) if on_cuda else data.train.images
    train_labels = data.train.labels.to(dev) if on_cuda else data.train.labels

    model.to(dev)
    if on_cuda:
        model.to(memory_format=torch.channels_last)
    groups = _param_groups(model, recipe.weight_decay)
    if not groups:
        raise ExploreError("model", type(model).__name__, "expected at least one trainable parameter")
    optimizer = torch.optim.AdamW(groups, lr=recipe.lr)
    forward = torch.compile(model) if recipe.compile else model

    batch_size = min(recipe.batch_size, n_train)
    steps_per_epoch = n_train // batch_size
    total_steps = max(1, round(recipe.epochs * steps_per_epoch))
    warmup_steps = int(recipe.warmup_fraction * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total_steps, warmup_steps))
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    mean, std = data.mean, data.std
    check_every = recipe.nan_check_every if on_cuda else 1

    def eval_val() -> float:
        return evaluate(
            model, data.val, img_size=img_size, mean=mean, std=std,
            batch_size=recipe.eval_batch_size, device=dev,
        )

    def check_losses(losses: list[torch.Tensor], first_step: int) -> list[float]:
        values = torch.stack(losses).tolist()  # one host sync for the lot
        for offset, value in enumerate(values):
            if not math.isfinite(value):
                raise NonFiniteLossError(first_step + offset, value)
        return values

    train_seconds = 0.0
    eval_seconds = 0.0
    images_seen = 0
    step = 0
    epoch_losses: list[float] = []
    top1: float | None = None
    model.train()
    while step < total_steps:
        epoch = step // steps_per_epoch
        epoch_losses = []
        pending: list[torch.Tensor] = []
        perm = torch.randperm(n_train, generator=gen, device=gen.device)
        stopped = False
        t0 = time.perf_counter()
        for i in range(steps_per_epoch):
            if step >= total_steps:
                break
            idx = perm[i * batch_size : (i + 1) * batch_size]
            x = _prepare(train_images[idx], dev, img_size, mean, std)
            if recipe.augment:
                x = _augment(x, gen)
                if on_cuda:
                    x = x.contiguous(memory_format=torch.channels_last)
            y = train_labels[idx].to(dev, non_blocking=True)
            with _autocast(dev):
                logits = forward(x)
            if step == 0 and (logits.ndim != 2 or logits.shape != (x.shape[0], data.num_classes)):
                raise ExploreError(
                    "model output", tuple(logits.shape), f"expected logits (B, {data.num_classes})"
                )
            loss = criterion(logits.float(), y)
            pending.append(loss.detach())
            if len(pending) >= check_every:
                epoch_losses += check_losses(pending, step + 1 - len(pending))
                pending = []
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            images_seen += int(idx.numel())
            step += 1
            if recipe.max_seconds is not None and train_seconds + time.perf_counter() - t0 >= recipe.max_seconds:
                stopped = True
                break
        if pending:
            epoch_losses += check_losses(pending, step - len(pending))
        if on_cuda:
            torch.cuda.synchronize(dev)
        train_seconds += time.perf_counter() - t0
        epoch_done = len(epoch_losses) == steps_per_epoch
        if on_epoch_end is not None and epoch_done:
            t1 = time.perf_counter()
            top1 = eval_val()
            eval_seconds += time.perf_counter() - t1
            on_epoch_end(epoch, top1)
        elif not epoch_done:
            top1 = None
        if stopped:
            break

    if top1 is None:  # no evaluation yet of the final weights
        t0 = time.perf_counter()
        top1 = eval_val()
        eval_seconds += time.perf_counter() - t0
    model.train()
    train_loss = sum(epoch_losses) / len(epoch_losses) if epoch_losses else float("nan")
    return ProxyResult(
        top1=top1,
        train_loss=train_loss,
        steps=step,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        train_img_s=images_seen / train_seconds if train_seconds > 0 else 0.0,
    )
