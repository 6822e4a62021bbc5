"""Tests of explore.train: proxy training on synthetic data, determinism and failure modes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from explore.train import ImageData, Normalizer, load_dataset
from explore.errors import DeviceError, ExploreError, NonFiniteLossError
from explore.train import (
    PRECISIONS,
    ProxyRecipe,
    ProxyResult,
    choose_precision,
    evaluate,
    seed_everything,
    train_proxy,
)

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


# ------------------------------------------------------------------ host syncs, precision (issue 13)


class HostReads(torch.Tensor):
    """A tensor that records every read of its values by the host (a GPU sync on CUDA).

    The reads propagate: every tensor computed from one is one too.
    """

    reads: list[str] = []
    _READS = {"item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__"}

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in cls._READS:
            cls.reads.append(name)
        return super().__torch_function__(func, types, args, kwargs or {})


class CountingConv(TinyConv):
    """TinyConv whose logits record host reads of anything computed from them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).as_subclass(HostReads)


@pytest.fixture
def host_reads(monkeypatch):
    reads: list[str] = []
    monkeypatch.setattr(HostReads, "reads", reads)
    return reads


@pytest.fixture
def normalizers_built(monkeypatch):
    built: list[torch.device] = []
    init = Normalizer.__init__

    def counting_init(self, img_size, mean, std, device="cpu"):
        built.append(torch.device(device))
        init(self, img_size, mean, std, device)

    monkeypatch.setattr(Normalizer, "__init__", counting_init)
    return built


def test_evaluate_reads_the_host_once(synth, host_reads, normalizers_built):
    model = _model(cls=CountingConv)
    top1 = evaluate(model, synth.val, img_size=IMG, mean=synth.mean, std=synth.std, batch_size=32)  # 8 batches
    assert 0.0 <= top1 <= 100.0
    assert host_reads == ["item"]  # the correct count, once at the end (was one .item() per batch)
    assert len(normalizers_built) == 1  # mean/std built once (was once per batch)


def test_training_reads_the_host_only_for_loss_checks(synth, host_reads, normalizers_built):
    calls: list[int] = []
    res = train_proxy(_model(cls=CountingConv), synth, img_size=IMG, recipe=ProxyRecipe(epochs=2, batch_size=64),
                      on_epoch_end=lambda e, t: calls.append(e))
    assert res.steps == 16 and calls == [0, 1]
    # on CPU the loss is checked every step (one read each); the two evaluations read once each
    assert sorted(host_reads) == ["item"] * 2 + ["tolist"] * 16
    assert len(normalizers_built) == 1  # one normaliser for the run, shared with its evaluations


def test_choose_precision_by_device(monkeypatch):
    asked: list[torch.device] = []

    def capability(device):
        asked.append(device)
        return caps[device.index]

    caps = {0: (7, 0), 1: (9, 0)}  # a V100 and an H100
    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    monkeypatch.setattr(torch.version, "hip", None)
    assert choose_precision(torch.device("cuda", 0)) == "fp16"
    assert choose_precision("cuda:1") == "bf16"
    assert asked == [torch.device("cuda", 0), torch.device("cuda", 1)]  # the GPU asked about, not the current one
    assert choose_precision("cpu") == "fp32" and choose_precision(torch.device("mps")) == "fp32"
    assert len(asked) == 2  # no CUDA call for other devices
    assert set(PRECISIONS) == {"bf16", "fp16", "fp32"}


def test_cpu_training_calls_no_cuda_api(synth, monkeypatch):
    def no_cuda(*args, **kwargs):
        raise AssertionError("a CUDA API was called for a CPU run")

    for name in ("synchronize", "get_device_capability", "is_bf16_supported", "current_device", "get_device_name"):
        monkeypatch.setattr(torch.cuda, name, no_cuda)
    res = train_proxy(_model(), synth, img_size=IMG, recipe=ProxyRecipe(epochs=0.25, batch_size=64))
    assert res.precision == "fp32" and res.steps == 2


@pytest.fixture
def scaler_log(monkeypatch):
    """Scale of every GradScaler after each update(), per scaler."""
    log: list[float] = []
    update = torch.amp.GradScaler.update

    def logging_update(self, new_scale=None):
        update(self, new_scale)
        if self.is_enabled():
            log.append(self.get_scale())

    monkeypatch.setattr(torch.amp.GradScaler, "update", logging_update)
    return log


def test_fp16_with_grad_scaler_trains_on_cpu(synth, scaler_log):
    res = train_proxy(_model(), synth, img_size=IMG, recipe=FAST, precision="fp16")
    assert res.precision == "fp16"
    assert len(scaler_log) == res.steps == 24  # the scaler stepped the optimiser every step
    assert res.top1 > 40.0, res  # chance is 10 %
    assert math.isfinite(res.train_loss) and res.train_loss < math.log(10)


class LoudGrads(TinyConv):
    """Finite fp16 logits whose gradients, times the scaler's initial 2**16, overflow fp16."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 1000.0


def test_fp16_skipped_overflow_steps_are_not_a_nan_loss(synth, scaler_log):
    res = train_proxy(_model(cls=LoudGrads), synth, img_size=IMG, recipe=ProxyRecipe(epochs=1, batch_size=64),
                      precision="fp16")
    assert res.steps == 8 and math.isfinite(res.train_loss)
    assert scaler_log[0] < 2.0**16  # the first step overflowed: skipped, scale lowered, no NonFiniteLossError


def test_bf16_on_cpu_and_bad_precision(synth):
    res = train_proxy(_model(), synth, img_size=IMG, recipe=ProxyRecipe(epochs=0.5, batch_size=64), precision="bf16")
    assert res.precision == "bf16" and res.steps == 4 and math.isfinite(res.train_loss)
    with pytest.raises(ExploreError, match="precision"):
        train_proxy(_model(), synth, img_size=IMG, precision="fp8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: trains on the last one, as cuda:N")
def test_cuda_training_on_an_explicit_device(synth):
    dev = f"cuda:{torch.cuda.device_count() - 1}"
    before = torch.backends.cudnn.benchmark
    recipe = ProxyRecipe(epochs=3, batch_size=64, lr=1e-2, nan_check_every=5)
    calls: list[int] = []
    model = _model()
    res = train_proxy(model, synth, img_size=IMG, recipe=recipe, device=dev, on_epoch_end=lambda e, t: calls.append(e))
    assert torch.backends.cudnn.benchmark == before  # restored
    assert res.precision == choose_precision(dev) and calls == [0, 1, 2]
    assert next(model.parameters()).device == torch.device(dev)
    assert res.top1 > 40.0 and math.isfinite(res.train_loss), res
    with pytest.raises(NonFiniteLossError) as info:
        train_proxy(_model(cls=NaNModel), synth, img_size=IMG, recipe=recipe, device=dev)
    assert info.value.step == 0
    fp16 = train_proxy(_model(cls=LoudGrads), synth, img_size=IMG, recipe=recipe, device=dev, precision="fp16")
    assert fp16.precision == "fp16" and math.isfinite(fp16.train_loss)


def test_cudnn_autotuning_only_for_long_runs_unless_set():
    from explore.train import AUTOTUNE_MIN_STEPS, autotune

    short = ProxyRecipe(epochs=2, batch_size=128)  # the study's default: ~156 steps on 10k images
    assert not autotune(short, 10000)
    long_run = ProxyRecipe(epochs=AUTOTUNE_MIN_STEPS, batch_size=128)
    assert autotune(long_run, 128)
    assert autotune(ProxyRecipe(epochs=1, cudnn_benchmark=True), 256)
    assert not autotune(ProxyRecipe(epochs=10_000, cudnn_benchmark=False), 60000)
    with pytest.raises(ExploreError, match="cudnn_benchmark"):
        ProxyRecipe(cudnn_benchmark="yes").validate()


class DropConv(TinyConv):
    """TinyConv with dropout: its draws come from torch's global stream, which a state must carry."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.pool(torch.relu(self.norm(self.conv(x)))).flatten(1)))


@pytest.mark.parametrize("stops", [(1.0, 2.0), (0.6, 1.3, 2.2)])
def test_a_run_stopped_at_rungs_and_continued_equals_one_run(synth, tmp_path, stops):
    """Rungs at epoch boundaries and mid-epoch: weights, loss and top-1 as if trained in one go; each
    state goes through a file read back with weights_only=True."""
    recipe = ProxyRecipe(epochs=3, batch_size=64, lr=1e-2)
    whole = _model(cls=DropConv)
    once = train_proxy(whole, synth, img_size=IMG, recipe=recipe, seed=5)

    model = _model(cls=DropConv)
    state, steps = None, 0
    for until in stops + (3.0,):
        saved: list[dict] = []
        part = train_proxy(model, synth, img_size=IMG, recipe=recipe, seed=5, until_epochs=until, resume=state,
                           on_checkpoint=saved.append)
        steps += part.steps
        torch.save(saved[0], tmp_path / "state.pt")
        state = torch.load(tmp_path / "state.pt", weights_only=True)
        model = _model(seed=99, cls=DropConv)  # fresh weights: everything must come from the state
    assert steps == once.steps == 3 * (512 // 64)
    assert part.top1 == once.top1 and part.train_loss == pytest.approx(once.train_loss, abs=0)
    model.load_state_dict(state["model"])
    for a, b in zip(whole.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_rung_reports_its_own_part_and_bad_states_are_refused(synth):
    recipe = ProxyRecipe(epochs=2, batch_size=64, lr=1e-2)
    saved: list[dict] = []
    first = train_proxy(_model(), synth, img_size=IMG, recipe=recipe, until_epochs=0.5, on_checkpoint=saved.append)
    assert first.steps == 4 and saved[0]["step"] == 4 and 0 <= first.top1 <= 100
    with pytest.raises(ExploreError, match="until_epochs"):
        train_proxy(_model(), synth, img_size=IMG, recipe=recipe, until_epochs=2.5)
    other = ProxyRecipe(epochs=3, batch_size=64, lr=1e-2)  # another schedule: another lr curve
    with pytest.raises(ExploreError, match="checkpoint.*total_steps"):
        train_proxy(_model(), synth, img_size=IMG, recipe=other, resume=saved[0])


def test_validation_split_is_moved_to_the_device_once_per_run(monkeypatch):
    """The proxy loop evaluates on a device-resident copy of the validation split (no pageable copy per
    batch): every evaluation of a run gets the same resident split (the meta device stands in for a GPU)."""
    import torch

    import explore.train.proxy as proxy
    from explore.train.splits import ImageData

    split = ImageData(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64))
    assert proxy.resident(split, torch.device("cpu")) is split
    moved = proxy.resident(split, torch.device("meta"))
    assert moved.images.device.type == "meta" and moved.labels.device.type == "meta"
    assert moved.images.dtype == torch.uint8 and split.images.device.type == "cpu"

    calls = []
    real = proxy.resident
    monkeypatch.setattr(proxy, "resident", lambda s, d: calls.append(s) or real(s, d))
    seen = []
    real_evaluate = proxy._evaluate
    monkeypatch.setattr(proxy, "_evaluate", lambda model, data, *a: seen.append(data) or real_evaluate(model, data, *a))
    from explore.nn import build
    from explore.train import ProxyRecipe, load_dataset
    from tests.conftest import tiny_config

    data = load_dataset("synthetic", max_train=32, max_val=16)
    config = tiny_config(img_size=32, num_classes=data.num_classes, in_chans=data.train.images.shape[1])
    proxy.train_proxy(build(config), data, img_size=32, recipe=ProxyRecipe(epochs=2, batch_size=16), device="cpu")
    assert len(calls) == 1 and calls[0] is data.val and seen and all(s is seen[0] for s in seen)
