"""Segmentation data: scenes composed from Fashion-MNIST garments, and local image/mask folders.

The MIT paper (arXiv:2205.14756, §4: Cityscapes, ADE20K) is about dense prediction at high
resolution; neither data set can be downloaded here. :func:`compose_scenes` makes a real-image
segmentation task offline and deterministically: garments of the Fashion-MNIST package, resized to
sides between ``min_side`` and ``max_side`` pixels (by default 1/8 to 1/2 of the canvas, so a small
window cannot see a whole garment), are placed at random positions on a canvas with a faint noise
background; later garments occlude earlier ones. The label of a pixel is its garment's class + 1
where the resized garment is brighter than ``threshold``, else 0 (background). The val split is
drawn from the official test garments only.

:func:`load_mask_folder` reads a user's own pairs: ``ROOT/{train,val}/images/*`` with a mask of the
same stem in ``ROOT/{train,val}/masks/`` (one class index per pixel, 255 = ignore), or a
Cityscapes tree (``leftImg8bit/{train,val}/<city>/*_leftImg8bit.png`` with
``gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from explore.errors import DataError
from explore.train.splits import channel_stats, require_dir

__all__ = ["IGNORE_INDEX", "SEGMENTATION_DATASETS", "check_segmentation_dataset", "load_segmentation",
           "SegmentationSplit", "SegmentationData", "compose_scenes", "fashion_scenes",
           "load_mask_folder", "segmentation_info"]

IGNORE_INDEX = 255
"""Mask value of pixels that count neither in the loss nor in mIoU."""
SEGMENTATION_DATASETS = ("fashion_scenes", "mask_folder")
"""Data sets of ``--task segmentation``: composed scenes (built in, offline) and a local folder."""
DEFAULT_SCENES = (1000, 200)
"""Train and val scenes of ``fashion_scenes`` when no subset size is given."""


def check_segmentation_dataset(name: str, data_root: str | None) -> None:
    """Validate a segmentation data set name and root cheaply (nothing is read).

    Raises:
        DataError: field ``--dataset`` for an unknown name, ``--data-root`` for a missing root.
    """
    from explore.train.datasets import check_dataset

    if name not in SEGMENTATION_DATASETS:
        raise DataError("--dataset", name, f"--task segmentation takes one of {', '.join(SEGMENTATION_DATASETS)}")
    if name == "fashion_scenes":
        check_dataset("fashion_mnist", data_root)
    else:
        require_dir(data_root, name, "train/images + train/masks (and val/...), or a Cityscapes tree")


def load_segmentation(name: str, data_root: str | None, *, max_train: int | None = None, max_val: int | None = None,
                      seed: int = 0, size: int = 128) -> SegmentationData:
    """A segmentation data set at ``size`` x ``size`` pixels: ``fashion_scenes`` (``max_train`` /
    ``max_val`` scenes, default :data:`DEFAULT_SCENES`; drawn from ``seed``) or ``mask_folder``
    (``max_train`` / ``max_val`` pairs at most).

    Raises:
        DataError: as :func:`check_segmentation_dataset`, :func:`fashion_scenes`, :func:`load_mask_folder`.
    """
    check_segmentation_dataset(name, data_root)
    if name == "fashion_scenes":
        return fashion_scenes(data_root, train=max_train or DEFAULT_SCENES[0], val=max_val or DEFAULT_SCENES[1],
                              canvas=size, seed=seed)
    return load_mask_folder(data_root, size=(size, size), max_train=max_train, max_val=max_val)


@dataclass(frozen=True)
class SegmentationSplit:
    """One split held in memory.

    Attributes:
        images: uint8 (N, C, H, W), pixel values 0..255.
        masks: uint8 (N, H, W), class indices in [0, num_classes), or :data:`IGNORE_INDEX`.
    """

    images: torch.Tensor
    masks: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class SegmentationData:
    """A segmentation data set: train and val splits and their metadata.

    Attributes:
        name: ``fashion_scenes`` or ``mask_folder``.
        train, val: the splits.
        num_classes: classes including background (fashion_scenes: 11, 0 = background).
        in_chans: image channels.
        mean, std: per-channel normalisation in [0, 1] units.
        classes: class names in index order.
        source: where the splits came from, in words (no absolute path).
    """

    name: str
    train: SegmentationSplit
    val: SegmentationSplit
    num_classes: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()
    source: str = ""

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the images."""
        return int(self.train.images.shape[-2]), int(self.train.images.shape[-1])


def compose_scenes(garments: torch.Tensor, labels: torch.Tensor, count: int, canvas: int | tuple[int, int], *,
                   seed: int, objects: tuple[int, int] = (2, 5), min_side: int | None = None,
                   max_side: int | None = None, threshold: int = 40, noise: int = 24) -> SegmentationSplit:
    """Compose ``count`` scenes from garments.

    Args:
        garments: uint8 (N, 1, h, w) garment images (Fashion-MNIST: 28 x 28, white garment on black).
        labels: int64 (N,) their classes, 0..K-1 (scene labels are class + 1; 0 is background).
        count: scenes to make.
        canvas: side, or (H, W), of a scene in pixels.
        seed: every draw (garments, sides, positions, noise) comes from it.
        objects: (fewest, most) garments per scene, inclusive.
        min_side: smallest side of a garment in pixels (default canvas/8 of the shorter side).
        max_side: largest side (default canvas/2 of the shorter side).
        threshold: resized garment pixels brighter than this are labelled as the garment.
        noise: background pixels are uniform in [0, noise).

    Returns:
        :class:`SegmentationSplit` (uint8 images (count, 1, H, W), uint8 masks (count, H, W)).

    Raises:
        DataError: no garments, or sides that do not fit the canvas.
    """
    height, width = (canvas, canvas) if isinstance(canvas, int) else canvas
    short = min(height, width)
    low = min_side or max(4, short // 8)
    high = max_side or max(low, short // 2)
    if len(garments) == 0:
        raise DataError("garments", 0, "expected at least one garment image")
    if not 1 <= low <= high <= short:
        raise DataError("canvas", canvas, f"garment sides {low}..{high} px must fit a {height}x{width} canvas")
    gen = torch.Generator().manual_seed(int(seed))
    images = torch.randint(0, max(1, noise), (count, 1, height, width), generator=gen, dtype=torch.uint8)
    masks = torch.zeros((count, height, width), dtype=torch.uint8)
    for i in range(count):
        n = int(torch.randint(objects[0], objects[1] + 1, (1,), generator=gen))
        picks = torch.randint(0, len(garments), (n,), generator=gen)
        sides = torch.randint(low, high + 1, (n,), generator=gen)
        for pick, side in zip(picks.tolist(), sides.tolist()):
            y = int(torch.randint(0, height - side + 1, (1,), generator=gen))
            x = int(torch.randint(0, width - side + 1, (1,), generator=gen))
            garment = F.interpolate(garments[pick : pick + 1].float(), size=(side, side), mode="bilinear",
                                    align_corners=False)[0, 0].round().clamp(0, 255).to(torch.uint8)
            inside = garment > threshold
            window = images[i, 0, y : y + side, x : x + side]
            window[inside] = garment[inside]
            masks[i, y : y + side, x : x + side][inside] = int(labels[pick]) + 1
    return SegmentationSplit(images, masks)


def fashion_scenes(data_root: str | None = None, *, train: int = 1000, val: int = 200,
                   canvas: int | tuple[int, int] = 256, seed: int = 0, **compose: Any) -> SegmentationData:
    """Scenes of Fashion-MNIST garments (the Debian package's files): ``train`` scenes from the
    training garments, ``val`` from the test garments (:func:`compose_scenes`; ``compose`` passes
    its keyword options).

    Raises:
        DataError: the package is missing (names ``--data-root``), or bad sizes.
    """
    from explore.train.datasets import FASHION_MNIST_CLASSES, load_dataset

    if train < 1 or val < 1:
        raise DataError("--max-train" if train < 1 else "--max-val", train if train < 1 else val,
                        "expected at least one scene")
    garments = load_dataset("fashion_mnist", data_root, seed=seed)
    train_split = compose_scenes(garments.train.images, garments.train.labels, train, canvas, seed=seed, **compose)
    val_split = compose_scenes(garments.val.images, garments.val.labels, val, canvas, seed=seed + 1_000_003, **compose)
    side = f"{canvas}x{canvas}" if isinstance(canvas, int) else f"{canvas[0]}x{canvas[1]}"
    mean, std = channel_stats(train_split.images)
    return SegmentationData(
        "fashion_scenes", train_split, val_split, 11, 1, mean, std, ("background", *FASHION_MNIST_CLASSES),
        f"train: {train} {side} scenes of training garments; val: {val} scenes of test garments (seed {seed})")


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of a split: plain layout or Cityscapes names."""
    plain = root / split / "images"
    if plain.is_dir():
        masks = root / split / "masks"
        out = []
        for image in sorted(p for p in plain.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES):
            mask = next((masks / f"{image.stem}{s}" for s in (".png", ".tif", ".bmp")
                         if (masks / f"{image.stem}{s}").is_file()), None)
            if mask is None:
                raise DataError("--data-root", f"{split}/images/{image.name}", f"no mask {split}/masks/{image.stem}.png")
            out.append((image, mask))
        return out
    city = root / "leftImg8bit" / split
    if city.is_dir():
        out = []
        for image in sorted(city.rglob("*_leftImg8bit.png")):
            stem = image.name[: -len("_leftImg8bit.png")]
            mask = root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelTrainIds.png"
            if not mask.is_file():
                raise DataError("--data-root", f"leftImg8bit/{split}/{image.parent.name}/{image.name}",
                                f"no gtFine/{split}/{image.parent.name}/{stem}_gtFine_labelTrainIds.png")
            out.append((image, mask))
        return out
    return []


def load_mask_folder(data_root: str | None, *, size: tuple[int, int] | None = None, max_train: int | None = None,
                     max_val: int | None = None, num_classes: int | None = None) -> SegmentationData:
    """Image/mask pairs from a local folder (see the module docstring), resized to ``size`` (H, W)
    (images bilinear, masks nearest; default: the first image's size).

    Args:
        num_classes: classes (default: 1 + the largest mask value other than 255).

    Raises:
        DataError: field ``--data-root``: missing folder, no pairs, an image without its mask, or a
            mask value >= ``num_classes`` (other than 255).
    """
    from PIL import Image

    root = Path(require_dir(data_root, "mask_folder", "train/images + train/masks (and val/...), or a Cityscapes "
                                                      "tree (leftImg8bit/, gtFine/)"))
    splits = {}
    for split, limit in (("train", max_train), ("val", max_val)):
        pairs = _pairs(root, split)
        if not pairs:
            raise DataError("--data-root", data_root, f"no {split} image/mask pairs: expected {split}/images/ with "
                                                      f"{split}/masks/, or leftImg8bit/{split}/ with gtFine/{split}/")
        pairs = pairs[:limit] if limit else pairs
        images, masks = [], []
        for image_path, mask_path in pairs:
            image = Image.open(image_path)
            image = image.convert("L" if image.mode in ("L", "I;16", "I", "1") else "RGB")
            mask = Image.open(mask_path)
            if size is None:
                size = (image.height, image.width)
            image = image.resize((size[1], size[0]), Image.BILINEAR)
            mask = mask.resize((size[1], size[0]), Image.NEAREST)
            array = np.asarray(image, dtype=np.uint8)
            images.append(torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy()))
            masks.append(torch.from_numpy(np.asarray(mask, dtype=np.uint8).copy()))
        splits[split] = SegmentationSplit(torch.stack(images), torch.stack(masks))
    values = torch.cat([s.masks.flatten() for s in splits.values()])
    present = values[values != 255]
    top = int(present.max()) + 1 if len(present) else 1
    classes = num_classes or top
    if top > classes:
        raise DataError("--data-root", data_root, f"mask values up to {top - 1}, more than {classes} classes")
    mean, std = channel_stats(splits["train"].images)
    return SegmentationData("mask_folder", splits["train"], splits["val"], classes, int(splits["train"].images.shape[1]),
                            mean, std, tuple(str(i) for i in range(classes)),
                            f"train: {len(splits['train'])} pairs; val: {len(splits['val'])} pairs (local folder)")


def segmentation_info(data: SegmentationData) -> dict[str, Any]:
    """Plain JSON facts about a segmentation data set (stored on studies, shown in reports)."""
    return {"dataset": data.name, "num_classes": data.num_classes, "classes": list(data.classes[:20]),
            "train_images": len(data.train), "val_images": len(data.val), "size": list(data.size),
            "source": data.source}
