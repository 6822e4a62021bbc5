"""Dataset splits held in memory as uint8 tensors, and the helpers every loader shares.

An :class:`ImageData` is one split (images uint8 ``(N, C, H, W)``, labels int64 ``(N,)``); a
:class:`DatasetBundle` is a train and a val split with their metadata, as :func:`explore.train.load_dataset`
returns it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from explore.errors import DataError

__all__ = ["ImageData", "DatasetBundle", "dataset_info", "subset", "take", "require_dir", "channel_stats"]


@dataclass(frozen=True)
class ImageData:
    """One split of a dataset, held in memory.

    Attributes:
        images: uint8 tensor (N, C, H, W), pixel values 0..255.
        labels: int64 tensor (N,), class indices in ``[0, num_classes)``.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class DatasetBundle:
    """A dataset ready for proxy training: a train split, a held-out val split and its metadata.

    Attributes:
        name: one of :data:`explore.train.DATASETS`.
        train: training split (uint8 images (N, C, H, W), int64 labels (N,)).
        val: held-out split on which top-1 (percent) is measured.
        num_classes: number of classes; labels lie in ``[0, num_classes)``.
        in_chans: number of image channels C (1 for fashion_mnist, 3 otherwise).
        mean: per-channel mean in [0, 1] units, length ``in_chans``, for normalisation.
        std: per-channel standard deviation in [0, 1] units, length ``in_chans``.
        classes: class names, label order (length ``num_classes``).
        source: where each split came from, in words, with folder names relative to the data root
            (e.g. ``"train: train/ (50000 images); val: test/ (10000 images), ..."``); never an
            absolute path.
    """

    name: str
    train: ImageData
    val: ImageData
    num_classes: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()
    source: str = ""


def dataset_info(bundle: DatasetBundle, max_names: int = 20) -> dict[str, Any]:
    """What a study was trained on, as plain JSON values (stored on the study, shown in headers).

    Args:
        bundle: a loaded dataset.
        max_names: keep at most this many class names (the first ones, label order).

    Returns:
        ``{"dataset", "num_classes", "classes" (first names), "train_images", "val_images",
        "source"}``; image counts are those of the (subset) splits used.
    """
    return {
        "dataset": bundle.name,
        "num_classes": int(bundle.num_classes),
        "classes": [str(c) for c in bundle.classes[:max_names]],
        "train_images": len(bundle.train),
        "val_images": len(bundle.val),
        "source": bundle.source,
    }


def require_dir(data_root: str | None, name: str, what: str) -> str:
    """The data root a loader needs, checked to be a folder (``what`` says what it should hold).

    Raises:
        DataError: field ``--data-root``: not given, or not a folder.
    """
    if data_root is None:
        raise DataError("--data-root", None, f"{name} needs --data-root: {what}")
    if not os.path.isdir(data_root):
        raise DataError("--data-root", data_root, f"no such folder; expected {what}")
    return data_root


def subset(n: int, k: int | None, gen: torch.Generator) -> torch.Tensor:
    """Sorted int64 indices of a seeded random subset of size min(n, k) (all when k is None)."""
    if k is None or k >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=gen)[:k].sort().values


def take(data: ImageData, k: int | None, gen: torch.Generator) -> ImageData:
    """A seeded random subset of at most ``k`` images of a split (the split itself when it is all)."""
    idx = subset(len(data), k, gen)
    if idx.numel() == len(data):
        return data
    return ImageData(data.images[idx].contiguous(), data.labels[idx].contiguous())


_STATS_CHUNK = 1 << 24
"""Values (images x channels x pixels) converted to float64 at a time by :func:`channel_stats` (128 MiB)."""


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std in [0, 1] units of uint8 images (N, C, H, W), summed in
    float64 over chunks of at most 1024 images and :data:`_STATS_CHUNK` values, so that large images
    (segmentation scenes at 512 px and more) never need a float copy of the whole split."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    per_image = max(1, images[0].numel()) if len(images) else 1
    for chunk in images.split(max(1, min(1024, _STATS_CHUNK // per_image))):
        x = chunk.to(torch.float64).div_(255.0).transpose(0, 1).reshape(c, -1)
        total += x.sum(1)
        total_sq += (x * x).sum(1)
        count += x.shape[1]
    mean = total / max(count, 1)
    var = (total_sq / max(count, 1) - mean * mean).clamp_min(0.0)
    std = var.sqrt().clamp_min(1e-3)  # constant images would otherwise divide by zero
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
