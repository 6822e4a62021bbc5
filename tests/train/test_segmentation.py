"""Segmentation data (composed Fashion-MNIST scenes, local image/mask folders), mIoU, the proxy loop."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from explore.errors import DataError, ExploreError, NonFiniteLossError
from explore.train import ProxyRecipe
from explore.train.scenes import IGNORE_INDEX, SegmentationData, compose_scenes, fashion_scenes, load_mask_folder
from explore.train.segment import miou, train_segmentation


def _garments(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Solid white squares with a black border, classes 0..n-1."""
    images = torch.zeros((n, 1, 28, 28), dtype=torch.uint8)
    images[:, :, 2:26, 2:26] = 255
    return images, torch.arange(n)


def test_scenes_are_deterministic_and_labelled_where_the_garments_are():
    garments, labels = _garments()
    a = compose_scenes(garments, labels, 8, 64, seed=3, objects=(1, 3))
    b = compose_scenes(garments, labels, 8, 64, seed=3, objects=(1, 3))
    c = compose_scenes(garments, labels, 8, 64, seed=4, objects=(1, 3))
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.masks, c.masks)
    assert a.images.shape == (8, 1, 64, 64) and a.masks.shape == (8, 64, 64) and a.images.dtype == torch.uint8
    labelled = a.masks > 0
    assert (a.images[:, 0][labelled] > 40).all()  # garment pixels are bright
    assert (a.images[:, 0][~labelled] < 24).all()  # the background is faint noise
    assert set(a.masks.unique().tolist()) <= set(range(7))


def test_one_garment_per_scene_spans_the_allowed_sides():
    garments, labels = _garments(1)
    split = compose_scenes(garments, labels, 40, 128, seed=0, objects=(1, 1))  # sides 16..64 by default
    sides = []
    for mask in split.masks:
        rows = torch.nonzero(mask.any(1)).flatten()
        sides.append(int(rows.max() - rows.min() + 1))
    assert min(sides) >= 16 * 24 / 28 - 2 and max(sides) <= 64  # the square fills 24 of 28 pixels
    assert max(sides) > 48  # some garments reach about half the canvas
    with pytest.raises(DataError, match="canvas"):
        compose_scenes(garments, labels, 1, 16, seed=0, min_side=20)


def test_fashion_scenes_draw_val_from_the_test_garments(monkeypatch):
    calls = []
    import explore.train.scenes as scenes

    real = scenes.compose_scenes

    def spy(garments, labels, count, canvas, **kw):
        calls.append((len(garments), count))
        return real(garments[:50], labels[:50], count, canvas, **kw)

    monkeypatch.setattr(scenes, "compose_scenes", spy)
    data = fashion_scenes(train=4, val=2, canvas=32, seed=0)
    assert calls == [(60000, 4), (10000, 2)]  # the official training and test garments
    assert data.num_classes == 11 and data.classes[0] == "background" and data.size == (32, 32)


def _write_png(path, array) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_mask_folders_plain_and_cityscapes(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2)):
        for i in range(n):
            _write_png(tmp_path / "plain" / split / "images" / f"{i}.png", rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
            mask = rng.integers(0, 4, (20, 20), dtype=np.uint8)
            mask[0, 0] = 255
            _write_png(tmp_path / "plain" / split / "masks" / f"{i}.png", mask)
            city = tmp_path / "city"
            _write_png(city / "leftImg8bit" / split / "aachen" / f"a_{i}_leftImg8bit.png",
                       rng.integers(0, 255, (20, 40, 3), dtype=np.uint8))
            _write_png(city / "gtFine" / split / "aachen" / f"a_{i}_gtFine_labelTrainIds.png",
                       rng.integers(0, 19, (20, 40), dtype=np.uint8))
    plain = load_mask_folder(str(tmp_path / "plain"), size=(16, 16))
    assert plain.train.images.shape == (3, 3, 16, 16) and plain.val.masks.shape == (2, 16, 16)
    assert plain.num_classes == 4 and IGNORE_INDEX in plain.train.masks.unique().tolist()
    city = load_mask_folder(str(tmp_path / "city"), size=(16, 16), num_classes=19)
    assert len(city.train) == 3 and city.num_classes == 19
    (tmp_path / "plain" / "val" / "masks" / "1.png").unlink()
    with pytest.raises(DataError, match="val/images/1.png"):
        load_mask_folder(str(tmp_path / "plain"))
    with pytest.raises(DataError, match="--data-root"):
        load_mask_folder(str(tmp_path / "nowhere"))


def _brute_miou(pred: torch.Tensor, target: torch.Tensor, k: int) -> float:
    scores = []
    valid = target != IGNORE_INDEX
    for c in range(k):
        p, t = (pred == c) & valid, (target == c) & valid
        union = int((p | t).sum())
        if union:
            scores.append(int((p & t).sum()) / union)
    return 100 * sum(scores) / len(scores)


def test_miou_equals_the_definition_on_random_maps():
    rng = random.Random(0)
    for _ in range(30):
        k = rng.randint(2, 6)
        target = torch.randint(0, k, (2, 9, 7))
        target[torch.rand(target.shape) < 0.1] = IGNORE_INDEX
        pred = torch.randint(0, k, (2, 9, 7))
        assert miou(pred, target, k) == pytest.approx(_brute_miou(pred, target, k))
    with pytest.raises(DataError):
        miou(torch.zeros(2, 3), torch.zeros(3, 2), 2)


class TinySeg(nn.Module):
    def __init__(self, classes: int = 7) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_the_proxy_loop_learns_scenes_and_checks_the_output():
    garments, labels = _garments()
    train = compose_scenes(garments, labels, 64, 32, seed=0, objects=(1, 2))
    val = compose_scenes(garments, labels, 16, 32, seed=1, objects=(1, 2))
    data = SegmentationData("t", train, val, 7, 1, (0.2,), (0.3,))
    torch.manual_seed(0)
    seen = []
    result = train_segmentation(TinySeg(), data, recipe=ProxyRecipe(epochs=4, batch_size=16, lr=1e-2),
                                on_epoch_end=lambda e, s: seen.append(s))
    assert result.steps == 16 and len(seen) == 4 and seen[-1] == result.miou
    background = float((val.masks == 0).float().mean()) * 100
    assert result.pixel_acc > background  # it finds garments, not only background
    with pytest.raises(ExploreError, match="per-pixel logits"):
        train_segmentation(nn.Sequential(nn.Flatten(), nn.LazyLinear(7)), data, recipe=ProxyRecipe(epochs=1))


def _tiny_scenes() -> SegmentationData:
    garments, labels = _garments()
    train = compose_scenes(garments, labels, 32, 32, seed=0, objects=(1, 2))
    val = compose_scenes(garments, labels, 8, 32, seed=1, objects=(1, 2))
    return SegmentationData("t", train, val, 7, 1, (0.2,), (0.3,))


class NaNSeg(TinySeg):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * float("nan")


def test_a_diverged_loss_names_its_first_step():
    with pytest.raises(NonFiniteLossError) as info:
        train_segmentation(NaNSeg(), _tiny_scenes(), recipe=ProxyRecipe(epochs=1, batch_size=16))
    assert info.value.step == 0  # 0-based, as the classification loop counts


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: the data held on it, loss checks batched")
def test_cuda_segmentation_keeps_the_data_on_the_gpu_and_batches_loss_checks():
    dev = f"cuda:{torch.cuda.device_count() - 1}"
    data = _tiny_scenes()
    recipe = ProxyRecipe(epochs=3, batch_size=8, lr=1e-2, nan_check_every=5)
    model = TinySeg()
    result = train_segmentation(model, data, recipe=recipe, device=dev)
    assert next(model.parameters()).device == torch.device(dev)
    assert result.steps == 12 and math.isfinite(result.train_loss) and 0.0 <= result.miou <= 100.0
    assert data.train.images.device.type == "cpu"  # the caller's tensors are not moved
    with pytest.raises(NonFiniteLossError) as info:  # found at the batched check, named at its own step
        train_segmentation(NaNSeg(), data, recipe=recipe, device=dev)
    assert info.value.step == 0


def _random_split(n: int, k: int, channels: int = 1, side: int = 12, seed: int = 0):
    from explore.train.scenes import SegmentationSplit

    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, side, side), generator=gen, dtype=torch.uint8)
    masks = torch.randint(0, k - 1, (n, side, side), generator=gen).to(torch.uint8)  # class k - 1 never labelled
    masks[torch.rand(masks.shape, generator=gen) < 0.15] = IGNORE_INDEX
    return SegmentationSplit(images, masks)


def _old_evaluation(model, split, data, batch_size):
    """Issue 27 item 10's reference: the per-batch computation evaluation used before (torchmetrics updates,
    boolean-mask pixel counts)."""
    from explore.train.normalize import Normalizer
    from explore.train.segment import _forward, _jaccard

    normalize = Normalizer(data.size[0], data.mean, data.std, "cpu")
    metric = _jaccard(data.num_classes, torch.device("cpu"))
    correct = labelled = 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            x = normalize(split.images[start : start + batch_size])
            y = split.masks[start : start + batch_size].long()
            pred = _forward(model, x, y.shape[-2:], data.num_classes).argmax(1)
            metric.update(pred, y)
            valid = y != IGNORE_INDEX
            correct += int((pred[valid] == y[valid]).sum())
            labelled += int(valid.sum())
    per_class = metric.compute().float()
    score = torch.nanmean(per_class)
    return (0.0 if torch.isnan(score) else 100.0 * float(score)), 100.0 * correct / max(1, labelled)


def test_evaluation_equals_the_per_batch_torchmetrics_computation():
    """Same mIoU and pixel accuracy as the old per-batch path, with ignored pixels, a class that is
    neither labelled nor predicted, and a last batch shorter than the others."""
    from explore.train.segment import evaluate_segmentation

    k = 7
    split = _random_split(5, k)
    data = SegmentationData("t", split, split, k, 1, (0.4,), (0.3,))
    for seed in range(3):
        torch.manual_seed(seed)
        model = TinySeg(k)
        with torch.no_grad():
            model.body[-1].bias[k - 2] = -1e4  # class k - 2: labelled, never predicted (IoU 0); k - 1: absent
        assert evaluate_segmentation(model, split, data, batch_size=2) == _old_evaluation(model, split, data, 2)


def test_evaluation_reads_the_host_once_whatever_the_batch_count():
    """No host sync per batch: the ops that read a tensor on the host (``item``/``int``: aten
    ``_local_scalar_dense``) or size an output by its data (boolean indexing's ``nonzero``,
    ``masked_select``, ``bincount``, ``unique``) do not grow with the number of batches."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from explore.train.segment import evaluate_segmentation

    syncing = {"_local_scalar_dense", "nonzero", "masked_select", "bincount", "_unique2", "unique_dim"}

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name in syncing:
                self.seen.append(name)
            return func(*args, **(kwargs or {}))

    k = 5
    split = _random_split(6, k)
    data = SegmentationData("t", split, split, k, 1, (0.4,), (0.3,))
    model = TinySeg(k)
    counts = []
    for batch in (6, 1):  # one batch, six batches
        with Ops() as ops:
            evaluate_segmentation(model, split, data, batch_size=batch)
        counts.append(sorted(ops.seen))
    assert counts[0] == counts[1] and "nonzero" not in counts[0] and "bincount" not in counts[0]


class _LayoutSeg(nn.Module):
    """Records whether each input batch is channels_last (3 channels, so the two layouts differ)."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, classes, 3, padding=1)
        self.layouts = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.layouts.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
        return self.conv(x)


def test_a_channels_last_model_is_evaluated_on_channels_last_input():
    from explore.train.segment import evaluate_segmentation

    k = 4
    split = _random_split(4, k, channels=3)
    data = SegmentationData("t", split, split, k, 3, (0.4,) * 3, (0.3,) * 3)
    plain = _LayoutSeg(k)
    evaluate_segmentation(plain, split, data, batch_size=2)
    nhwc = _LayoutSeg(k).to(memory_format=torch.channels_last)
    evaluate_segmentation(nhwc, split, data, batch_size=2)
    assert plain.layouts == [False, False] and nhwc.layouts == [True, True]


def test_a_mask_label_out_of_range_is_refused():
    from explore.train.segment import evaluate_segmentation

    split = _random_split(2, 4)
    split.masks[0, 0, 0] = 9
    data = SegmentationData("t", split, split, 4, 1, (0.4,), (0.3,))
    with pytest.raises(DataError, match="masks"):
        evaluate_segmentation(TinySeg(4), split, data)
