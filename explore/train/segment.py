"""Short-proxy training for semantic segmentation, and mIoU.

The same recipe as the classification proxy (:mod:`explore.train.proxy`: AdamW, warm-up + cosine,
the device's precision), with a per-pixel cross-entropy (pixels labelled :data:`IGNORE_INDEX` left
out) on logits upsampled bilinearly from the head's stride to the label size, as the MIT reference
trains (arXiv:2205.14756 §4), and random horizontal flips of image and mask together. Quality is
mean intersection over union over the classes (torchmetrics ``MulticlassJaccardIndex`` per class,
then the mean; a class absent from both prediction and labels of the whole split does not count).
Evaluation accumulates the split's confusion matrix on the device and reads it once, at the end (the
same per-class IoU as torchmetrics' from it): no host sync per batch.
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
    return _mean_iou(metric.compute())


def _jaccard(num_classes: int, device: torch.device):  # noqa: ANN202 - torchmetrics type
    from torchmetrics.classification import MulticlassJaccardIndex

    return MulticlassJaccardIndex(num_classes=num_classes, ignore_index=IGNORE_INDEX, average="none",
                                  zero_division=float("nan")).to(device)


def _mean_iou(per_class: torch.Tensor) -> float:
    """The mean over classes of the per-class IoUs, classes absent from both (NaN) left out; percent."""
    score = torch.nanmean(per_class.float())
    return 0.0 if torch.isnan(score) else 100.0 * float(score)


def _class_iou(confmat: torch.Tensor) -> torch.Tensor:
    """Per-class IoU (K,) of a confusion matrix (K, K) of (label, prediction) pixel counts: intersection /
    union in float32, NaN for a class absent from both (what ``MulticlassJaccardIndex`` with
    ``average="none"`` and ``zero_division=nan`` computes from the same matrix)."""
    confmat = confmat.float()
    hit = torch.diag(confmat)
    union = confmat.sum(0) + confmat.sum(1) - hit
    return torch.where(union > 0, hit / union.clamp(min=1), torch.full_like(hit, float("nan")))


def _runs_channels_last(model: nn.Module) -> bool:
    """Whether the model's convolutions hold channels_last weights (a 4-d parameter that is
    channels_last and not contiguous; 1 x 1 and depthwise weights are both, so they do not tell)."""
    return any(p.ndim == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in model.parameters())


def _resident(split: SegmentationSplit, dev: torch.device) -> SegmentationSplit:
    """``split`` held on a CUDA device for a run (batches then slice device memory, no pageable copy per
    batch), or itself on the CPU."""
    if dev.type == "cpu":
        return split
    return SegmentationSplit(split.images.to(dev), split.masks.to(dev))


def _forward(model: nn.Module, x: torch.Tensor, size: tuple[int, int], num_classes: int) -> torch.Tensor:
    """Per-pixel logits (B, K, H, W) at the label size (bilinear from the head's stride)."""
    logits = model(x)
    if logits.ndim != 4 or logits.shape[:2] != (x.shape[0], num_classes):
        raise ExploreError("model output", tuple(logits.shape), f"expected per-pixel logits (B, {num_classes}, h, w)")
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)


def evaluate_segmentation(model: nn.Module, split: SegmentationSplit, data: SegmentationData, *,
                          batch_size: int = 16, device: str | torch.device = "cpu") -> tuple[float, float]:
    """(mIoU %, pixel accuracy %) of a segmentation model on a split (eval mode, no gradients; the
    model's train/eval mode is restored). The split is copied to a CUDA device once, not per batch;
    the host reads the counts once, at the end.

    Args:
        model: maps float32 (B, C, H, W) to per-pixel logits (B, num_classes, H/s, W/s).
        split: uint8 images (N, C, H, W) and masks (N, H, W).
        data: the dataset (classes, input size, normalisation statistics).
        batch_size: images per forward pass.
        device: torch device string.

    Raises:
        DataError: an empty split, or a mask label that is neither a class nor ``IGNORE_INDEX``.
    """
    if len(split) == 0:
        raise DataError("val", 0, "expected at least one image to evaluate on")
    dev = resolve_device(device)
    normalize = Normalizer(data.size[0], data.mean, data.std, dev)
    return _evaluate(model, _resident(split, dev), data, normalize, batch_size, dev, choose_precision(dev))


def _evaluate(model: nn.Module, split: SegmentationSplit, data: SegmentationData, normalize: Normalizer,
              batch_size: int, dev: torch.device, precision: str) -> tuple[float, float]:
    """:func:`evaluate_segmentation` with the run's normaliser and precision.

    Every labelled pixel adds one to its (label, prediction) bin of a confusion matrix on the device
    (``index_add_``; ignored pixels go to a spare bin, so no boolean indexing and no ``bincount``, which
    reads its input's range on the host); mIoU and pixel accuracy come from that matrix, read once at the
    end. The input is channels_last when the model's weights are.

    Raises:
        DataError: a label that is neither a class nor ``IGNORE_INDEX``.
    """
    model.to(dev)
    was_training = model.training
    model.eval()
    k = data.num_classes
    bins = torch.zeros(k * k + 2, dtype=torch.int64, device=dev)  # + ignored, + out-of-range labels
    channels_last = _runs_channels_last(model)
    try:
        with torch.no_grad(), autocast(dev, precision):
            for start in range(0, len(split), batch_size):
                x = normalize(split.images[start : start + batch_size].to(dev))
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = split.masks[start : start + batch_size].to(dev).long()
                pred = _forward(model, x, y.shape[-2:], k).argmax(1)
                index = torch.where(y == IGNORE_INDEX, k * k, torch.where(y < k, y * k + pred, k * k + 1)).flatten()
                bins.index_add_(0, index, torch.ones_like(index))
    finally:
        model.train(was_training)
    counts = bins.cpu()
    if int(counts[-1]):
        raise DataError("masks", f"{int(counts[-1])} pixels",
                        f"expected class indices in [0, {k}) or {IGNORE_INDEX} (ignored)")
    confmat = counts[: k * k].view(k, k)
    labelled = int(confmat.sum())
    return _mean_iou(_class_iou(confmat)), 100.0 * int(torch.diag(confmat).sum()) / max(1, labelled)


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
        DataError: an empty split, or a val mask label that is neither a class nor ``IGNORE_INDEX``.
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
    val = _resident(data.val, dev)  # likewise the split evaluated after every epoch
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
            score = _evaluate(model, val, data, normalize, recipe.eval_batch_size, dev, precision)[0]
            eval_seconds += time.perf_counter() - t1
            on_epoch_end(epoch, score)
    t1 = time.perf_counter()
    final_miou, pixel_acc = _evaluate(model, val, data, normalize, recipe.eval_batch_size, dev, precision)
    eval_seconds += time.perf_counter() - t1
    model.train()
    return SegmentationResult(miou=final_miou, pixel_acc=pixel_acc,
                              train_loss=sum(losses) / len(losses) if losses else float("nan"), steps=step,
                              train_seconds=train_seconds, eval_seconds=eval_seconds,
                              train_img_s=images_seen / train_seconds if train_seconds > 0 else 0.0,
                              precision=precision)
