"""Tests of explore.data: dataset validation, loading and model-input conversion."""

from __future__ import annotations

import os

import pytest
import torch

from explore.train import (
    DATASETS,
    FASHION_MNIST_ROOT,
    FASHION_MNIST_CLASSES,
    DatasetBundle,
    Normalizer,
    check_dataset,
    dataset_info,
    load_dataset,
    to_model_input,
)
from explore.errors import DataError

_HAS_FASHION = all(
    os.path.isfile(os.path.join(FASHION_MNIST_ROOT, f))
    for f in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
)


def _write_tree(root, classes=("cat", "dog"), per_class=3, size=(20, 14)) -> None:
    """root/<class>/img<i>.png, class i coloured (40 + 100 i, ., 200 - 80 i)."""
    from PIL import Image

    for ci, cls in enumerate(classes):
        d = root / cls
        d.mkdir(parents=True)
        for i in range(per_class):
            colour = (40 + 100 * ci, 10 * i, 200 - 80 * ci)
            Image.new("RGB", size, colour).save(d / f"img{i}.png")


# ------------------------------------------------------------------ validation


def test_unknown_name_raises_with_field():
    with pytest.raises(DataError, match="--dataset") as info:
        check_dataset("imagenet", None)
    assert info.value.value == "imagenet"
    assert "fashion_mnist" in str(info.value)
    with pytest.raises(DataError, match="--dataset"):
        load_dataset("mnist")


def test_missing_root_raises_with_field(tmp_path):
    missing = str(tmp_path / "nope")
    for name in ("fashion_mnist", "cifar10", "cifar100", "imagefolder"):
        with pytest.raises(DataError, match="--data-root") as info:
            check_dataset(name, missing)
        assert info.value.value == missing


def test_root_required_for_cifar_and_imagefolder():
    for name in ("cifar10", "cifar100", "imagefolder"):
        with pytest.raises(DataError, match="--data-root"):
            check_dataset(name, None)


def test_fashion_root_without_files_names_expected_files(tmp_path):
    with pytest.raises(DataError, match="--data-root") as info:
        load_dataset("fashion_mnist", str(tmp_path))
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz" in msg and "dataset-fashion-mnist" in msg


def test_fake_cifar10_root_raises(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_dataset("cifar10", str(tmp_path))
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DataError, match="data_batch_1"):
        load_dataset("cifar10", str(tmp_path))
    with pytest.raises(DataError, match="cifar-100-python"):
        load_dataset("cifar100", str(tmp_path))


def test_corrupt_cifar10_files_raise_data_error(tmp_path):
    inner = tmp_path / "cifar-10-batches-py"
    inner.mkdir()
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (inner / f).write_bytes(b"not a pickle")
    check_dataset("cifar10", str(tmp_path))  # presence is enough for the cheap check
    with pytest.raises(DataError, match="--data-root"):
        load_dataset("cifar10", str(tmp_path))


def test_bad_subset_sizes_raise():
    with pytest.raises(DataError, match="max_train"):
        load_dataset("synthetic", max_train=0)
    with pytest.raises(DataError, match="val_fraction"):
        load_dataset("synthetic", val_fraction=1.5)


# ------------------------------------------------------------------ fashion_mnist


@pytest.mark.skipif(not _HAS_FASHION, reason=f"{FASHION_MNIST_ROOT} absent (package dataset-fashion-mnist)")
def test_fashion_mnist_loads_subset():
    b = load_dataset("fashion_mnist", max_train=300, max_val=100, seed=3)
    assert isinstance(b, DatasetBundle) and b.name == "fashion_mnist"
    assert b.num_classes == 10 and b.in_chans == 1
    assert b.classes == FASHION_MNIST_CLASSES and "t10k (10000 images)" in b.source
    assert b.train.images.shape == (300, 1, 28, 28) and b.train.images.dtype == torch.uint8
    assert b.val.images.shape == (100, 1, 28, 28)
    assert b.train.labels.shape == (300,) and b.train.labels.dtype == torch.int64
    assert int(b.train.labels.min()) >= 0 and int(b.train.labels.max()) <= 9
    assert len(b.mean) == len(b.std) == 1
    again = load_dataset("fashion_mnist", max_train=300, max_val=100, seed=3)
    assert torch.equal(b.train.labels, again.train.labels)
    assert torch.equal(b.val.images, again.val.images)


@pytest.mark.skipif(not _HAS_FASHION, reason=f"{FASHION_MNIST_ROOT} absent (package dataset-fashion-mnist)")
def test_fashion_mnist_full_val_split_is_test_set():
    b = load_dataset("fashion_mnist", max_train=10)
    assert b.val.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(b.val.labels, minlength=10).tolist() == [1000] * 10


# ------------------------------------------------------------------ imagefolder


def test_imagefolder_single_tree_split(tmp_path):
    _write_tree(tmp_path)
    b = load_dataset("imagefolder", str(tmp_path), img_size=16, val_fraction=0.34, seed=1)
    assert b.num_classes == 2 and b.in_chans == 3
    assert len(b.train) + len(b.val) == 6 and len(b.val) == 2
    assert b.train.images.shape[1:] == (3, 16, 16) and b.train.images.dtype == torch.uint8
    assert b.val.images.shape[1:] == (3, 16, 16)
    assert set(b.train.labels.tolist()) <= {0, 1}
    # the class colour survives the resize: class 1 ("dog") is redder than class 0 ("cat")
    red = b.train.images[:, 0].float().mean(dim=(1, 2))
    for lbl, r in zip(b.train.labels.tolist(), red.tolist()):
        assert abs(r - (40 + 100 * lbl)) <= 2
    again = load_dataset("imagefolder", str(tmp_path), img_size=16, val_fraction=0.34, seed=1)
    assert torch.equal(b.val.labels, again.val.labels) and torch.equal(b.train.images, again.train.images)


def test_imagefolder_train_val_folders(tmp_path):
    _write_tree(tmp_path / "train", classes=("a", "b"), per_class=3)
    _write_tree(tmp_path / "val", classes=("b",), per_class=2)
    b = load_dataset("imagefolder", str(tmp_path), img_size=8, max_train=4)
    assert len(b.train) == 4 and len(b.val) == 2
    assert b.val.labels.tolist() == [1, 1]  # "b" keeps its train index
    assert b.num_classes == 2


def test_imagefolder_train_and_test_is_a_split_not_two_classes(tmp_path):
    # regression: train/ + test/ was read as one tree whose two classes were "test" and "train"
    _write_tree(tmp_path / "train", classes=("bird", "cat", "dog"), per_class=2, size=(8, 8))
    _write_tree(tmp_path / "test", classes=("bird", "cat", "dog"), per_class=1, size=(8, 8))
    b = load_dataset("imagefolder", str(tmp_path), img_size=8)
    assert b.num_classes == 3 and b.classes == ("bird", "cat", "dog")
    assert (len(b.train), len(b.val)) == (6, 3)
    assert sorted(b.val.labels.tolist()) == [0, 1, 2]
    assert "val: test/ (3 images)" in b.source and "train: train/ (6 images)" in b.source
    assert str(tmp_path) not in b.source


def test_imagefolder_held_out_folder_order_and_case(tmp_path):
    _write_tree(tmp_path / "Train", classes=("a", "b"), per_class=2, size=(8, 8))
    _write_tree(tmp_path / "valid", classes=("a", "b"), per_class=1, size=(8, 8))
    _write_tree(tmp_path / "test", classes=("a",), per_class=3, size=(8, 8))
    b = load_dataset("imagefolder", str(tmp_path), img_size=8)
    assert len(b.val) == 2 and b.classes == ("a", "b")  # valid/ (2 images) wins over test/ (3)
    assert "val: valid/" in b.source and "val > valid > validation > test" in b.source
    assert "not read: test/" in b.source


def test_imagefolder_train_only_is_split_by_val_fraction(tmp_path):
    _write_tree(tmp_path / "train", classes=("a", "b"), per_class=5, size=(8, 8))
    b = load_dataset("imagefolder", str(tmp_path), img_size=8, val_fraction=0.2)
    assert b.classes == ("a", "b") and (len(b.train), len(b.val)) == (8, 2)
    assert "train/ (10 images) split at random by val_fraction 0.2" in b.source
    assert "no val/, valid/, validation/, test/ folder" in b.source


def test_imagefolder_class_named_train_in_a_single_tree(tmp_path):
    _write_tree(tmp_path, classes=("bus", "car", "train"), per_class=2, size=(8, 8))
    b = load_dataset("imagefolder", str(tmp_path), img_size=8, val_fraction=0.34)
    assert b.classes == ("bus", "car", "train") and len(b.train) + len(b.val) == 6
    assert "one tree of class folders" in b.source


@pytest.mark.parametrize("layout", ["one level too high", "splits not named train"])
def test_imagefolder_nested_tree_is_refused(tmp_path, layout):
    if layout == "one level too high":
        _write_tree(tmp_path / "cifar" / "train", classes=("a", "b"), per_class=1, size=(8, 8))
        _write_tree(tmp_path / "cifar" / "test", classes=("a", "b"), per_class=1, size=(8, 8))
        needles = ["cifar/", "test/, train/", f"try --data-root {tmp_path / 'cifar'}"]
    else:
        _write_tree(tmp_path / "training", classes=("a", "b"), per_class=1, size=(8, 8))
        _write_tree(tmp_path / "testing", classes=("a", "b"), per_class=1, size=(8, 8))
        needles = ["testing/, training/", "splits must be named train/"]
    with pytest.raises(DataError, match="nested tree") as info:
        check_dataset("imagefolder", str(tmp_path))
    assert info.value.field == "--data-root" and info.value.value == str(tmp_path)
    for needle in needles:
        assert needle in str(info.value)
    # the same check inside a split folder
    nested = tmp_path / "split"
    _write_tree(nested / "train" / "outer", classes=("a", "b"), per_class=1, size=(8, 8))
    with pytest.raises(DataError, match="train/ in --data-root: a nested tree"):
        load_dataset("imagefolder", str(nested))


def test_dataset_info_names_classes_and_sizes():
    info = dataset_info(load_dataset("synthetic", max_train=16, max_val=8, img_size=8))
    assert info["num_classes"] == 10 and info["classes"][:2] == ["class0", "class1"]
    assert (info["train_images"], info["val_images"]) == (16, 8) and info["source"].startswith("synthetic")
    assert len(FASHION_MNIST_CLASSES) == 10 and FASHION_MNIST_CLASSES[0] == "T-shirt/top"


def test_imagefolder_empty_raises(tmp_path):
    with pytest.raises(DataError, match="--data-root"):
        load_dataset("imagefolder", str(tmp_path))
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="no image files"):
        load_dataset("imagefolder", str(tmp_path))


# ------------------------------------------------------------------ synthetic


def test_synthetic_is_deterministic_and_sized():
    a = load_dataset("synthetic", max_train=64, max_val=32, img_size=24, seed=5)
    b = load_dataset("synthetic", max_train=64, max_val=32, img_size=24, seed=5)
    assert a.train.images.shape == (64, 3, 24, 24) and a.val.images.shape == (32, 3, 24, 24)
    assert a.num_classes == 10 and a.in_chans == 3
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.val.labels, b.val.labels)
    c = load_dataset("synthetic")
    assert len(c.train) == 512 and len(c.val) == 256
    assert "synthetic" in DATASETS


# ------------------------------------------------------------------ to_model_input


def test_to_model_input_shape_dtype_range():
    x = torch.randint(0, 256, (4, 3, 20, 20), dtype=torch.uint8)
    out = to_model_input(x, 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    same = to_model_input(x, 20, (0.5,) * 3, (0.25,) * 3)
    assert same.shape == (4, 3, 20, 20)
    assert torch.allclose(same, (x.float() / 255 - 0.5) / 0.25)
    assert x.dtype == torch.uint8  # input untouched


def test_to_model_input_rejects_bad_input():
    with pytest.raises(DataError, match="images"):
        to_model_input(torch.zeros(2, 1, 8, 8), 8, (0.0,), (1.0,))
    with pytest.raises(DataError, match="mean/std"):
        to_model_input(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), 8, (0.0, 0.0), (1.0, 1.0))


def test_normalizer_matches_to_model_input_and_checks_batches():
    x = torch.randint(0, 256, (4, 3, 20, 20), dtype=torch.uint8)
    norm = Normalizer(32, (0.1, 0.2, 0.3), (0.5, 0.25, 0.2))
    assert norm.mean.shape == (1, 3, 1, 1) and norm.std.dtype == torch.float32
    assert torch.equal(norm(x), to_model_input(x, 32, (0.1, 0.2, 0.3), (0.5, 0.25, 0.2)))
    with pytest.raises(DataError, match="mean/std"):
        norm(x[:, :1])
    with pytest.raises(DataError, match="images"):
        norm(x.float())
    with pytest.raises(DataError, match="std"):
        Normalizer(8, (0.0,), (0.0,))
    with pytest.raises(DataError, match="mean/std"):
        Normalizer(8, (0.0, 0.0), (1.0,))
