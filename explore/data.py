"""Image classification datasets held in memory as uint8 tensors.

Every dataset is loaded once into an :class:`ImageData` pair of tensors (images uint8
``(N, C, H, W)``, labels int64 ``(N,)``) so that short proxy training runs can draw batches by
indexing, without a ``DataLoader`` or per-item PIL transforms. :func:`to_model_input` converts a
uint8 batch to the normalised float32 input a model expects, on whatever device the batch is on.

Supported datasets (``--dataset``):

* ``fashion_mnist``: the gzipped IDX files of the Debian package ``dataset-fashion-mnist``
  (default root :data:`FASHION_MNIST_ROOT`); the test split is the val split. 1 channel, 28x28.
* ``cifar10`` / ``cifar100``: torchvision's on-disk format (``cifar-10-batches-py`` /
  ``cifar-100-python`` inside ``--data-root``); nothing is downloaded. 3 channels, 32x32.
* ``imagefolder``: a local tree of class folders (torchvision's ``ImageFolder``): either
  ``root/train/<class>/`` beside a held-out ``root/<split>/<class>/`` folder (the first of
  :data:`HELD_OUT_FOLDERS` that exists: ``val`` > ``valid`` > ``validation`` > ``test``),
  ``root/train/<class>/`` alone, or ``root/<class>/``; the last two are split by ``val_fraction``.
  Images are resized and centre-cropped to ``img_size``, RGB.
* ``synthetic``: deterministic random images with a learnable class signal, for tests.
"""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from explore.errors import DataError

__all__ = [
    "ImageData",
    "DatasetBundle",
    "DATASETS",
    "FASHION_MNIST_ROOT",
    "FASHION_MNIST_CLASSES",
    "HELD_OUT_FOLDERS",
    "check_dataset",
    "dataset_info",
    "load_dataset",
    "Normalizer",
    "to_model_input",
]

DATASETS = ("fashion_mnist", "cifar10", "cifar100", "imagefolder", "synthetic")
"""Dataset names accepted by :func:`load_dataset` (``--dataset``)."""

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
"""Where the Debian package ``dataset-fashion-mnist`` installs its IDX files."""

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
"""Fashion-MNIST's class names, label 0 to 9 (Xiao et al. 2017, the dataset's README)."""

HELD_OUT_FOLDERS = ("val", "valid", "validation", "test")
"""Names (any case) of the held-out folder beside ``train/`` in an imagefolder root, in the order of
preference: the first that exists is the val split, the others are not read."""

_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_CIFAR_LAYOUT = {
    # name: (folder inside root, train files, val files, number of classes)
    "cifar10": (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        10,
    ),
    "cifar100": ("cifar-100-python", ("train",), ("test",), 100),
}
# Per-channel statistics (in [0, 1] units) of the standard training splits.
_STATS = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_SYNTHETIC_CLASSES = 10
_SYNTHETIC_DEFAULT_SIZES = (512, 256)


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
        name: one of :data:`DATASETS`.
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


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def check_dataset(name: str, data_root: str | None) -> None:
    """Validate a dataset name and root cheaply, without reading the data.

    Checks that the name is known, that the root folder exists and that the files or folders the
    loader needs are present. ``synthetic`` needs no root (it is ignored).

    Args:
        name: dataset name, one of :data:`DATASETS`.
        data_root: folder holding the data; ``None`` means the default (only ``fashion_mnist``
            has one, :data:`FASHION_MNIST_ROOT`).

    Raises:
        DataError: field ``"--dataset"`` for an unknown name; field ``"--data-root"`` for a
            missing root, a root that is required but not given, or missing expected files.
    """
    if name not in DATASETS:
        raise DataError("--dataset", name, f"expected one of {', '.join(DATASETS)}")
    if name == "synthetic":
        return
    if name == "fashion_mnist":
        _fashion_root(data_root)
    elif name in _CIFAR_LAYOUT:
        _cifar_root(name, data_root)
    else:
        _imagefolder_layout(data_root)


def _require_dir(data_root: str | None, name: str, what: str) -> str:
    if data_root is None:
        raise DataError("--data-root", None, f"{name} needs --data-root: {what}")
    if not os.path.isdir(data_root):
        raise DataError("--data-root", data_root, f"no such folder; expected {what}")
    return data_root


def _fashion_root(data_root: str | None) -> str:
    root = FASHION_MNIST_ROOT if data_root is None else data_root
    wanted = [f for files in _FASHION_FILES.values() for f in files]
    hint = (
        f"expected {', '.join(wanted)} in this folder "
        "(Debian package dataset-fashion-mnist: apt-get install dataset-fashion-mnist)"
    )
    if not os.path.isdir(root):
        raise DataError("--data-root", root, f"no such folder; {hint}")
    missing = [f for f in wanted if not os.path.isfile(os.path.join(root, f))]
    if missing:
        raise DataError("--data-root", root, f"missing {', '.join(missing)}; {hint}")
    return root


def _cifar_root(name: str, data_root: str | None) -> str:
    folder, train_files, val_files, _ = _CIFAR_LAYOUT[name]
    what = f"a folder containing {folder}/ (torchvision's on-disk {name} format; nothing is downloaded)"
    root = _require_dir(data_root, name, what)
    # Also accept the dataset folder itself as the root.
    if os.path.basename(os.path.normpath(root)) == folder and not os.path.isdir(os.path.join(root, folder)):
        root = os.path.dirname(os.path.normpath(root)) or "."
    inner = os.path.join(root, folder)
    if not os.path.isdir(inner):
        raise DataError("--data-root", data_root, f"no {folder}/ in this folder; expected {what}")
    missing = [f for f in (*train_files, *val_files) if not os.path.isfile(os.path.join(inner, f))]
    if missing:
        raise DataError(
            "--data-root", data_root, f"{inner} lacks {', '.join(missing)}; expected {what}"
        )
    return root


def _class_dirs(folder: str) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _is_image(name: str) -> bool:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return name.lower().endswith(IMG_EXTENSIONS)


def _has_image(folder: str) -> bool:
    for _, _, files in os.walk(folder, followlinks=True):
        if any(_is_image(f) for f in files):
            return True
    return False


def _has_direct_image(folder: str) -> bool:
    """Whether ``folder`` itself (not a sub-folder) holds an image file; stops at the first."""
    with os.scandir(folder) as entries:
        return any(_is_image(e.name) and e.is_file() for e in entries)


def _names(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(f"{n}/" for n in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


@dataclass(frozen=True)
class _Layout:
    """Where an imagefolder root's splits are: the train tree, the held-out tree (None: split the
    train tree by val_fraction) and the folders, relative to the root, in words."""

    train: str
    val: str | None
    train_name: str
    val_name: str | None
    note: str


_IMAGEFOLDER_WHAT = (
    "class folders of images (root/<class>/*.jpg), or train/ with class folders, beside an optional held-out "
    f"{', '.join(f'{n}/' for n in HELD_OUT_FOLDERS)} folder (root/train/<class>/*.jpg, root/val/<class>/*.jpg)"
)


def _imagefolder_layout(data_root: str | None) -> _Layout:
    """Find the splits of an imagefolder root and check that each is a tree of class folders.

    A root is split into folders when it holds ``train/`` (any case) whose entries are class
    folders rather than images (a class named ``train`` in a single tree holds images itself);
    the held-out split is the first of :data:`HELD_OUT_FOLDERS` beside it, else train/ is split.

    Raises:
        DataError: (field ``--data-root``) no folder, no class folders, no images, or a nested
            tree: class folders that hold only sub-folders (``--data-root`` one level too high).
    """
    root = _require_dir(data_root, "imagefolder", _IMAGEFOLDER_WHAT)
    folders = _class_dirs(root)
    by_name = {}
    for name in folders:
        by_name.setdefault(name.lower(), name)
    train_name = by_name.get("train")
    if train_name is not None and (_has_direct_image(os.path.join(root, train_name))
                                   or not _class_dirs(os.path.join(root, train_name))):
        train_name = None  # a class called "train" of a single tree, not a split folder
    if train_name is None:
        layout = _Layout(root, None, ".", None, "one tree of class folders")
    else:
        held = [by_name[h] for h in HELD_OUT_FOLDERS if h in by_name]
        ignored = [f for f in folders if f != train_name and f not in held]
        note = ""
        if len(held) > 1:
            note = (f"; {held[0]}/ chosen by the order {' > '.join(HELD_OUT_FOLDERS)}, "
                    f"not read: {_names(held[1:])}")
        if ignored:
            note += f"; other folders not read: {_names(ignored)}"
        val_name = held[0] if held else None
        layout = _Layout(os.path.join(root, train_name), os.path.join(root, val_name) if held else None,
                         train_name, val_name, note.lstrip("; "))
    for tree, name in ((layout.train, layout.train_name), (layout.val, layout.val_name)):
        if tree is not None:
            _check_tree(data_root, tree, name)
    return layout


def _check_tree(data_root: str | None, tree: str, name: str) -> None:
    """A tree must hold class folders with images; class folders holding only folders are refused."""
    where = "this folder" if name == "." else f"{name}/ in --data-root"
    classes = _class_dirs(tree)
    if not classes:
        raise DataError("--data-root", data_root, f"{where}: no class folders found; expected {_IMAGEFOLDER_WHAT}")
    if any(_has_direct_image(os.path.join(tree, c)) for c in classes):
        return
    nested = [c for c in classes if _class_dirs(os.path.join(tree, c)) and _has_image(os.path.join(tree, c))]
    if not nested:
        raise DataError("--data-root", data_root,
                        f"{where}: no image files in its class folders ({_names(classes)}); expected {_IMAGEFOLDER_WHAT}")
    inner = _class_dirs(os.path.join(tree, nested[0]))
    hint = ""
    if name == "." and len(classes) == 1:
        hint = f"; is --data-root one level too high? try --data-root {os.path.join(str(data_root), classes[0])}"
    elif name == ".":
        hint = (f"; is --data-root one level too high? splits must be named train/ and "
                f"{' or '.join(f'{n}/' for n in HELD_OUT_FOLDERS)}")
    raise DataError("--data-root", data_root,
                    f"{where}: a nested tree: its class folders ({_names(classes)}) hold only sub-folders (in "
                    f"{nested[0]}/: {_names(inner)}), no images{hint}; expected {_IMAGEFOLDER_WHAT}")


def _check_count(field: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise DataError(field, value, "expected a positive integer or None (all)")


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    data_root: str | None = None,
    *,
    max_train: int | None = None,
    max_val: int | None = None,
    seed: int = 0,
    img_size: int = 32,
    val_fraction: float = 0.1,
) -> DatasetBundle:
    """Load a dataset into memory as uint8 tensors.

    Images keep their native resolution (28x28 for fashion_mnist, 32x32 for CIFAR);
    ``img_size`` only sets the stored resolution of ``imagefolder`` (resize + centre crop) and
    ``synthetic`` images. :func:`to_model_input` resizes batches to the model's input size.

    Args:
        name: one of :data:`DATASETS`.
        data_root: folder holding the data; ``None`` uses :data:`FASHION_MNIST_ROOT` for
            fashion_mnist and is an error for cifar10, cifar100 and imagefolder.
        max_train: keep at most this many training images, a random subset chosen
            deterministically from ``seed`` (``None``: all; synthetic: 512).
        max_val: likewise for the val split (``None``: all; synthetic: 256).
        seed: seed of the subset choice, the imagefolder split and the synthetic images.
        img_size: side in pixels of imagefolder and synthetic images.
        val_fraction: share of images held out for val when an imagefolder root has no held-out
            folder (:data:`HELD_OUT_FOLDERS`) beside ``train/``, or no ``train/``; in (0, 1).

    Returns:
        A :class:`DatasetBundle` with uint8 images (N, C, H, W), int64 labels (N,), the class
        names and where each split came from (``source``).

    Raises:
        DataError: unknown name (field ``"--dataset"``), missing or malformed data
            (field ``"--data-root"``), or a bad ``max_train``, ``max_val``, ``img_size`` or
            ``val_fraction``.
    """
    check_dataset(name, data_root)
    _check_count("max_train", max_train)
    _check_count("max_val", max_val)
    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size < 1:
        raise DataError("--img-size", img_size, "expected a positive integer (pixels)")
    if not (isinstance(val_fraction, (int, float)) and 0.0 < val_fraction < 1.0):
        raise DataError("val_fraction", val_fraction, "expected a number in (0, 1)")

    gen = torch.Generator().manual_seed(int(seed))
    if name == "fashion_mnist":
        return _load_fashion_mnist(data_root, max_train, max_val, gen)
    if name in _CIFAR_LAYOUT:
        return _load_cifar(name, data_root, max_train, max_val, gen)
    if name == "imagefolder":
        return _load_imagefolder(data_root, max_train, max_val, gen, img_size, val_fraction)
    return _load_synthetic(max_train, max_val, gen, img_size)


def _subset(n: int, k: int | None, gen: torch.Generator) -> torch.Tensor:
    """Sorted int64 indices of a seeded random subset of size min(n, k) (all when k is None)."""
    if k is None or k >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=gen)[:k].sort().values


def _take(data: ImageData, k: int | None, gen: torch.Generator) -> ImageData:
    idx = _subset(len(data), k, gen)
    if idx.numel() == len(data):
        return data
    return ImageData(data.images[idx].contiguous(), data.labels[idx].contiguous())


def _read_idx(path: str) -> np.ndarray:
    """Read a gzipped IDX file (big-endian header: magic, then one int32 per dimension)."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError("--data-root", path, f"not a readable gzip file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError("--data-root", path, "not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    if len(raw) != header + math.prod(dims):
        raise DataError("--data-root", path, f"IDX header says {dims} but the payload size differs")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_fashion_split(root: str, split: str) -> ImageData:
    img_file, lbl_file = _FASHION_FILES[split]
    images = _read_idx(os.path.join(root, img_file))
    labels = _read_idx(os.path.join(root, lbl_file))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(
            "--data-root", root, f"{img_file} {images.shape} and {lbl_file} {labels.shape} do not match"
        )
    return ImageData(
        torch.from_numpy(images.copy()).unsqueeze(1).contiguous(),
        torch.from_numpy(labels.astype(np.int64)),
    )


def _load_fashion_mnist(
    data_root: str | None, max_train: int | None, max_val: int | None, gen: torch.Generator
) -> DatasetBundle:
    root = _fashion_root(data_root)
    full_train, full_val = _load_fashion_split(root, "train"), _load_fashion_split(root, "val")
    source = (f"train: the official training split ({len(full_train)} images); "
              f"val: the official test split, t10k ({len(full_val)} images)")
    train, val = _take(full_train, max_train, gen), _take(full_val, max_val, gen)
    mean, std = _STATS["fashion_mnist"]
    return DatasetBundle("fashion_mnist", train, val, 10, 1, mean, std, FASHION_MNIST_CLASSES, source)


def _load_cifar(
    name: str, data_root: str | None, max_train: int | None, max_val: int | None, gen: torch.Generator
) -> DatasetBundle:
    from torchvision.datasets import CIFAR10, CIFAR100

    root = _cifar_root(name, data_root)
    cls = CIFAR10 if name == "cifar10" else CIFAR100
    num_classes = _CIFAR_LAYOUT[name][3]

    classes: list[str] = []

    def split(train: bool) -> ImageData:
        try:
            ds = cls(root, train=train, download=False)
        except (RuntimeError, OSError, ValueError, EOFError) as exc:  # corrupted or wrong files
            raise DataError("--data-root", data_root, f"cannot read {name} from {root}: {exc}") from None
        classes[:] = ds.classes
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        return ImageData(images, torch.as_tensor(ds.targets, dtype=torch.int64))

    full_train, full_val = split(True), split(False)
    source = (f"train: the official training split ({len(full_train)} images); "
              f"val: the official test split ({len(full_val)} images)")
    train, val = _take(full_train, max_train, gen), _take(full_val, max_val, gen)
    mean, std = _STATS[name]
    return DatasetBundle(name, train, val, num_classes, 3, mean, std, tuple(classes), source)


def _imagefolder(tree: str, img_size: int):
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    tf = transforms.Compose(
        [transforms.Resize(img_size), transforms.CenterCrop(img_size), transforms.PILToTensor()]
    )
    try:
        return ImageFolder(tree, transform=tf)
    except (FileNotFoundError, OSError) as exc:
        raise DataError("--data-root", tree, f"not a usable image folder tree: {exc}") from None


def _materialise(ds, indices: Sequence[int], img_size: int, label_map: list[int] | None = None) -> ImageData:
    """Decode the chosen images of an ImageFolder into uint8 (N, 3, img_size, img_size)."""
    n = len(indices)
    images = torch.empty((n, 3, img_size, img_size), dtype=torch.uint8)
    labels = torch.empty((n,), dtype=torch.int64)
    subset = torch.utils.data.Subset(ds, list(indices))
    workers = 0 if n < 2000 else min(8, os.cpu_count() or 1)
    loader = torch.utils.data.DataLoader(subset, batch_size=64, shuffle=False, num_workers=workers)
    pos = 0
    try:
        for batch_images, batch_labels in loader:
            b = batch_images.shape[0]
            images[pos : pos + b] = batch_images
            labels[pos : pos + b] = batch_labels
            pos += b
    except (OSError, ValueError) as exc:  # unreadable image files
        raise DataError("--data-root", ds.root, f"cannot decode an image: {exc}") from None
    if label_map is not None:
        labels = torch.as_tensor(label_map, dtype=torch.int64)[labels]
    return ImageData(images, labels)


def _load_imagefolder(
    data_root: str | None,
    max_train: int | None,
    max_val: int | None,
    gen: torch.Generator,
    img_size: int,
    val_fraction: float,
) -> DatasetBundle:
    layout = _imagefolder_layout(data_root)
    train_ds = _imagefolder(layout.train, img_size)
    classes = list(train_ds.classes)
    tree = "--data-root" if layout.train_name == "." else f"{layout.train_name}/"
    if layout.val is None:
        n = len(train_ds)
        if n < 2:
            raise DataError("--data-root", data_root, f"{tree}: found {n} image(s); expected at least 2 to split")
        n_val = min(n - 1, max(1, round(n * val_fraction)))
        lacking = "" if layout.train_name == "." else (
            f", as no {', '.join(f'{h}/' for h in HELD_OUT_FOLDERS)} folder is beside it")
        source = (f"train and val: {'one tree of class folders' if layout.train_name == '.' else tree} "
                  f"({n} images) split at random by val_fraction {val_fraction:g}: {n - n_val} train, "
                  f"{n_val} val{lacking}")
        perm = torch.randperm(n, generator=gen)
        train_idx, val_idx = perm[n_val:].sort().values, perm[:n_val].sort().values
        train_idx = train_idx[_subset(len(train_idx), max_train, gen)]
        val_idx = val_idx[_subset(len(val_idx), max_val, gen)]
        train = _materialise(train_ds, train_idx.tolist(), img_size)
        val = _materialise(train_ds, val_idx.tolist(), img_size)
    else:
        val_ds = _imagefolder(layout.val, img_size)
        unknown = [c for c in val_ds.classes if c not in train_ds.class_to_idx]
        if unknown:
            raise DataError("--data-root", data_root,
                            f"class folders {unknown} are in {layout.val_name}/ but not in {layout.train_name}/")
        label_map = [train_ds.class_to_idx[c] for c in val_ds.classes]
        train = _materialise(train_ds, _subset(len(train_ds), max_train, gen).tolist(), img_size)
        val = _materialise(val_ds, _subset(len(val_ds), max_val, gen).tolist(), img_size, label_map)
        source = (f"train: {tree} ({len(train_ds)} images); val: {layout.val_name}/ ({len(val_ds)} images), "
                  "the held-out folder")
    if layout.note:
        source += f" ({layout.note})"
    mean, std = _channel_stats(train.images)
    return DatasetBundle("imagefolder", train, val, len(classes), 3, mean, std, tuple(classes), source)


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units of uint8 images (N, C, H, W), in chunks."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    for chunk in images.split(1024):
        x = chunk.to(torch.float64).div_(255.0).transpose(0, 1).reshape(c, -1)
        total += x.sum(1)
        total_sq += (x * x).sum(1)
        count += x.shape[1]
    mean = total / max(count, 1)
    var = (total_sq / max(count, 1) - mean * mean).clamp_min(0.0)
    std = var.sqrt().clamp_min(1e-3)  # constant images would otherwise divide by zero
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _load_synthetic(
    max_train: int | None, max_val: int | None, gen: torch.Generator, img_size: int
) -> DatasetBundle:
    """Random RGB images whose class sets a colour offset and a smooth spatial pattern."""
    n_train = max_train if max_train is not None else _SYNTHETIC_DEFAULT_SIZES[0]
    n_val = max_val if max_val is not None else _SYNTHETIC_DEFAULT_SIZES[1]
    k, c = _SYNTHETIC_CLASSES, 3
    colours = torch.rand((k, c, 1, 1), generator=gen)
    coarse = torch.rand((k, c, 4, 4), generator=gen)
    patterns = F.interpolate(coarse, size=(img_size, img_size), mode="bilinear", align_corners=False)
    templates = 0.4 * colours + 0.3 * patterns  # (K, C, H, W) in [0, 0.7]

    def split(n: int) -> ImageData:
        labels = torch.randint(0, k, (n,), generator=gen)
        noise = torch.rand((n, c, img_size, img_size), generator=gen)
        x = templates[labels] + 0.3 * noise
        images = (x * 255.0).round_().clamp_(0, 255).to(torch.uint8)
        return ImageData(images, labels.to(torch.int64))

    train, val = split(n_train), split(n_val)
    mean, std = _channel_stats(train.images)
    classes = tuple(f"class{i}" for i in range(k))
    source = "synthetic: random images with a class colour and pattern, drawn from the seed"
    return DatasetBundle("synthetic", train, val, k, c, mean, std, classes, source)


# --------------------------------------------------------------------------------------------
# Model input
# --------------------------------------------------------------------------------------------


class Normalizer:
    """Per-channel normalisation constants, built once on a device, applied to uint8 batches.

    Building puts ``mean`` and ``std`` on ``device`` as float32 (1, C, 1, 1) tensors (one
    host-to-device copy each on a GPU); calling converts a batch with no further host work, so a
    training or evaluation loop builds one per run instead of one per batch.

    Args:
        img_size: side in pixels of the model input.
        mean: per-channel mean in [0, 1] units, length C.
        std: per-channel standard deviation in [0, 1] units, length C, all > 0.
        device: where the batches will live (torch device or string).

    Attributes:
        img_size: side in pixels of the model input.
        channels: C, the number of channels a batch must have.
        mean: float32 (1, C, 1, 1) on ``device``.
        std: float32 (1, C, 1, 1) on ``device``.

    Raises:
        DataError: ``img_size`` is not a positive integer, ``mean`` and ``std`` differ in length
            or are empty (field ``"mean/std"``), or a ``std`` value is not positive.
    """

    def __init__(
        self,
        img_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        device: str | torch.device = "cpu",
    ) -> None:
        if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size < 1:
            raise DataError("img_size", img_size, "expected a positive integer (pixels)")
        mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if not mean or len(mean) != len(std):
            raise DataError("mean/std", (mean, std), "expected one value each per channel, same length")
        if any(not s > 0 for s in std):
            raise DataError("std", std, "expected positive values")
        c = len(mean)
        self.img_size = img_size
        self.channels = c
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, c, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, c, 1, 1)

    def __call__(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """Convert a uint8 batch (as :func:`to_model_input` does) with the prebuilt constants.

        Args:
            images_uint8: uint8 tensor (B, C, H, W), pixel values 0..255, on this normaliser's
                device.

        Returns:
            float32 tensor (B, C, img_size, img_size) on the same device.

        Raises:
            DataError: the batch is not a uint8 4-D tensor, has another number of channels
                (field ``"mean/std"``) or lives on another device.
        """
        if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4:
            raise DataError(
                "images",
                f"{images_uint8.dtype} {tuple(images_uint8.shape)}",
                "expected a uint8 tensor (B, C, H, W)",
            )
        c = images_uint8.shape[1]
        if c != self.channels:
            raise DataError(
                "mean/std",
                (tuple(self.mean.flatten().tolist()), tuple(self.std.flatten().tolist())),
                f"expected {c} value(s) each, one per channel",
            )
        if images_uint8.device != self.mean.device:
            raise DataError("images", str(images_uint8.device), f"expected a batch on {self.mean.device}")
        x = images_uint8.to(torch.float32).div_(255.0)
        size = self.img_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
        return x.sub_(self.mean).div_(self.std)


def to_model_input(
    images_uint8: torch.Tensor,
    img_size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """Convert a uint8 image batch to normalised float32 model input.

    Scales to [0, 1], resizes bilinearly (no antialiasing) to ``img_size`` x ``img_size`` when
    the batch has another size, then subtracts ``mean`` and divides by ``std`` per channel.
    Each call builds the constants anew (a host-to-device copy on a GPU); loops should build
    one :class:`Normalizer` and call it per batch instead.

    Args:
        images_uint8: uint8 tensor (B, C, H, W), pixel values 0..255, on any device.
        img_size: side in pixels of the model input.
        mean: per-channel mean in [0, 1] units, length C.
        std: per-channel standard deviation in [0, 1] units, length C, all > 0.

    Returns:
        float32 tensor (B, C, img_size, img_size) on the device of ``images_uint8``.

    Raises:
        DataError: the batch is not a uint8 4-D tensor, ``img_size`` is not positive, or
            ``mean``/``std`` do not have one value per channel.
    """
    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4:
        raise DataError(
            "images",
            f"{images_uint8.dtype} {tuple(images_uint8.shape)}",
            "expected a uint8 tensor (B, C, H, W)",
        )
    c = images_uint8.shape[1]
    if len(mean) != c or len(std) != c:
        raise DataError("mean/std", (tuple(mean), tuple(std)), f"expected {c} value(s) each, one per channel")
    return Normalizer(img_size, mean, std, images_uint8.device)(images_uint8)
