"""Image classification datasets held in memory as uint8 tensors.

Every dataset is loaded once into an :class:`ImageData` pair of tensors (images uint8
``(N, C, H, W)``, labels int64 ``(N,)``) so that short proxy training runs can draw batches by
indexing, without a ``DataLoader`` or per-item PIL transforms. :func:`explore.train.to_model_input` converts a
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

import numpy as np
import torch
import torch.nn.functional as F

from explore.errors import DataError
from explore.train.imagefolder import HELD_OUT_FOLDERS, imagefolder_layout, load_imagefolder
from explore.train.splits import DatasetBundle, ImageData, channel_stats, require_dir, take

__all__ = [
    "DATASETS",
    "FASHION_MNIST_ROOT",
    "FASHION_MNIST_CLASSES",
    "HELD_OUT_FOLDERS",
    "check_dataset",
    "load_dataset",
]

DATASETS = ("fashion_mnist", "cifar10", "cifar100", "imagefolder", "synthetic")
"""Dataset names accepted by :func:`load_dataset` (``--dataset``)."""

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
"""Where the Debian package ``dataset-fashion-mnist`` installs its IDX files."""

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
"""Fashion-MNIST's class names, label 0 to 9 (Xiao et al. 2017, the dataset's README)."""

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
        imagefolder_layout(data_root)


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
    root = require_dir(data_root, name, what)
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


def _check_count(field: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise DataError(field, value, "expected a positive integer or None (all)")


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
        return load_imagefolder(data_root, max_train, max_val, gen, img_size, val_fraction)
    return _load_synthetic(max_train, max_val, gen, img_size)


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
    train, val = take(full_train, max_train, gen), take(full_val, max_val, gen)
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
    train, val = take(full_train, max_train, gen), take(full_val, max_val, gen)
    mean, std = _STATS[name]
    return DatasetBundle(name, train, val, num_classes, 3, mean, std, tuple(classes), source)


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
    mean, std = channel_stats(train.images)
    classes = tuple(f"class{i}" for i in range(k))
    source = "synthetic: random images with a class colour and pattern, drawn from the seed"
    return DatasetBundle("synthetic", train, val, k, c, mean, std, classes, source)
