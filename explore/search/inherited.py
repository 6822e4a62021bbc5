"""Studies on a weight-sharing supernet (``explore study --supernet DIR``): trials scored by inherited
top-1, the final front re-trained on its own.

A trial of such a study trains nothing: its architecture is extracted from the supernet
(:func:`explore.supernet.extract`), its BN statistics are recalibrated on the study's first
``recalibration_images`` training images, and its first objective is the top-1 of that model on the
study's validation split (:func:`explore.supernet.inherited_top1`). Latency is measured (or
predicted with ``--latency-table``) as in any study. Each such trial stores ``top1_source =
"inherited"``, the supernet's folder and the recalibration image count.

Inherited top-1 ranks architectures; it is not what they reach trained on their own. So at the
end of the study every member of the final Pareto front is trained from scratch at the study's
proxy budget (its data subsets, epochs, batch and learning rate; seed: the study's train seed +
the trial number, the seed a stand-alone study would have given it), and the run is stored on the
study (attribute ``supernet_front:<trial>``): the report shows both figures.

Follows: Once-for-All (Cai et al., arXiv:1908.09791 §3.3: subnets scored with inherited weights
after BN recalibration, the chosen ones fine-tuned or trained) and BigNAS (Yu et al.,
arXiv:2003.11142 §3.3).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch

from explore.arch import ArchConfig
from explore.device import device_lock
from explore.errors import ExploreError
from explore.evaluate import TrainBudget, evaluate_candidate
from explore.search.front_seeds import front_members
from explore.search.results import trials_frame
from explore.space import SearchSpace, load_space
from explore.stats import kendall_tau
from explore.supernet import inherited_top1
from explore.supernet.train import CHECKPOINT, SupernetSettings, load_supernet

__all__ = ["SUPERNET_FRONT_PREFIX", "INHERITED", "check_supernet", "same_space", "InheritedScorer",
           "supernet_front_runs", "retrain_supernet_front", "supernet_front_table"]

SUPERNET_FRONT_PREFIX = "supernet_front:"
"""Study attributes holding a front member's stand-alone run: ``supernet_front:<trial>`` ->
{"top1": %, "inherited_top1": %, "train_s": s, "train_images": images, "seed": int, "threads": n,
"at": unix time}."""
INHERITED = "inherited"
"""The ``top1_source`` of a trial scored with the supernet's weights."""


def same_space(a: SearchSpace, b: SearchSpace) -> bool:
    """Whether two parsed spaces hold the same points: name, stage count and every knob (the files
    may differ in path, comments or order)."""
    return (a.name, a.num_stages, dict(a.model), [dict(s) for s in a.stages]) == \
        (b.name, b.num_stages, dict(b.model), [dict(s) for s in b.stages])


def check_supernet(run_dir: str, space: SearchSpace, dataset: str | None = None) -> dict[str, Any]:
    """Check, before anything is written, that ``run_dir`` holds a supernet of ``space``.

    Args:
        run_dir: the ``--supernet`` folder (``explore supernet train --out``).
        space: the study's space.
        dataset: the study's dataset; the supernet must have been trained on the same one (its
            classes and channels). None: not checked.

    Returns:
        The supernet's stored settings (:class:`explore.supernet.train.SupernetSettings` fields).

    Raises:
        ExploreError: field ``--supernet``: no checkpoint there, one that does not load, a supernet of
            another space or dataset.
    """
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise ExploreError("--supernet", run_dir, f"no {CHECKPOINT} there (run explore supernet train --out DIR)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        stored = SupernetSettings(**state["settings"])
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one error line
        raise ExploreError("--supernet", run_dir, f"cannot read {CHECKPOINT}: {exc}") from None
    try:
        theirs = load_space(stored.space)
    except ExploreError:
        raise ExploreError("--supernet", run_dir, f"its space {stored.space!r} cannot be loaded from here; expected a "
                                                  f"supernet of space {space.name!r}") from None
    if not same_space(theirs, space):
        raise ExploreError("--supernet", run_dir, f"a supernet of space {theirs.name!r} ({stored.space}); the study's "
                                                  f"space is {space.name!r}: train one with explore supernet train "
                                                  f"--space {space.name}")
    if dataset is not None and stored.dataset != dataset:
        raise ExploreError("--supernet", run_dir, f"trained on dataset {stored.dataset!r}; the study's is {dataset!r}")
    return dataclasses.asdict(stored)


class InheritedScorer:
    """Scores architectures with the weights of one supernet, loaded once (per worker).

    Args:
        run_dir: the supernet's folder.
        data: the study's data (:class:`explore.train.DatasetBundle`): BN recalibration on its
            training split, top-1 on its validation split.
        device: torch device the supernet lives and scores on.
        images: training images of the BN recalibration.

    Raises:
        ExploreError: field ``--supernet``: no supernet there, or one built for other channels or
            classes than ``data``.
    """

    def __init__(self, run_dir: str, data: Any, device: Any, images: int) -> None:
        try:
            self.supernet, state = load_supernet(run_dir, str(device))
        except ExploreError as exc:
            raise ExploreError("--supernet", run_dir, exc.expected) from None
        if (state["in_chans"], state["num_classes"]) != (data.in_chans, data.num_classes):
            raise ExploreError("--supernet", run_dir, f"built for {state['in_chans']} channels and "
                                                      f"{state['num_classes']} classes; the study's data have "
                                                      f"{data.in_chans} and {data.num_classes}")
        self.run_dir, self.data, self.device, self.images = str(run_dir), data, device, images
        self.state = {k: v for k, v in state.items() if k not in ("model", "optimizer")}  # settings, command, seconds
        self.supernet.eval()

    def score(self, config: ArchConfig, threads: int | None = None) -> tuple[float, float]:
        """Inherited top-1 (%, 0-100) of ``config`` and the seconds it took (extract, recalibrate,
        evaluate), under the device's shared lock (no latency is timed meanwhile).

        Args:
            config: a point of the supernet's space.
            threads: CPU intra-op threads (None: as is; restored afterwards).

        Raises:
            ExploreError: ``config`` is outside the supernet's space.
        """
        before = torch.get_num_threads()
        dev = torch.device(self.device)
        if threads is not None and dev.type == "cpu":
            torch.set_num_threads(threads)
        started = time.perf_counter()
        try:
            with device_lock(dev, exclusive=False):
                top1 = inherited_top1(self.supernet, config, self.data.train, self.data.val, mean=self.data.mean,
                                      std=self.data.std, images=self.images, device=dev)
        finally:
            torch.set_num_threads(before)
        return float(top1), time.perf_counter() - started


def supernet_front_runs(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """Trial number -> its stored stand-alone run (the ``supernet_front:<trial>`` attributes)."""
    return {int(key[len(SUPERNET_FRONT_PREFIX):]): dict(value) for key, value in study.user_attrs.items()
            if key.startswith(SUPERNET_FRONT_PREFIX) and isinstance(value, dict)}


def _budget(settings: Mapping[str, Any]) -> TrainBudget:
    names = {f.name for f in dataclasses.fields(TrainBudget)}
    return TrainBudget(**{k: v for k, v in settings.items() if k in names})


def retrain_supernet_front(study: optuna.Study, *, device: str = "cpu", threads: int | None = None,
                           train_seed: int | None = None,
                           on_run: Callable[[int, float, float, float], None] | None = None) -> int:
    """Train every member of the study's current Pareto front on its own, once, at the study's proxy
    budget; members with a stored run are skipped (an interrupted call resumes).

    Args:
        study: a two-objective study whose trials were scored by inherited top-1.
        device: training device (``cpu``, ``cuda[:N]``).
        threads: CPU threads of training (None: the study's ``train_threads``, else torch's).
        train_seed: member k trains with ``train_seed + k`` (None: the study's stored seed).
        on_run: called with (trial, stand-alone top-1 %, inherited top-1 %, training seconds) after
            each new run.

    Returns:
        The number of runs trained by this call.

    Raises:
        ExploreError: field ``STUDY``: a single-objective study. DataError: the study's data are not
            found here.
    """
    if len(study.directions) < 2:
        raise ExploreError("STUDY", study.study_name, "a two-objective study (top-1 and latency)")
    front = front_members(trials_frame(study))
    settings = study.user_attrs.get("settings") or {}
    if threads is None:
        threads = settings.get("train_threads")
    seed = int(settings.get("seed", 0)) if train_seed is None else train_seed
    stored = supernet_front_runs(study)
    todo = [row for row in front.itertuples(index=False) if int(row.number) not in stored]
    if not todo:
        return 0
    budget = _budget(settings)
    data = budget.load_data(int(settings.get("seed", 0)))
    for row in todo:
        number = int(row.number)
        config = ArchConfig.from_json(row.config, source=f"trial {number}")
        proxy = evaluate_candidate(config, seed=seed + number, count=False, data=data, recipe=budget.proxy_recipe(),
                                   device=device, threads=threads).proxy
        run = {"top1": float(proxy.top1), "inherited_top1": float(row.top1), "train_s": float(proxy.train_seconds),
               "train_images": int(proxy.steps * min(budget.batch_size, len(data.train))), "seed": seed + number,
               "threads": threads, "at": time.time()}
        study.set_user_attr(f"{SUPERNET_FRONT_PREFIX}{number}", run)
        if on_run is not None:
            on_run(number, run["top1"], run["inherited_top1"], run["train_s"])
    return len(todo)


def supernet_front_table(frame: pd.DataFrame, runs: Mapping[int, Mapping[str, Any]]) -> pd.DataFrame:
    """The front members with a stand-alone run: inherited and stand-alone top-1 side by side.

    Args:
        frame: :func:`explore.search.trials_frame` of the study.
        runs: :func:`supernet_front_runs`.

    Returns:
        One row per re-trained member, fastest first: ``trial``, ``architecture``,
        ``latency (ms/img)``, ``inherited top-1 (%)``, ``stand-alone top-1 (%)``, ``Δ (points)``
        (stand-alone − inherited), ``train (s)``; its ``attrs["kendall_tau"]`` is Kendall τ between
        the two top-1 columns (NaN below 3 members). Empty when no member has a run.
    """
    rows = []
    for row in front_members(frame).itertuples(index=False):
        run = runs.get(int(row.number))
        if run is None:
            continue
        rows.append({"trial": int(row.number), "architecture": row.summary, "latency (ms/img)": float(row.latency_ms),
                     "inherited top-1 (%)": float(row.top1), "stand-alone top-1 (%)": float(run["top1"]),
                     "Δ (points)": float(run["top1"]) - float(row.top1), "train (s)": float(run["train_s"])})
    table = pd.DataFrame(rows)
    if not table.empty:
        table.attrs["kendall_tau"] = kendall_tau(table["inherited top-1 (%)"], table["stand-alone top-1 (%)"])
    return table
