"""Short-proxy training: train a candidate briefly and measure its top-1 on a held-out split.

The recipe (AdamW, linear warm-up then cosine decay, label smoothing, crop + flip augmentation)
is ours; it ranks architectures cheaply rather than reproducing any paper's full schedule.
Batches are drawn by a seeded permutation over the in-memory uint8 tensors of a
:class:`~explore.train.DatasetBundle` and converted per batch on the target device.
Mixed precision follows the device (:func:`choose_precision`): bf16 autocast on CUDA GPUs with
native bf16 (compute capability >= 8.0), fp16 autocast with a gradient scaler on older ones
(e.g. the V100 of the EfficientViT-M paper, arXiv 2305.07027), float32 elsewhere.
"""

from __future__ import annotations

import dataclasses

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from explore.train.normalize import Normalizer
from explore.train.splits import DatasetBundle, ImageData
from explore.device import resolve_device
from explore.errors import DataError, ExploreError, NonFiniteLossError

__all__ = ["PRECISIONS", "ProxyRecipe", "ProxyResult", "choose_precision", "train_proxy", "evaluate", "seed_everything",
           "autotune", "AUTOTUNE_MIN_STEPS", "Optimisation", "optimisation", "train_step", "autocast",
           "check_losses"]

PRECISIONS = ("bf16", "fp16", "fp32")
"""Training precisions: autocast to bfloat16, autocast to float16 with a gradient scaler, float32."""


@dataclass(frozen=True)
class ProxyRecipe:
    """Hyper-parameters of a short proxy training run.

    Attributes:
        epochs: passes over the training split; may be fractional (0.5 runs half an epoch of
            steps). Must be > 0.
        batch_size: training images per step (capped at the training-set size).
        lr: AdamW peak learning rate.
        weight_decay: AdamW weight decay, applied to weights of 2 or more dimensions only.
        warmup_fraction: share of the total steps spent in linear warm-up, in [0, 1); the rest
            decays by a cosine to 0.
        label_smoothing: label smoothing of the cross-entropy loss, in [0, 1).
        augment: random crop (zero padding of ``img_size // 8`` pixels, at least 1, in
            normalised units) and horizontal flip, applied per sample on each batch.
        eval_batch_size: images per evaluation batch.
        max_seconds: optional wall-clock budget for training steps, in seconds (evaluation
            time excluded); training stops after the step that exceeds it.
        compile: train through ``torch.compile`` (worth it for long GPU runs; the first steps
            pay the compilation).
        nan_check_every: on CUDA, check the loss for NaN/inf every this many steps (one host
            sync each) instead of every step; on CPU every step is checked.
        cudnn_benchmark: on CUDA, let cuDNN autotune its kernels (True/False), or None to decide by
            the run's length (:func:`autotune`).
    """

    epochs: float = 1.0
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.1
    augment: bool = True
    eval_batch_size: int = 256
    max_seconds: float | None = None
    compile: bool = False
    nan_check_every: int = 25
    cudnn_benchmark: bool | None = None

    def validate(self) -> None:
        """Check every field.

        Raises:
            ExploreError: a field (named ``"recipe.<field>"``) is out of range.
        """
        checks = [
            ("epochs", self.epochs, _is_number(self.epochs) and self.epochs > 0, "expected a number > 0"),
            ("batch_size", self.batch_size, _is_int(self.batch_size) and self.batch_size >= 1,
             "expected an integer >= 1"),
            ("lr", self.lr, _is_number(self.lr) and self.lr > 0, "expected a number > 0"),
            ("weight_decay", self.weight_decay, _is_number(self.weight_decay) and self.weight_decay >= 0,
             "expected a number >= 0"),
            ("warmup_fraction", self.warmup_fraction,
             _is_number(self.warmup_fraction) and 0 <= self.warmup_fraction < 1, "expected a number in [0, 1)"),
            ("label_smoothing", self.label_smoothing,
             _is_number(self.label_smoothing) and 0 <= self.label_smoothing < 1, "expected a number in [0, 1)"),
            ("eval_batch_size", self.eval_batch_size, _is_int(self.eval_batch_size) and self.eval_batch_size >= 1,
             "expected an integer >= 1"),
            ("nan_check_every", self.nan_check_every, _is_int(self.nan_check_every) and self.nan_check_every >= 1,
             "expected an integer >= 1"),
            ("cudnn_benchmark", self.cudnn_benchmark, self.cudnn_benchmark in (None, True, False),
             "expected true, false or None (decided by the run's length)"),
            ("max_seconds", self.max_seconds,
             self.max_seconds is None or (_is_number(self.max_seconds) and self.max_seconds > 0),
             "expected None or a number of seconds > 0"),
        ]
        for field, value, ok, expected in checks:
            if not ok:
                raise ExploreError(f"recipe.{field}", value, expected)


@dataclass(frozen=True)
class ProxyResult:
    """Outcome of :func:`train_proxy`.

    Attributes:
        top1: top-1 accuracy on the val split, percent (0-100).
        train_loss: mean training loss over the steps of the last (possibly partial) epoch.
        steps: optimizer steps run (fewer than planned when ``max_seconds`` stopped training).
        train_seconds: wall-clock seconds spent in training steps (evaluation excluded).
        eval_seconds: wall-clock seconds spent in evaluation (all evaluations of the run).
        train_img_s: training throughput, images/s (images seen / train_seconds).
        precision: the precision trained and evaluated in, one of :data:`PRECISIONS`.
    """

    top1: float
    train_loss: float
    steps: int
    train_seconds: float
    eval_seconds: float
    train_img_s: float
    precision: str = "fp32"

    @property
    def score(self) -> float:
        """The quality a study or an ablation ranks by: top-1 (%)."""
        return self.top1


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and all CUDA devices).

    Args:
        seed: the seed, a non-negative integer.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weights of >= 2 dims, none on norms, biases and attention biases."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or "attention_biases" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak lr at step s: linear warm-up to 1, then cosine decay to 0."""

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-sample random crop (zero padding) and horizontal flip of float (B, C, H, W)."""
    b, _, h, w = x.shape
    pad = max(1, min(h, w) // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    dev = gen.device  # draws happen where the generator lives (the GPU on CUDA: no host round trip)
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=dev).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=dev).to(x.device)
    flip = (torch.rand((b,), generator=gen, device=dev) < 0.5).to(x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = torch.arange(w, device=x.device).expand(b, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + ox[:, None]  # (B, W)
    bidx = torch.arange(b, device=x.device)[:, None, None]
    out = padded[bidx, :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


def _prepare(x_uint8: torch.Tensor, device: torch.device, normalize: Normalizer) -> torch.Tensor:
    x = normalize(x_uint8.to(device, non_blocking=True))
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def choose_precision(device: str | torch.device) -> str:
    """The training precision for a device: ``"bf16"``, ``"fp16"`` or ``"fp32"``.

    CUDA GPUs of compute capability 8.0 or more (A100, H100, ...) and ROCm GPUs get bf16
    autocast; older CUDA GPUs (V100, T4) get fp16 autocast with a gradient scaler, since they
    only emulate bf16 (slowly; ``torch.cuda.is_bf16_supported()`` says True there unless asked
    ``including_emulation=False``, and it asks about the current device, not ``device``). Every
    other device trains in float32. No CUDA function is called unless ``device`` is CUDA.

    Args:
        device: a resolved device, e.g. ``torch.device("cuda", 1)`` (the capability of that GPU
            is read) or ``"cpu"``.

    Returns:
        One of :data:`PRECISIONS`.
    """
    dev = torch.device(device)
    if dev.type != "cuda":
        return "fp32"
    if torch.version.hip:
        return "bf16"
    major, _ = torch.cuda.get_device_capability(dev)
    return "bf16" if major >= 8 else "fp16"


_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str):  # noqa: ANN201 - a context manager
    """The autocast context of a precision (``fp32``: autocast off)."""
    if precision == "fp32":
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision])


def _check_precision(precision: str | None, device: torch.device) -> str:
    """Resolve ``None`` to :func:`choose_precision`; check a requested precision."""
    if precision is None:
        return choose_precision(device)
    if precision not in PRECISIONS:
        raise ExploreError("precision", precision, f"expected one of {', '.join(PRECISIONS)} or None (by device)")
    if precision != "fp32" and device.type not in ("cpu", "cuda"):
        raise ExploreError("precision", precision, f"expected fp32 on {device.type}")
    return precision


def _optimizer(groups: list[dict], lr: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW, fused on CPU and CUDA: one kernel per step, and a gradient scaler hands it its
    scale and inf flag on the device instead of reading them on the host every step."""
    return torch.optim.AdamW(groups, lr=lr, fused=device.type in ("cpu", "cuda"))


@dataclass
class Optimisation:
    """What one training step updates: the AdamW optimiser, the gradient scaler (active for fp16),
    the per-step lr schedule and the loss (see :func:`optimisation`)."""

    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module


def optimisation(model: nn.Module, recipe: ProxyRecipe, device: torch.device, precision: str,
                 total_steps: int) -> Optimisation:
    """The recipe's optimisation for ``total_steps`` steps of ``model`` on ``device``.

    AdamW (fused on CPU and CUDA; no weight decay on 1-D parameters or attention biases), a
    gradient scaler enabled for fp16, linear warm-up over ``recipe.warmup_fraction`` of the steps
    then cosine decay to 0, cross-entropy with ``recipe.label_smoothing``.

    Raises:
        ExploreError: the model has no trainable parameter (field ``model``).
    """
    groups = _param_groups(model, recipe.weight_decay)
    if not groups:
        raise ExploreError("model", type(model).__name__, "expected at least one trainable parameter")
    optimizer = _optimizer(groups, recipe.lr, device)
    warmup_steps = int(recipe.warmup_fraction * total_steps)
    return Optimisation(
        optimizer=optimizer,
        scaler=torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total_steps, warmup_steps)),
        criterion=nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing),
    )


def check_losses(losses: list[torch.Tensor], first_step: int) -> list[float]:
    """The values of detached 0-dim losses, read with one host sync for the lot.

    Args:
        losses: the losses of consecutive steps, the first being step ``first_step`` (0-based).

    Raises:
        NonFiniteLossError: a loss is NaN or infinite (the first such step is named).
    """
    values = torch.stack(losses).tolist()
    for offset, value in enumerate(values):
        if not math.isfinite(value):
            raise NonFiniteLossError(first_step + offset, value)
    return values


def train_step(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    opt: Optimisation,
    device: torch.device,
    precision: str,
    num_classes: int,
) -> torch.Tensor:
    """One optimizer step without any host read; returns the unscaled loss, detached (0-dim).

    The logits' shape (metadata, not a host read) is checked before the loss: (B, num_classes)
    for class labels y (B,), (B, num_classes, H, W) for per-pixel labels y (B, H, W). With fp16 the
    scaler multiplies the loss before backward; when the scaled gradients overflow it skips
    the parameter update and lowers its scale, on the device (the fused AdamW takes the scale
    and the inf flag as tensors). The returned loss is the unscaled one, finite on such a
    step, so the NaN check only fires on a loss that really diverged. The lr schedule is not
    stepped here (the caller steps it once per step).

    Raises:
        ExploreError: the logits are not (B, num_classes, *y.shape[1:]) (field ``"model output"``).
    """
    with autocast(device, precision):
        logits = forward(x)
    expected = (x.shape[0], num_classes, *y.shape[1:])
    if tuple(logits.shape) != expected:
        dims = ", ".join(["B", str(num_classes), *map(str, y.shape[1:])])
        raise ExploreError("model output", tuple(logits.shape), f"expected logits ({dims})")
    loss = opt.criterion(logits.float(), y)
    opt.optimizer.zero_grad(set_to_none=True)
    opt.scaler.scale(loss).backward()
    opt.scaler.step(opt.optimizer)
    opt.scaler.update()
    return loss.detach()


def evaluate(
    model: nn.Module,
    data: ImageData,
    *,
    img_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> float:
    """Top-1 accuracy of a model on a split.

    The model is moved to ``device`` and run in eval mode without gradients (on CUDA in
    channels_last and the autocast of :func:`choose_precision`); its previous train/eval mode
    is restored afterwards. Correct predictions are counted on the device: the host reads the
    count once, at the end.

    Args:
        model: maps float32 (B, C, img_size, img_size) to logits (B, num_classes).
        data: uint8 images (N, C, H, W) and int64 labels (N,).
        img_size: side in pixels of the model input.
        mean: per-channel mean in [0, 1] units, length C.
        std: per-channel standard deviation in [0, 1] units, length C.
        batch_size: images per forward pass.
        device: torch device string.

    Returns:
        Top-1 accuracy, percent (0-100).

    Raises:
        DataError: the split is empty.
        DeviceError: the device is unknown or unavailable.
    """
    if len(data.labels) == 0:
        raise DataError("val", 0, "expected at least one image to evaluate on")
    dev = resolve_device(device)
    normalize = Normalizer(img_size, mean, std, dev)
    return _evaluate(model, data, normalize, batch_size, dev, choose_precision(dev))


def resident(split: ImageData, device: torch.device) -> ImageData:
    """``split`` held on ``device`` (a copy of its uint8 images and labels), or itself on the CPU.

    The training loop keeps its splits on the GPU for the whole run: a batch is then sliced on the
    device, and no pageable host memory is copied per batch.
    """
    if device.type == "cpu":
        return split
    return dataclasses.replace(split, images=split.images.to(device), labels=split.labels.to(device))


def _evaluate(
    model: nn.Module, data: ImageData, normalize: Normalizer, batch_size: int, dev: torch.device, precision: str
) -> float:
    """:func:`evaluate` with the normaliser and precision of the run: one host read in all."""
    n = len(data.labels)
    model.to(dev)
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    try:
        with torch.no_grad(), autocast(dev, precision):
            for start in range(0, n, batch_size):
                x = _prepare(data.images[start : start + batch_size], dev, normalize)
                y = data.labels[start : start + batch_size].to(dev, non_blocking=True)
                logits = model(x)
                correct += (logits.argmax(dim=1) == y).sum()
    finally:
        model.train(was_training)
    return 100.0 * int(correct.item()) / n


def train_proxy(
    model: nn.Module,
    data: DatasetBundle,
    *,
    img_size: int,
    recipe: ProxyRecipe = ProxyRecipe(),
    device: str | torch.device = "cpu",
    seed: int = 0,
    on_epoch_end: Callable[[int, float], None] | None = None,
    precision: str | None = None,
    until_epochs: float | None = None,
    resume: dict | None = None,
    on_checkpoint: Callable[[dict], None] | None = None,
) -> ProxyResult:
    """Train a model briefly on ``data.train`` and measure its top-1 on ``data.val``.

    AdamW (fused on CPU and CUDA; no weight decay on 1-D parameters or parameters named
    ``*attention_biases*``), linear warm-up then cosine decay to 0 (per step), cross-entropy
    with label smoothing. Each epoch visits a seeded random permutation of the training split in
    batches of ``recipe.batch_size`` (the last incomplete batch is dropped, so every step has the
    same shapes). On CUDA the whole uint8 dataset is moved to the GPU once, batches are gathered,
    converted and augmented there (the random draws too), the model runs in channels_last with
    the autocast of ``precision``, cuDNN autotunes its kernels for long runs (:func:`autotune`;
    ``cudnn.benchmark``, restored on return; CUDA runs are not bit-reproducible), and the host synchronises only every
    ``recipe.nan_check_every`` steps and once per epoch, so small models are not held back by
    the host. On CPU the loss is checked every step, and a run is reproducible given ``seed``.

    Args:
        model: maps float32 (B, C, img_size, img_size) to logits (B, num_classes); moved to
            ``device`` and trained in place.
        data: the dataset; images uint8 (N, C, H, W) are converted per batch by one
            :class:`~explore.train.Normalizer` built for the run.
        img_size: side in pixels of the model input.
        recipe: training hyper-parameters.
        device: torch device string (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``).
        seed: seeds torch, NumPy, ``random`` and the batch order and augmentation.
        on_epoch_end: when given, called as ``on_epoch_end(epoch_index, val_top1)`` after
            each full epoch, with top-1 in percent (it may raise, e.g. to prune a trial; the
            exception propagates). Without it the model is evaluated only at the end.
        precision: one of :data:`PRECISIONS`, or ``None`` (default) for
            :func:`choose_precision` of the device. ``"fp16"`` scales the loss with a
            ``torch.amp.GradScaler``: a step whose scaled gradients overflow is skipped and the
            scale lowered, which is not a non-finite loss. bf16 and fp16 need a CPU or CUDA
            device.
        until_epochs: train only the first ``until_epochs`` epochs of the ``recipe.epochs``
            schedule (a rung of successive halving: the lr schedule is the full one's, so a run
            continued to the end equals a run trained in one go), then evaluate; None: to the end.
        resume: a state from ``on_checkpoint`` of an earlier call with the same data, recipe and
            precision: continue from it (weights, optimiser, lr schedule, scaler, batch order and
            random streams) instead of starting afresh.
        on_checkpoint: called once at the end with the run's state (tensors and numbers only, so
            ``torch.load(..., weights_only=True)`` reads it back).

    Returns:
        A :class:`ProxyResult` (top-1 percent, loss, steps, seconds, img/s, precision) of this
        call's part of the schedule.

    Raises:
        ExploreError: a recipe field or ``precision`` is out of range, or the model's logits do
            not have shape (B, num_classes).
        DataError: the training or val split is empty.
        DeviceError: the device is unknown or unavailable.
        NonFiniteLossError: the (unscaled) loss became NaN or infinite; on CUDA it is raised
            at the next check, naming the first such step.
        ExploreError: ``until_epochs`` outside (0, recipe.epochs], or a ``resume`` state of another
            run (field ``checkpoint``).
    """
    recipe.validate()
    if until_epochs is not None and not (_is_number(until_epochs) and 0 < until_epochs <= recipe.epochs + 1e-9):
        raise ExploreError("until_epochs", until_epochs, f"expected a number in (0, recipe.epochs = {recipe.epochs:g}]")
    segment = _Segment(until_epochs, resume, on_checkpoint)
    dev = resolve_device(device)
    precision = _check_precision(precision, dev)
    if len(data.train.labels) == 0:
        raise DataError("train", 0, "expected at least one training image")
    if len(data.val.labels) == 0:
        raise DataError("val", 0, "expected at least one image to evaluate on")
    if dev.type != "cuda":
        return _train(model, data, img_size, recipe, dev, seed, on_epoch_end, precision, segment)
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = autotune(recipe, len(data.train.labels))  # fixed shapes: tune once, reuse
    try:
        with torch.cuda.device(dev):  # events, streams and syncs on this device, not device 0
            return _train(model, data, img_size, recipe, dev, seed, on_epoch_end, precision, segment)
    finally:
        torch.backends.cudnn.benchmark = benchmark


AUTOTUNE_MIN_STEPS = 1000
"""With ``cudnn_benchmark`` None, cuDNN autotunes only runs of at least this many steps. Measured on an
H200 (M0, 64 px, batch 256): the first 32 steps of a new architecture took 7-9 s with autotuning and
4.3 s without, and autotuning gains at most about 5 % per step afterwards, so it pays off only after
several hundred steps; a study builds a new architecture every trial and trains it for ~100-200."""


def autotune(recipe: ProxyRecipe, n_train: int) -> bool:
    """Whether cuDNN should autotune (``torch.backends.cudnn.benchmark``) for this run: the recipe's
    ``cudnn_benchmark`` when set, else True for runs of >= :data:`AUTOTUNE_MIN_STEPS` steps."""
    if recipe.cudnn_benchmark is not None:
        return bool(recipe.cudnn_benchmark)
    steps_per_epoch = max(1, n_train // min(recipe.batch_size, max(1, n_train)))
    return recipe.epochs * steps_per_epoch >= AUTOTUNE_MIN_STEPS


@dataclass(frozen=True)
class _Segment:
    """The part of the schedule one call of :func:`train_proxy` runs (see its arguments)."""

    until_epochs: float | None = None
    resume: dict | None = None
    on_checkpoint: Callable[[dict], None] | None = None


CHECKPOINT_VERSION = 1
"""Version of the state that ``train_proxy(on_checkpoint=...)`` hands out."""


def _train(
    model: nn.Module,
    data: DatasetBundle,
    img_size: int,
    recipe: ProxyRecipe,
    dev: torch.device,
    seed: int,
    on_epoch_end: Callable[[int, float], None] | None,
    precision: str,
    segment: _Segment = _Segment(),
) -> ProxyResult:
    """The loop of :func:`train_proxy`, its arguments checked."""
    n_train = len(data.train.labels)
    seed_everything(seed)
    on_cuda = dev.type == "cuda"
    gen = torch.Generator(device=dev if on_cuda else "cpu").manual_seed(int(seed))
    # CUDA: hold the (uint8) training split on the GPU, so batches never cross the bus
    train_images = data.train.images.to(dev) if on_cuda else data.train.images
    train_labels = data.train.labels.to(dev) if on_cuda else data.train.labels
    normalize = Normalizer(img_size, data.mean, data.std, dev)  # once per run: no copy per batch

    model.to(dev)
    if on_cuda:
        model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if recipe.compile else model

    batch_size = min(recipe.batch_size, n_train)
    steps_per_epoch = n_train // batch_size
    total_steps = max(1, round(recipe.epochs * steps_per_epoch))
    stop_step = total_steps
    if segment.until_epochs is not None:
        stop_step = min(total_steps, max(1, round(segment.until_epochs * steps_per_epoch)))
    opt = optimisation(model, recipe, dev, precision, total_steps)
    check_every = recipe.nan_check_every if on_cuda else 1

    val = resident(data.val, dev)  # once per run, as the training split: no pageable copy per batch

    def eval_val() -> float:
        return _evaluate(model, val, normalize, recipe.eval_batch_size, dev, precision)

    train_seconds = 0.0
    eval_seconds = 0.0
    images_seen = 0
    step = 0
    epoch_losses: list[float] = []
    perm: torch.Tensor | None = None
    if segment.resume is not None:
        step, perm, epoch_losses = _load_state(segment.resume, model, opt, gen, dev, precision,
                                               total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    start_step = step
    top1: float | None = None
    model.train()
    while step < stop_step:
        epoch = step // steps_per_epoch
        first = step % steps_per_epoch
        if first == 0 or perm is None:  # a new epoch (a resumed run goes on with its epoch's order)
            epoch_losses = []
            perm = torch.randperm(n_train, generator=gen, device=gen.device)
        pending: list[torch.Tensor] = []
        stopped = False
        t0 = time.perf_counter()
        for i in range(first, steps_per_epoch):
            if step >= stop_step:
                break
            idx = perm[i * batch_size : (i + 1) * batch_size]
            x = _prepare(train_images[idx], dev, normalize)
            if recipe.augment:
                x = _augment(x, gen)
                if on_cuda:
                    x = x.contiguous(memory_format=torch.channels_last)
            y = train_labels[idx].to(dev, non_blocking=True)
            loss = train_step(forward, x, y, opt, dev, precision, data.num_classes)
            pending.append(loss)
            if len(pending) >= check_every:
                epoch_losses += check_losses(pending, step + 1 - len(pending))
                pending = []
            opt.scheduler.step()
            images_seen += batch_size
            step += 1
            if recipe.max_seconds is not None and train_seconds + time.perf_counter() - t0 >= recipe.max_seconds:
                stopped = True
                break
        if pending:
            epoch_losses += check_losses(pending, step - len(pending))
        if on_cuda:
            torch.cuda.synchronize(dev)
        train_seconds += time.perf_counter() - t0
        epoch_done = len(epoch_losses) == steps_per_epoch
        if on_epoch_end is not None and epoch_done:
            t1 = time.perf_counter()
            top1 = eval_val()
            eval_seconds += time.perf_counter() - t1
            on_epoch_end(epoch, top1)
        elif not epoch_done:
            top1 = None
        if stopped:
            break

    if top1 is None:  # no evaluation yet of the final weights
        t0 = time.perf_counter()
        top1 = eval_val()
        eval_seconds += time.perf_counter() - t0
    model.train()
    if segment.on_checkpoint is not None:
        segment.on_checkpoint(_state(model, opt, gen, dev, step=step, perm=perm, epoch_losses=epoch_losses,
                                     total_steps=total_steps, steps_per_epoch=steps_per_epoch, precision=precision))
    train_loss = sum(epoch_losses) / len(epoch_losses) if epoch_losses else float("nan")
    return ProxyResult(
        top1=top1,
        train_loss=train_loss,
        steps=step - start_step,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        train_img_s=images_seen / train_seconds if train_seconds > 0 else 0.0,
        precision=precision,
    )


def _state(model: nn.Module, opt: Optimisation, gen: torch.Generator, dev: torch.device, *, step: int,
           perm: torch.Tensor | None, epoch_losses: list[float], total_steps: int, steps_per_epoch: int,
           precision: str) -> dict:
    """Everything a later call needs to go on from ``step`` as if it had never stopped."""
    state = {
        "version": CHECKPOINT_VERSION,
        "step": step,
        "total_steps": total_steps,
        "steps_per_epoch": steps_per_epoch,
        "precision": precision,
        "model": model.state_dict(),
        "optimizer": opt.optimizer.state_dict(),
        "scheduler": opt.scheduler.state_dict(),
        "scaler": opt.scaler.state_dict(),
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),  # dropout draws from the global stream
        "perm": perm.cpu() if perm is not None else None,
        "epoch_losses": list(epoch_losses),
    }
    if dev.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(dev)
    return state


def _load_state(state: dict, model: nn.Module, opt: Optimisation, gen: torch.Generator, dev: torch.device,
                precision: str, *, total_steps: int, steps_per_epoch: int) -> tuple[int, torch.Tensor | None, list[float]]:
    """Restore a :func:`_state` into this run; returns (step, the epoch's order, the epoch's losses).

    Raises:
        ExploreError: field ``checkpoint``: another version, schedule, data size or precision.
    """
    expected = {"version": CHECKPOINT_VERSION, "total_steps": total_steps, "steps_per_epoch": steps_per_epoch,
                "precision": precision}
    for key, value in expected.items():
        if state.get(key) != value:
            raise ExploreError("checkpoint", f"{key}={state.get(key)!r}",
                               f"expected {key}={value!r}: a state of this run's schedule, data and precision")
    model.load_state_dict(state["model"])
    opt.optimizer.load_state_dict(state["optimizer"])
    opt.scheduler.load_state_dict(state["scheduler"])
    opt.scaler.load_state_dict(state["scaler"])
    gen.set_state(state["generator"].cpu())
    torch.set_rng_state(state["torch_rng"].cpu())
    if dev.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), dev)
    perm = state.get("perm")
    if perm is not None:
        perm = perm.to(gen.device)
    return int(state["step"]), perm, [float(v) for v in state.get("epoch_losses", [])]
