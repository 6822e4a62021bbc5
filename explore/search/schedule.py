"""Multi-fidelity schedules of a study: successive halving and Hyperband with multi-objective promotion.

Proxy training is a study's whole cost. Under ``--schedule sha`` an architecture is first trained to
the lowest rung (a fraction of the epochs of ``--epochs``), and only the best of those that reached
a rung continue to the next one (asynchronous successive halving, ASHA: Li et al., MLSys 2020,
arXiv:1810.05934). "Best" has two objectives here, proxy top-1 at the rung (up) and latency (down):
trials are ordered by non-dominated sorting, ties in a front broken by crowding distance (NSGA-II,
Deb et al. 2002), and the first ``floor(n / eta)`` of the ``n`` trials that reached a rung may be
promoted (multi-objective ASHA: Schmucker et al., arXiv:2106.12639, §3). ``--schedule hyperband``
runs several such ladders (brackets) that start at different rungs, each new architecture drawn into
a bracket with Hyperband's weights (Li et al., JMLR 2018, arXiv:1603.06560).

How it maps onto Optuna:

* each rung of an architecture is one Optuna trial (a "job"). The first job of an architecture is
  sampled as usual; a promotion is a trial enqueued with its parent's parameters and the user
  attributes ``promotes`` (the parent job's number) and ``rung``. Its objective values are (top-1 at
  its rung, latency), so the sampler sees the architecture's best-informed figure last;
* a job trains the first ``rungs[k]`` epochs of the top rung's schedule (the lr schedule is the
  full one's), stores its training state in ``<run>/checkpoints/trial_<n>.pt`` and the promotion
  continues from that file (``torch.load(weights_only=True)``): an architecture trained to the top
  rung, in however many jobs, is trained exactly as one ``--schedule full`` trial of the same seed
  (on the CPU, bit for bit when every job trains with the same number of threads, ``--train-threads``);
* promotion is asynchronous: a free worker first looks for a job to promote (top rungs first), and
  only then samples a new architecture. Two workers that pick the same promotion at the same time
  both enqueue it; the later job yields to the earlier one (:func:`promotion_claimed`) and is PRUNED
  before any work;
* a job whose process died is FAIL and retried (its user attributes, ``promotes`` included, go with
  the retry), from its parent's stored state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from explore.errors import ExploreError
from explore.records import TrialRecord

__all__ = ["SCHEDULES", "Schedule", "is_promotion", "nondominated_order", "hypervolume_2d", "job_of", "next_promotion", "promotion_claimed",
           "pareto_mask"]

SCHEDULES = ("full", "sha", "hyperband")
"""``full``: every architecture trained for ``--epochs``; ``sha``: asynchronous successive halving
over ``--rungs``; ``hyperband``: several brackets of it, starting at each rung."""

_ALIVE = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
"""States of a job that holds its promotion (a FAIL one does not: its retry takes over)."""


@dataclass(frozen=True)
class Schedule:
    """A study's schedule.

    Attributes:
        kind: one of :data:`SCHEDULES`.
        rungs: cumulative epochs at each rung, increasing; the last one is ``--epochs``.
        eta: reduction factor: about one in ``eta`` jobs of a rung is promoted.
    """

    kind: str = "full"
    rungs: tuple[float, ...] = (2.0,)
    eta: int = 3

    @classmethod
    def make(cls, kind: str, epochs: float, rungs: Sequence[float] | None = None, eta: int = 3) -> Schedule:
        """The schedule of the study options, checked.

        ``rungs`` None: ``full`` has one rung (``epochs``); the others three,
        ``epochs / eta**2, epochs / eta, epochs``.

        Raises:
            ExploreError: ``--schedule`` unknown; ``--eta`` < 2; ``--rungs`` with ``full``, fewer than
                two, not increasing, not > 0, or a last rung other than ``--epochs``.
        """
        if kind not in SCHEDULES:
            raise ExploreError("--schedule", kind, f"expected one of {', '.join(SCHEDULES)}")
        if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
            raise ExploreError("--eta", eta, "expected an integer >= 2")
        if kind == "full":
            if rungs is not None and len(rungs) > 0:
                raise ExploreError("--rungs", ",".join(f"{r:g}" for r in rungs),
                                   "rungs need --schedule sha or hyperband")
            return cls("full", (float(epochs),), eta)
        if rungs is None or len(rungs) == 0:
            rungs = (epochs / eta**2, epochs / eta, epochs)
        text = ",".join(f"{r:g}" for r in rungs)
        if len(rungs) < 2:
            raise ExploreError("--rungs", text, "expected at least two rungs (epochs), e.g. 0.5,1,2")
        if any(not (isinstance(r, (int, float)) and math.isfinite(r) and r > 0) for r in rungs):
            raise ExploreError("--rungs", text, "expected epochs > 0")
        if any(b <= a for a, b in zip(rungs, rungs[1:])):
            raise ExploreError("--rungs", text, "expected increasing epochs")
        if not math.isclose(rungs[-1], epochs, rel_tol=1e-9):
            raise ExploreError("--rungs", text, f"expected the last rung to be the full budget, --epochs {epochs:g}")
        return cls(kind, tuple(float(r) for r in rungs), eta)

    @property
    def staged(self) -> bool:
        """True for ``sha`` and ``hyperband`` (jobs stop at rungs)."""
        return self.kind != "full"

    @property
    def top(self) -> int:
        """Index of the top rung."""
        return len(self.rungs) - 1

    def brackets(self) -> list[float]:
        """Hyperband's share of new architectures per bracket (bracket b starts at rung b); ``sha``: [1]."""
        if self.kind != "hyperband":
            return [1.0]
        s = self.top
        weights = [self.eta ** (s - b) / (s - b + 1) for b in range(s + 1)]
        total = sum(weights)
        return [w / total for w in weights]

    def bracket_for(self, seed: int, number: int) -> int:
        """The bracket of the architecture first sampled by trial ``number`` (drawn from
        (``seed``, ``number``) with :meth:`brackets`' weights, so any worker draws the same)."""
        weights = self.brackets()
        if len(weights) == 1:
            return 0
        rng = np.random.default_rng([seed % 2**63, number, 7])
        return int(rng.choice(len(weights), p=weights))

    def expected_epochs(self) -> float:
        """Expected training epochs per architecture started, with a promoted share of 1/eta per rung."""
        total = 0.0
        for bracket, weight in enumerate(self.brackets() if self.kind == "hyperband" else [1.0]):
            cost, previous = 0.0, 0.0
            for k, epochs in enumerate(self.rungs[bracket:]):
                cost += (epochs - previous) / self.eta**k
                previous = epochs
            total += weight * cost
        return total


def is_promotion(trial: FrozenTrial) -> bool:
    """True for a job that continues another one (see the module docstring)."""
    return TrialRecord.of(trial).is_promotion


def nondominated_order(top1: Sequence[float], latency: Sequence[float]) -> list[int]:
    """Indices from best to worst: by non-dominated front (top-1 up, latency down), then by crowding
    distance within a front (the larger first; the ends of a front count as infinite), then by index.

    Follows the sorting and crowding distance of NSGA-II (Deb et al., 2002, §III-A, III-B).
    """
    remaining = list(range(len(top1)))
    order: list[int] = []
    while remaining:
        mask = pareto_mask([top1[i] for i in remaining], [latency[i] for i in remaining])
        front = [i for i, first in zip(remaining, mask) if first]
        crowd = {i: 0.0 for i in front}
        for values in (top1, latency):
            ranked = sorted(front, key=lambda i: (values[i], i))
            span = values[ranked[-1]] - values[ranked[0]]
            crowd[ranked[0]] = crowd[ranked[-1]] = math.inf
            for a, i, b in zip(ranked, ranked[1:], ranked[2:]):
                if span > 0 and crowd[i] != math.inf:
                    crowd[i] += (values[b] - values[a]) / span
        order += sorted(front, key=lambda i: (-crowd[i], i))
        remaining = [i for i in remaining if i not in crowd]
    return order


def pareto_mask(top1: Sequence[float], latency: Sequence[float]) -> list[bool]:
    """True for the points no other point dominates (top-1 up, latency down)."""
    return [not any(b >= a and lb <= la and (b > a or lb < la) for j, (b, lb) in enumerate(zip(top1, latency)) if j != i)
            for i, (a, la) in enumerate(zip(top1, latency))]


def hypervolume_2d(top1: Sequence[float], latency: Sequence[float], ref_top1: float, ref_latency: float) -> float:
    """Area (top-1 % x ms) dominated by the points and bounded by the reference point
    (``ref_top1``, ``ref_latency``): top-1 above ``ref_top1``, latency below ``ref_latency``.
    Points outside the reference box add nothing. 0 for no point.
    """
    points = sorted((lat, acc) for acc, lat in zip(top1, latency) if acc > ref_top1 and lat < ref_latency)
    area, best = 0.0, ref_top1
    for i, (lat, acc) in enumerate(points):  # sweep by latency: each point adds its gain in top-1
        best = max(best, acc)
        right = points[i + 1][0] if i + 1 < len(points) else ref_latency
        area += (best - ref_top1) * (right - lat)
    return area


def job_of(trial: FrozenTrial) -> dict[str, Any]:
    """A COMPLETE job's (rung, bracket, top-1, latency, arch trial)."""
    record = TrialRecord.of(trial)
    return {"number": trial.number, "rung": record.rung or 0, "bracket": record.bracket or 0,
            "top1": float(trial.values[0]), "latency": float(trial.values[1]),
            "arch": trial.number if record.arch_trial is None else record.arch_trial}


def _claims(trials: Sequence[FrozenTrial]) -> set[int]:
    """Parent job numbers already promoted (a promotion job waiting, running or done)."""
    return {TrialRecord.of(t).promotes for t in trials if t.state in _ALIVE and is_promotion(t)}


def next_promotion(study: optuna.Study, schedule: Schedule) -> FrozenTrial | None:
    """The job to promote now, or None: top rungs first; at a rung of a bracket, the ``n`` COMPLETE
    jobs are ordered by :func:`nondominated_order` and the first ``floor(n / eta)`` may be promoted;
    the first of them not promoted yet is returned (ASHA's rule, with MO-ASHA's order), as long as
    fewer than ``floor(n / eta)`` jobs of that rung were promoted.

    That cap is ours: without it, every new result that reorders a rung lets another job into the
    top share, and with two objectives the order moves a lot (crowding distances change with every
    point): on the cga space, 11 of 16 first jobs reached the second rung instead of 8, which spent
    a third more than the schedule's budget. With it, a rung promotes exactly what synchronous
    successive halving would, in total, while still promoting as soon as a job qualifies."""
    if not schedule.staged:
        return None
    trials = study.get_trials(deepcopy=False)
    claimed = _claims(trials)
    jobs = [job_of(t) for t in trials if t.state == TrialState.COMPLETE and t.values and len(t.values) > 1
            and TrialRecord.of(t).rung is not None]
    by_number = {t.number: t for t in trials}
    for rung in range(schedule.top - 1, -1, -1):
        for bracket in range(rung + 1):
            group = [j for j in jobs if j["rung"] == rung and j["bracket"] == bracket]
            quota = len(group) // schedule.eta
            if quota <= sum(1 for j in group if j["number"] in claimed):
                continue  # this rung has promoted its share already
            order = nondominated_order([j["top1"] for j in group], [j["latency"] for j in group])
            for i in order[:quota]:
                if group[i]["number"] not in claimed:
                    return by_number[group[i]["number"]]
    return None


def promotion_claimed(study: optuna.Study, trial: optuna.Trial, parent: int) -> int | None:
    """An earlier job (smaller number) that promotes ``parent`` too and is WAITING, RUNNING or COMPLETE
    (its number), else None.

    A promotion job carries ``promotes`` from its creation (``enqueue_trial``), and numbers are given
    in creation order, so of two jobs that two workers enqueued for the same promotion the later one
    always sees the earlier one and yields to it; the earlier one, WAITING, is run by the next worker
    (every worker runs WAITING jobs first). A FAIL job does not count: its retry (a later number)
    takes over."""
    for t in study.get_trials(deepcopy=False, states=_ALIVE):
        if t.number < trial.number and TrialRecord.of(t).promotes == parent:
            return t.number
    return None
