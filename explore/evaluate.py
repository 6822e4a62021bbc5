"""One candidate, end to end: build -> count -> time -> train; and the budget every command shares.

Every command that evaluates architectures goes through this module: ``explore study`` (each
trial), ``explore ablate`` (variants' params, MACs, latency and proxy top-1), ``explore
validate-proxy`` (the short and the long budget) and ``explore importance`` (the original, the
pruned and the suggested model). So the conventions live here once:

* a candidate is built under its seed (:func:`explore.train.seed_everything`, then
  :func:`explore.nn.build`), so the same seed gives the same initial weights;
* params and MACs are counted on one image of the config's size (:mod:`explore.measure.counting`);
* latency is measured by a protocol under the device's exclusive lock
  (:func:`explore.measure.time_model`), and training runs under its shared lock
  (:func:`explore.device.device_lock`): no process of this machine times a device while another
  trains on it;
* training is the proxy loop (:func:`explore.train.train_proxy`) on the device made current,
  with the CPU threads the caller asks for (restored afterwards).

:class:`TrainBudget` (data and proxy schedule) and :class:`RunBudget` (plus seed and device) are
the budget fields that the settings of study, importance, validate-proxy and the ablation recipes
share (each keeps its own defaults).

Follows: the evaluation of arXiv:2305.07027 §4.1 (params, MACs with BN not counted, latency with
BN fused) applied to a short proxy training instead of a full ImageNet run.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from explore.arch import ArchConfig
from explore.device import device_lock, on_device
from explore.measure import Measurement, Protocol, count_model, time_model, time_rounds
from explore.nn import build
from explore.errors import ExploreError
from explore.train import (DatasetBundle, ProxyRecipe, ProxyResult, SegmentationData, SegmentationResult, load_dataset,
                           load_segmentation, seed_everything, train_proxy, train_segmentation)

__all__ = ["TrainBudget", "RunBudget", "Evaluation", "Step", "count_model", "time_model", "time_rounds", "train_model",
           "evaluate_candidate"]


@dataclass(frozen=True, kw_only=True)
class TrainBudget:
    """The data and the proxy schedule of a command (the ``--dataset`` ... ``--lr`` options).

    Attributes:
        dataset, data_root: see :func:`explore.train.load_dataset` (classification) and
            :func:`explore.train.load_segmentation` (segmentation).
        max_train, max_val: random subsets of the splits (images; None = all); segmentation: scenes
            or image/mask pairs.
        epochs, batch_size, lr: the proxy schedule (:class:`explore.train.ProxyRecipe`).
        task: ``classification`` (top-1) or ``segmentation`` (mIoU; :func:`explore.train.train_segmentation`).
        seg_size: segmentation only: the side of the scenes and of the model input, pixels.
        seg_head_width, seg_head_depth: segmentation only: the MIT head put on every architecture
            (:meth:`task_config`).
    """

    dataset: str = "fashion_mnist"
    data_root: str | None = None
    max_train: int | None = 10000
    max_val: int | None = 2000
    epochs: float = 2.0
    batch_size: int = 128
    lr: float = 2e-3
    task: str = "classification"
    seg_size: int = 128
    seg_head_width: int = 32
    seg_head_depth: int = 2

    def task_config(self, config: ArchConfig, img_size: int | None = None) -> ArchConfig:
        """An architecture as this budget trains it: unchanged for classification; for segmentation,
        at ``img_size`` (default ``seg_size``) with the MIT head (``seg_head_width``, ``seg_head_depth``;
        the last three stages fused, or all of a model with fewer)."""
        if self.task != "segmentation":
            return config
        return config.replace(img_size=img_size or self.seg_size, seg_head_width=self.seg_head_width,
                              seg_head_depth=self.seg_head_depth,
                              seg_head_inputs=min(config.seg_head_inputs, len(config.stages)))

    def proxy_recipe(self, epochs: float | None = None) -> ProxyRecipe:
        """The :class:`~explore.train.ProxyRecipe` of this budget (``epochs`` overrides its own)."""
        return ProxyRecipe(epochs=self.epochs if epochs is None else epochs, batch_size=self.batch_size, lr=self.lr)

    def load_data(self, seed: int, img_size: int = 32) -> DatasetBundle | SegmentationData:
        """The budget's data: the subsets drawn with ``seed`` (``img_size``: imagefolder and
        synthetic images only; segmentation: ``seg_size``).

        Raises:
            DataError: unknown dataset, missing data, bad subset sizes.
        """
        if self.task == "segmentation":
            return load_segmentation(self.dataset, self.data_root, max_train=self.max_train, max_val=self.max_val,
                                     seed=seed, size=self.seg_size)
        return load_dataset(self.dataset, self.data_root, max_train=self.max_train, max_val=self.max_val, seed=seed,
                            img_size=img_size)


@dataclass(frozen=True, kw_only=True)
class RunBudget(TrainBudget):
    """A :class:`TrainBudget` run with one seed on one device (``--seed``, ``--device``)."""

    seed: int = 0
    device: str = "cpu"


Step = Literal["built", "counted", "timed", "trained"]
"""The steps of :func:`evaluate_candidate`, in order; ``on_step`` is called after each."""


@dataclass
class Evaluation:
    """What :func:`evaluate_candidate` found (the fields of steps that were not asked stay None).

    Attributes:
        config: the candidate.
        model: the built module (trained in place when training was asked).
        params, macs: counts (MACs of one image at ``config.img_size``).
        latency: the protocol's measurement.
        proxy: the proxy training's result (top-1 %, or mIoU % for segmentation data, seconds, ...).
    """

    config: ArchConfig
    model: nn.Module
    params: int | None = None
    macs: int | None = None
    latency: Measurement | None = None
    proxy: ProxyResult | SegmentationResult | None = None


def train_model(model: nn.Module, data: DatasetBundle | SegmentationData, *, img_size: int, recipe: ProxyRecipe, seed: int,
                device: str | torch.device = "cpu", threads: int | None = None,
                on_epoch_end: Callable[[int, float], None] | None = None, until_epochs: float | None = None,
                resume: dict | None = None,
                on_checkpoint: Callable[[dict], None] | None = None) -> ProxyResult | SegmentationResult:
    """Proxy-train ``model`` in place (:func:`explore.train.train_proxy`) under the shared lock of
    ``device``, with the device current and, on the CPU, ``threads`` intra-op threads (None:
    leave as is; restored afterwards). ``until_epochs``, ``resume`` and ``on_checkpoint`` train one
    rung of the schedule and hand out its state (see :func:`explore.train.train_proxy`). Segmentation
    data (:class:`explore.train.SegmentationData`) trains with :func:`explore.train.train_segmentation`
    (mIoU), in one go.

    Raises:
        ExploreError, DataError, DeviceError, NonFiniteLossError: as :func:`explore.train.train_proxy`.
    """
    dev = torch.device(device)
    with _threads(dev, threads), device_lock(dev, exclusive=False), on_device(dev):
        if not isinstance(data, SegmentationData):
            return train_proxy(model, data, img_size=img_size, recipe=recipe, device=str(device), seed=seed,
                               on_epoch_end=on_epoch_end, until_epochs=until_epochs, resume=resume,
                               on_checkpoint=on_checkpoint)
        if until_epochs is not None or resume is not None:
            raise ExploreError("--schedule", "sha", "segmentation trains each architecture in one go (--schedule full)")
        return train_segmentation(model, data, recipe=recipe, device=str(device), seed=seed, on_epoch_end=on_epoch_end)


@contextmanager
def _threads(device: str | torch.device, threads: int | None):
    """``threads`` CPU intra-op threads on the CPU (None: as is), restored afterwards."""
    before = torch.get_num_threads()
    if threads is not None and torch.device(device).type == "cpu":
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def evaluate_candidate(config: ArchConfig, *, seed: int | None = None, count: bool = True,
                       protocol: Protocol | None = None, data: DatasetBundle | SegmentationData | None = None,
                       recipe: ProxyRecipe | None = None, device: str | torch.device = "cpu",
                       threads: int | None = None, on_epoch_end: Callable[[int, float], None] | None = None,
                       on_step: Callable[[Step, Evaluation], None] | None = None, until_epochs: float | None = None,
                       resume: dict | None = None, on_checkpoint: Callable[[dict], None] | None = None) -> Evaluation:
    """Evaluate one architecture: build -> count -> time -> train, each step only where asked.

    Args:
        config: the candidate (``img_size``, ``in_chans`` and ``num_classes`` as it is to be built).
        seed: seeds the initial weights (and training; default 0 for training); None: unseeded.
        count: count params and MACs.
        protocol: measure latency with it (:func:`explore.measure.time_model`).
        data: proxy-train on it.
        recipe: the proxy recipe (default :class:`ProxyRecipe`).
        device: training's device (:func:`train_model`).
        threads: training's CPU threads.
        on_epoch_end: training's per-epoch callback.
        on_step: called after each step with its name and the evaluation so far (a study records
            each figure as it comes, and its fault-injection seam runs after ``timed``).
        until_epochs: train one rung of ``recipe``'s schedule, up to this epoch
            (:func:`explore.train.train_proxy`).
        resume: the stored state the rung starts from.
        on_checkpoint: called with the state at the rung's end.

    Returns:
        :class:`Evaluation`.

    Raises:
        Exception: whatever a step raises (out of memory, a non-finite loss, bad input), after the
            steps before it were reported through ``on_step``.
    """

    def done(step: Step) -> None:
        if on_step is not None:
            on_step(step, evaluation)

    if seed is not None:
        seed_everything(seed)
    evaluation = Evaluation(config, build(config))
    done("built")
    if count:
        evaluation.params, evaluation.macs = count_model(evaluation.model, config.img_size, config.in_chans)
    done("counted")
    if protocol is not None:
        evaluation.latency = time_model(evaluation.model, protocol)
    done("timed")
    if data is not None:
        evaluation.proxy = train_model(evaluation.model, data, img_size=config.img_size, recipe=recipe or ProxyRecipe(),
                                       seed=seed or 0, device=device, threads=threads, on_epoch_end=on_epoch_end,
                                       until_epochs=until_epochs, resume=resume, on_checkpoint=on_checkpoint)
    done("trained")
    return evaluation
