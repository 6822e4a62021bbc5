"""Inherited scoring: a subnet with the supernet's weights, BN statistics recalibrated on a few
training images, scored by top-1 on a validation split (no training).

Follows: Once-for-All (arXiv:1908.09791 §3.3: the running statistics of a subnet are not those of
the supernet; reset them and forward 2,000 training images, cumulative averaging).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from explore.arch.config import ArchConfig
from explore.errors import DataError
from explore.train import ImageData, Normalizer, evaluate
from explore.device import resolve_device
from explore.supernet.elastic import Supernet, extract

__all__ = ["recalibrate_bn", "inherited_top1", "RECALIBRATION_IMAGES"]

RECALIBRATION_IMAGES = 2000
"""Training images forwarded to recalibrate the BN statistics (Once-for-All's 2,000)."""


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data: ImageData, *, img_size: int, mean: Sequence[float], std: Sequence[float],
                   images: int = RECALIBRATION_IMAGES, batch_size: int = 256, device: str | torch.device = "cpu") -> nn.Module:
    """Reset every BatchNorm's running statistics and re-estimate them from the first ``images``
    training images (B, C, H, W uint8), forwarded in train mode with ``momentum=None``
    (cumulative averaging: the exact mean over the batches); the model is left in eval mode.

    Args:
        model: a plain model (e.g. :func:`~explore.supernet.extract`'s).
        data: training split.
        img_size: side in pixels of the model input.
        mean: per-channel mean in [0, 1] units.
        std: per-channel standard deviation in [0, 1] units.
        images: how many training images (all when the split is smaller).
        batch_size: images per forward pass.
        device: torch device string.

    Returns:
        ``model``, on ``device``, in eval mode.

    Raises:
        DataError: ``images`` < 1 or the split is empty.
    """
    if images < 1 or len(data) == 0:
        raise DataError("--recalibration-images", images, "expected at least one training image")
    dev = resolve_device(device)
    model.to(dev)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    normalize = Normalizer(img_size, mean, std, dev)
    model.train()
    try:
        n = min(images, len(data))
        for start in range(0, n, batch_size):
            model(normalize(data.images[start:min(start + batch_size, n)].to(dev)))
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        model.eval()
    return model


def inherited_top1(supernet: Supernet, config: ArchConfig, train: ImageData, val: ImageData, *,
                   mean: Sequence[float], std: Sequence[float], images: int = RECALIBRATION_IMAGES,
                   batch_size: int = 256, device: str | torch.device = "cpu") -> float:
    """Inherited top-1 of a subnet: :func:`~explore.supernet.extract`, :func:`recalibrate_bn` on
    ``images`` training images, then top-1 on ``val`` (percent, 0-100).

    Args:
        supernet: the trained supernet.
        config: a point of its space.
        train: training split (for recalibration).
        val: validation split.
        mean: per-channel mean in [0, 1] units.
        std: per-channel standard deviation in [0, 1] units.
        images: recalibration images.
        batch_size: images per forward pass.
        device: torch device string.

    Raises:
        ExploreError: ``config`` is outside the supernet's space.
        DataError: an empty split.
    """
    model = extract(supernet, config)
    recalibrate_bn(model, train, img_size=config.img_size, mean=mean, std=std, images=images,
                   batch_size=batch_size, device=device)
    return evaluate(model, val, img_size=config.img_size, mean=mean, std=std, batch_size=batch_size, device=device)
