"""Short-proxy training for semantic segmentation, and mIoU.

The same recipe as the classification proxy (:mod:`explore.train.proxy`: AdamW, warm-up + cosine,
the device's precision), with a per-pixel cross-entropy (pixels labelled :data:`IGNORE_INDEX` left
out) on logits upsampled bilinearly from the head's stride to the label size, as the MIT reference
trains (arXiv:2205.14756 §4), and random horizontal flips of image and mask together. Quality is
mean intersection over union over the classes (torchmetrics ``MulticlassJaccardIndex`` per class,
then the mean; a class absent from both prediction and labels of the whole split does not count).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from explore.device import resolve_device
from explore.errors import DataError, ExploreError
from explore.train.normalize import Normalizer
from explore.train.proxy import (
    ProxyRecipe,
    autocast,
    check_losses,
    choose_precision,
    optimisation,
    seed_everything,
    train_step,
)
from explore.train.scenes import IGNORE_INDEX, SegmentationData, SegmentationSplit

__all__ = ["SegmentationResult", "miou", "evaluate_segmentation", "train_segmentation"]


@dataclass(frozen=True)
class SegmentationResult:
    """Outcome of :func:`train_segmentation`.

    Attributes:
        miou: mean IoU on the val split, percent (0-100).
        pixel_acc: share of labelled val pixels predicted right, percent.
        train_loss: mean training loss over the steps of the last epoch.
        steps, train_seconds, eval_seconds, train_img_s, precision: as :class:`explore.train.ProxyResult`.
    """

    miou: float
    pixel_acc: float
    train_loss: float
    steps: int
    train_seconds: float
    eval_seconds: float
    train_img_s: float
    precision: str = "fp32"

    @property
    def score(self) -> float:
        """The quality a study or an ablation ranks by: mIoU (%)."""
        return self.miou


def miou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """Mean IoU (percent) of predicted class maps against labels (``IGNORE_INDEX`` pixels left out).

    Args:
        pred: integer tensor (..., H, W) of predicted classes.
        target: integer tensor of the labels, same shape.
        num_classes: classes; a class absent from both does not count.

    Raises:
        DataError: shapes differ.
    """
    if pred.shape != target.shape:
        raise DataError("prediction", tuple(pred.shape), f"expected the labels' shape {tuple(target.shape)}")
    metric = _jaccard(num_classes, pred.device)
    metric.update(pred.long(), target.long())
    return _mean_iou(metric)


def _jaccard(num_classes: int, device: torch.device):  # noqa: ANN202 - torchmetrics type
    from torchmetrics.classification import MulticlassJaccardIndex

    return MulticlassJaccardIndex(num_classes=num_classes, ignore_index=IGNORE_INDEX, average="none",
                                  zero_division=float("nan")).to(device)


def _mean_iou(metric) -> float:  # noqa: ANN001 - torchmetrics type
    """The mean over classes of the per-class IoUs, classes absent from both (NaN) left out; percent."""
    per_class = metric.compute().float()
    score = torch.nanmean(per_class)
    return 0.0 if torch.isnan(score) else 100.0 * float(score)


def _forward(model: nn.Module, x: torch.Tensor, size: tuple[int, int], num_classes: int) -> torch.Tensor:
    """Per-pixel logits (B, K, H, W) at the label size (bilinear from the head's stride)."""
    logits = model(x)
    if logits.ndim != 4 or logits.shape[:2] != (x.shape[0], num_classes):
        raise ExploreError("model output", tuple(logits.shape), f"expected per-pixel logits (B, {num_classes}, h, w)")
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)


def evaluate_segmentation(model: nn.Module, split: SegmentationSplit, data: SegmentationData, *,
                          batch_size: int = 16, device: str | torch.device = "cpu") -> tuple[float, float]:
    """(mIoU %, pixel accuracy %) of a segmentation model on a split (eval mode, no gradients; the
    model's train/eval mode is restored).

    Raises:
        DataError: an empty split.
    """
    if len(split) == 0:
        raise DataError("val", 0, "expected at least one image to evaluate on")
    dev = resolve_device(device)
    normalize = Normalizer(data.size[0], data.mean, data.std, dev)
    return _evaluate(model, split, data, normalize, batch_size, dev, choose_precision(dev))


def _evaluate(model: nn.Module, split: SegmentationSplit, data: SegmentationData, normalize: Normalizer,
              batch_size: int, dev: torch.device, precision: str) -> tuple[float, float]:
    model.to(dev)
    was_training = model.training
    model.eval()
    metric = _jaccard(data.num_classes, dev)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    labelled = torch.zeros((), dtype=torch.int64, device=dev)
    try:
        with torch.no_grad(), autocast(dev, precision):
            for start in range(0, len(split), batch_size):
                x = normalize(split.images[start : start + batch_size].to(dev))
                y = split.masks[start : start + batch_size].to(dev).long()
                pred = _forward(model, x, y.shape[-2:], data.num_classes).argmax(1)
                metric.update(pred, y)
                valid = y != IGNORE_INDEX
                correct += (pred[valid] == y[valid]).sum()
                labelled += valid.sum()
    finally:
        model.train(was_training)
    return _mean_iou(metric), 100.0 * int(correct) / max(1, int(labelled))


def train_segmentation(model: nn.Module, data: SegmentationData, *, recipe: ProxyRecipe = ProxyRecipe(),
                       device: str | torch.device = "cpu", seed: int = 0,
                       on_epoch_end: Callable[[int, float], None] | None = None,
                       precision: str | None = None) -> SegmentationResult:
    """Train a segmentation model briefly on ``data.train`` and measure mIoU on ``data.val``.

    Args:
        model: maps float32 (B, C, H, W) to per-pixel logits (B, num_classes, H/s, W/s); trained in place.
        data: the splits (uint8 images and masks at the model's input size).
        recipe: the proxy recipe (``label_smoothing`` and ``augment`` crop are not used: flips only).
        device: as :func:`explore.train.train_proxy`.
        seed: likewise.
        precision: likewise.
        on_epoch_end: called ``(epoch, val mIoU %)`` after each full epoch.

    Returns:
        :class:`SegmentationResult`.

    Raises:
        ExploreError: a recipe field out of range, or a model whose output is not per-pixel logits.
        DataError: an empty split.
        NonFiniteLossError: the loss became NaN or infinite.
    """
    recipe.validate()
    dev = resolve_device(device)
    precision = precision or choose_precision(dev)
    n_train = len(data.train)
    if n_train == 0 or len(data.val) == 0:
        raise DataError("train" if n_train == 0 else "val", 0, "expected at least one image")
    seed_everything(seed)
    on_cuda = dev.type == "cuda"
    gen = torch.Generator(device=dev if on_cuda else "cpu").manual_seed(int(seed))
    # CUDA: hold the (uint8) scenes and masks on the GPU, so batches never cross the bus
    train_images = data.train.images.to(dev) if on_cuda else data.train.images
    train_masks = data.train.masks.to(dev) if on_cuda else data.train.masks
    normalize = Normalizer(data.size[0], data.mean, data.std, dev)
    model.to(dev)
    if on_cuda:
        model.to(memory_format=torch.channels_last)
    batch_size = min(recipe.batch_size, n_train)
    steps_per_epoch = n_train // batch_size
    total_steps = max(1, round(recipe.epochs * steps_per_epoch))
    opt = replace(optimisation(model, recipe, dev, precision, total_steps),
                  criterion=nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX))
    check_every = recipe.nan_check_every if on_cuda else 1  # one host read per this many steps

    label_size = tuple(train_masks.shape[-2:])

    def forward(x: torch.Tensor) -> torch.Tensor:  # logits upsampled to the label size
        return _forward(model, x, label_size, data.num_classes)

    step, images_seen, train_seconds, eval_seconds = 0, 0, 0.0, 0.0
    losses: list[float] = []
    score: float | None = None
    model.train()
    while step < total_steps:
        epoch = step // steps_per_epoch
        perm = torch.randperm(n_train, generator=gen, device=gen.device)
        losses = []
        pending: list[torch.Tensor] = []
        t0 = time.perf_counter()
        for i in range(steps_per_epoch):
            if step >= total_steps:
                break
            idx = perm[i * batch_size : (i + 1) * batch_size]
            x = normalize(train_images[idx].to(dev, non_blocking=True))
            y = train_masks[idx].to(dev, non_blocking=True).long()
            if recipe.augment:
                flip = torch.rand(len(idx), generator=gen, device=gen.device) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                y = torch.where(flip[:, None, None], y.flip(-1), y)
            if on_cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            pending.append(train_step(forward, x, y, opt, dev, precision, data.num_classes))
            if len(pending) >= check_every:
                losses += check_losses(pending, step + 1 - len(pending))
                pending = []
            opt.scheduler.step()
            images_seen += batch_size
            step += 1
        if pending:
            losses += check_losses(pending, step - len(pending))
        if on_cuda:
            torch.cuda.synchronize(dev)
        train_seconds += time.perf_counter() - t0
        if on_epoch_end is not None and len(losses) == steps_per_epoch:
            t1 = time.perf_counter()
            score = _evaluate(model, data.val, data, normalize, recipe.eval_batch_size, dev, precision)[0]
            eval_seconds += time.perf_counter() - t1
            on_epoch_end(epoch, score)
    t1 = time.perf_counter()
    final_miou, pixel_acc = _evaluate(model, data.val, data, normalize, recipe.eval_batch_size, dev, precision)
    eval_seconds += time.perf_counter() - t1
    model.train()
    return SegmentationResult(miou=final_miou, pixel_acc=pixel_acc,
                              train_loss=sum(losses) / len(losses) if losses else float("nan"), steps=step,
                              train_seconds=train_seconds, eval_seconds=eval_seconds,
                              train_img_s=images_seen / train_seconds if train_seconds > 0 else 0.0,
                              precision=precision)
