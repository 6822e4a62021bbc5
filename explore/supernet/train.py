"""Training the supernet: the sandwich rule with in-place distillation, a checkpoint every epoch
and resumption after a kill.

Each step takes one sub-supernet (layout x norm group, in turn) and runs its largest subnet on the
labels (cross-entropy), then its smallest and ``random_subnets`` random subnets on the largest
one's soft predictions (KL divergence to the detached teacher logits); the gradients of all of
them are summed into one AdamW step. Images stay uint8 on the device (the proxy loop's data path)
and are normalised per batch.

Follows: BigNAS (Yu et al., arXiv:2003.11142 §3.1: sandwich rule, in-place distillation) and
AttentiveNAS (Wang et al., arXiv:2011.09011 §3); Once-for-All (arXiv:1908.09791) for the shared
weights.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from explore.device import resolve_device
from explore.errors import ExploreError
from explore.resources import write_atomically
from explore.space.search_space import load_space
from explore.supernet.elastic import Supernet
from explore.train import Normalizer, load_dataset

__all__ = ["SupernetSettings", "CHECKPOINT", "train_supernet", "load_supernet", "load_run_data"]

CHECKPOINT = "supernet.pt"
"""The checkpoint's file name inside the run directory."""


@dataclass(frozen=True)
class SupernetSettings:
    """Everything a supernet run depends on (stored in the checkpoint).

    Attributes:
        space: space name or file.
        dataset: dataset name (:data:`explore.train.DATASETS`).
        data_root: its folder (None: the default).
        max_train: training images (None: all).
        max_val: validation images (None: all).
        epochs: passes over the training images.
        batch_size: images per step.
        lr: AdamW learning rate (constant).
        weight_decay: AdamW weight decay.
        random_subnets: random subnets per step besides the largest and the smallest.
        seed: seeds the initial weights, the batch order and the subnets drawn.
        device: torch device string.
    """

    space: str = "cga"
    dataset: str = "fashion_mnist"
    data_root: str | None = None
    max_train: int | None = 5000
    max_val: int | None = 1000
    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    random_subnets: int = 2
    seed: int = 0
    device: str = "cpu"


def load_run_data(settings: SupernetSettings) -> Any:
    """The run's dataset (:class:`~explore.train.DatasetBundle`), as training loads it."""
    return load_dataset(settings.dataset, settings.data_root, max_train=settings.max_train, max_val=settings.max_val,
                        seed=settings.seed)


def load_supernet(run_dir: str | Path, device: str = "cpu") -> tuple[Supernet, dict[str, Any]]:
    """The supernet of a run directory and its checkpoint (``torch.load(weights_only=True)``).

    Raises:
        ExploreError: field ``DIR``: no checkpoint there, or one that does not load.
    """
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise ExploreError("DIR", str(run_dir), f"no {CHECKPOINT} there (run explore supernet train --out DIR)")
    try:
        state = torch.load(path, map_location=resolve_device(device), weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one error line
        raise ExploreError("DIR", str(run_dir), f"cannot read {CHECKPOINT}: {exc}") from None
    settings = SupernetSettings(**state["settings"])
    supernet = Supernet(load_space(settings.space), in_chans=state["in_chans"], num_classes=state["num_classes"],
                        seed=settings.seed)
    supernet.load_state_dict(state["model"])
    return supernet.to(resolve_device(device)), state


def train_supernet(settings: SupernetSettings, out: str | Path, *, command: str = "",
                   progress: Callable[[int, int, float], None] | None = None,
                   stop_after_epochs: int | None = None) -> Path:
    """Train (or resume) the supernet of ``settings.space`` into ``out``/supernet.pt.

    A checkpoint (model, optimizer, epoch, random states, settings, command, the last epoch's and
    the whole run's wall seconds: ``epoch_seconds``, ``train_seconds``) is written atomically
    after every epoch; a run directory holding one resumes from it (same settings only). Resumed
    and uninterrupted runs give the same weights.

    Args:
        settings: the run's settings.
        out: run directory (created).
        command: the command line that made the run (stored beside the weights).
        progress: called as ``progress(step, total_steps, loss)`` after every step.
        stop_after_epochs: stop after this many epochs in all (a kill, for tests).

    Returns:
        The checkpoint's path.

    Raises:
        ExploreError: field ``--out``: the directory holds a run with other settings; bad space or
            dataset (from the loaders).
    """
    out = Path(out)
    dev = resolve_device(settings.device)
    data = load_run_data(settings)
    space = load_space(settings.space)
    torch.manual_seed(settings.seed)
    supernet = Supernet(space, in_chans=data.in_chans, num_classes=data.num_classes, seed=settings.seed).to(dev)
    opt = torch.optim.AdamW(supernet.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    gen = torch.Generator().manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    epoch = 0
    spent = 0.0
    path = out / CHECKPOINT
    if path.is_file():
        state = torch.load(path, map_location=dev, weights_only=True)
        if state["settings"] != dataclasses.asdict(settings):
            raise ExploreError("--out", str(out), "holds a supernet run with other settings; choose another --out")
        supernet.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["batch_rng"])
        rng.setstate(_tuples(state["subnet_rng"]))
        epoch = state["epoch"]
        spent = float(state.get("train_seconds", 0.0))
    out.mkdir(parents=True, exist_ok=True)
    images, labels = data.train.images.to(dev), data.train.labels.to(dev)
    normalizers: dict[int, Normalizer] = {}
    n = len(labels)
    steps = (n + settings.batch_size - 1) // settings.batch_size
    last = settings.epochs if stop_after_epochs is None else min(settings.epochs, stop_after_epochs)
    supernet.train()
    while epoch < last:
        order = torch.randperm(n, generator=gen).to(dev)
        started = time.perf_counter()
        for i in range(steps):
            batch = order[i * settings.batch_size:(i + 1) * settings.batch_size]
            group = supernet.groups[(epoch * steps + i) % len(supernet.groups)]
            configs = [supernet.largest(group), supernet.smallest(group)]
            configs += [supernet.sample(rng, group) for _ in range(settings.random_subnets)]
            opt.zero_grad(set_to_none=True)
            teacher = None
            total = 0.0
            for j, config in enumerate(configs):
                norm = normalizers.get(config.img_size)
                if norm is None:
                    norm = normalizers[config.img_size] = Normalizer(config.img_size, data.mean, data.std, dev)
                logits = supernet.run(norm(images[batch]), config)
                if j == 0:
                    loss = F.cross_entropy(logits, labels[batch])
                    teacher = logits.detach().softmax(dim=1)
                else:  # in-place distillation: the largest subnet's soft labels
                    loss = F.kl_div(logits.log_softmax(dim=1), teacher, reduction="batchmean")
                loss.backward()
                total += float(loss.detach())
            opt.step()
            if progress is not None:
                progress(epoch * steps + i + 1, settings.epochs * steps, total)
        epoch += 1
        seconds = time.perf_counter() - started
        spent += seconds
        state = {"model": supernet.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                 "batch_rng": gen.get_state(), "subnet_rng": rng.getstate(), "settings": dataclasses.asdict(settings),
                 "command": command, "in_chans": data.in_chans, "num_classes": data.num_classes,
                 "epoch_seconds": seconds, "train_seconds": spent}
        write_atomically(path, lambda tmp: torch.save(state, tmp))
    return path


def _tuples(value: Any) -> Any:
    """``random.Random.getstate()`` as loaded (lists back to tuples)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
