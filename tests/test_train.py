"""Tests of explore.train: proxy training on synthetic data, determinism and failure modes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from explore.data import ImageData, load_dataset
from explore.errors import DeviceError, ExploreError, NonFiniteLossError
from explore.train import ProxyRecipe, ProxyResult, evaluate, seed_everything, train_proxy

IMG = 16


class TinyConv(nn.Module):
    def __init__(self, in_chans: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 16, 3, padding=1)
        self.norm = nn.BatchNorm2d(16)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, num_classes)
        self.attention_biases = nn.Parameter(torch.zeros(2, 4))  # exercises the no-decay rule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(torch.relu(self.norm(self.conv(x)))).flatten(1))


class NaNModel(TinyConv):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * float("nan")


@pytest.fixture(scope="module")
def synth():
    return load_dataset("synthetic", max_train=512, max_val=256, img_size=IMG, seed=0)


def _model(seed: int = 0, cls=TinyConv) -> nn.Module:
    seed_everything(seed)
    return cls()


FAST = ProxyRecipe(epochs=3, batch_size=64, lr=1e-2, warmup_fraction=0.1)


def test_tiny_model_beats_chance(synth):
    epochs_seen: list[tuple[int, float]] = []
    res = train_proxy(
        _model(), synth, img_size=IMG, recipe=FAST, on_epoch_end=lambda e, t: epochs_seen.append((e, t))
    )
    assert isinstance(res, ProxyResult)
    assert res.top1 > 40.0, res  # chance is 10 %
    assert res.steps == 3 * (512 // 64)
    assert [e for e, _ in epochs_seen] == [0, 1, 2]
    assert epochs_seen[-1][1] == res.top1
    assert math.isfinite(res.train_loss) and res.train_loss < math.log(10)
    assert res.train_seconds > 0 and res.eval_seconds > 0 and res.train_img_s > 0


def test_same_seed_same_result(synth):
    recipe = ProxyRecipe(epochs=1, batch_size=64)
    a = train_proxy(_model(1), synth, img_size=IMG, recipe=recipe, seed=7)
    b = train_proxy(_model(1), synth, img_size=IMG, recipe=recipe, seed=7)
    assert a.top1 == b.top1 and a.train_loss == b.train_loss and a.steps == b.steps


def test_fractional_epochs_and_no_augment(synth):
    res = train_proxy(_model(), synth, img_size=IMG, recipe=ProxyRecipe(epochs=0.5, batch_size=64, augment=False))
    assert res.steps == 4
    calls = []
    res = train_proxy(
        _model(), synth, img_size=IMG, recipe=ProxyRecipe(epochs=1.5, batch_size=64),
        on_epoch_end=lambda e, t: calls.append(e),
    )
    assert res.steps == 12 and calls == [0]


def test_nan_loss_raises(synth):
    with pytest.raises(NonFiniteLossError) as info:
        train_proxy(_model(cls=NaNModel), synth, img_size=IMG, recipe=ProxyRecipe(epochs=1, batch_size=64))
    assert info.value.step == 0 and math.isnan(info.value.loss)


def test_max_seconds_stops_early(synth):
    recipe = ProxyRecipe(epochs=1000, batch_size=32, max_seconds=0.3)
    res = train_proxy(_model(), synth, img_size=IMG, recipe=recipe)
    assert 1 <= res.steps < 1000 * (512 // 32)
    assert res.train_seconds < 5.0
    assert 0.0 <= res.top1 <= 100.0


def test_on_epoch_end_exception_propagates(synth):
    class Prune(Exception):
        pass

    def prune(epoch: int, top1: float) -> None:
        raise Prune

    with pytest.raises(Prune):
        train_proxy(_model(), synth, img_size=IMG, recipe=ProxyRecipe(epochs=2, batch_size=128), on_epoch_end=prune)


def test_evaluate_range_and_mode_restored(synth):
    model = _model()
    model.train()
    top1 = evaluate(model, synth.val, img_size=IMG, mean=synth.mean, std=synth.std, batch_size=100)
    assert 0.0 <= top1 <= 100.0 and model.training

    class Const(nn.Module):
        def forward(self, x):
            out = torch.zeros(x.shape[0], 10)
            out[:, 3] = 1.0
            return out

    data = ImageData(torch.zeros(8, 3, 4, 4, dtype=torch.uint8), torch.tensor([3, 3, 3, 3, 3, 3, 1, 2]))
    assert evaluate(Const(), data, img_size=4, mean=(0.5,) * 3, std=(0.5,) * 3) == 75.0


def test_bad_recipe_device_and_output(synth):
    with pytest.raises(ExploreError, match="recipe.epochs"):
        train_proxy(_model(), synth, img_size=IMG, recipe=ProxyRecipe(epochs=0))
    with pytest.raises(DeviceError, match="--device"):
        train_proxy(_model(), synth, img_size=IMG, device="tpu9")
    with pytest.raises(ExploreError, match="model output"):
        train_proxy(TinyConv(num_classes=7), synth, img_size=IMG, recipe=ProxyRecipe(epochs=0.1))
