"""The ``imagefolder`` dataset: a local tree of class folders (torchvision's ``ImageFolder``).

Either ``root/train/<class>/`` beside a held-out ``root/<split>/<class>/`` folder (the first of
:data:`HELD_OUT_FOLDERS` that exists: ``val`` > ``valid`` > ``validation`` > ``test``),
``root/train/<class>/`` alone, or ``root/<class>/``; the last two are split by ``val_fraction``.
Images are resized and centre-cropped to ``img_size``, RGB. A tree whose class folders hold only
sub-folders (a ``--data-root`` one level too high) is refused with the folders found.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from explore.errors import DataError
from explore.train.splits import DatasetBundle, ImageData, channel_stats, require_dir, subset

__all__ = ["HELD_OUT_FOLDERS", "imagefolder_layout", "load_imagefolder"]

HELD_OUT_FOLDERS = ("val", "valid", "validation", "test")
"""Names (any case) of the held-out folder beside ``train/`` in an imagefolder root, in the order of
preference: the first that exists is the val split, the others are not read."""


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


def imagefolder_layout(data_root: str | None) -> _Layout:
    """Find the splits of an imagefolder root and check that each is a tree of class folders.

    A root is split into folders when it holds ``train/`` (any case) whose entries are class
    folders rather than images (a class named ``train`` in a single tree holds images itself);
    the held-out split is the first of :data:`HELD_OUT_FOLDERS` beside it, else train/ is split.

    Raises:
        DataError: (field ``--data-root``) no folder, no class folders, no images, or a nested
            tree: class folders that hold only sub-folders (``--data-root`` one level too high).
    """
    root = require_dir(data_root, "imagefolder", _IMAGEFOLDER_WHAT)
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


def load_imagefolder(
    data_root: str | None,
    max_train: int | None,
    max_val: int | None,
    gen: torch.Generator,
    img_size: int,
    val_fraction: float,
) -> DatasetBundle:
    """Load an imagefolder root (see the module docstring) into a :class:`DatasetBundle`.

    Raises:
        DataError: field ``--data-root``: a layout or image that cannot be used.
    """
    layout = imagefolder_layout(data_root)
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
        train_idx = train_idx[subset(len(train_idx), max_train, gen)]
        val_idx = val_idx[subset(len(val_idx), max_val, gen)]
        train = _materialise(train_ds, train_idx.tolist(), img_size)
        val = _materialise(train_ds, val_idx.tolist(), img_size)
    else:
        val_ds = _imagefolder(layout.val, img_size)
        unknown = [c for c in val_ds.classes if c not in train_ds.class_to_idx]
        if unknown:
            raise DataError("--data-root", data_root,
                            f"class folders {unknown} are in {layout.val_name}/ but not in {layout.train_name}/")
        label_map = [train_ds.class_to_idx[c] for c in val_ds.classes]
        train = _materialise(train_ds, subset(len(train_ds), max_train, gen).tolist(), img_size)
        val = _materialise(val_ds, subset(len(val_ds), max_val, gen).tolist(), img_size, label_map)
        source = (f"train: {tree} ({len(train_ds)} images); val: {layout.val_name}/ ({len(val_ds)} images), "
                  "the held-out folder")
    if layout.note:
        source += f" ({layout.note})"
    mean, std = channel_stats(train.images)
    return DatasetBundle("imagefolder", train, val, len(classes), 3, mean, std, tuple(classes), source)
