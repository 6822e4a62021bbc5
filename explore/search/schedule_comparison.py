"""Compare study schedules at the same training budget: does successive halving find the front sooner?

:func:`compare_schedules` runs, for every schedule (``full``, ``sha``, ``hyperband``) and every seed, a
study (:func:`explore.search.run_study`) of the same space, data subset size and proxy budget, with as
many architectures as the total training budget affords (``budget`` epochs of the training subset:
``budget / epochs`` architectures for ``full``; ``budget / expected epochs per architecture`` for
the others, see :meth:`explore.search.schedule.Schedule.expected_epochs`). Runs are ordinary studies
in ``<out>/runs/<schedule>-seed<seed>``: an interrupted comparison resumes them; once a run is complete
its stored training states (``checkpoints/``) are deleted (the run is final; its ``study.db`` stays, for
``explore report``).

Then, per run:

* the **hypervolume vs training spent**: after each job (in completion order) the hypervolume of
  the front of the jobs at the top rung (their proxy top-1 at ``epochs``, their measured latency),
  against the training images spent so far (in epochs of the subset). A job that reaches the top
  rung of ``sha`` is trained exactly as a ``full`` trial (it continues its parent's state), so the
  two curves measure the same quantity;
* the **final front at the long budget**: every member of every run's final front is trained again
  for ``long_epochs`` with one common seed and data subset (each distinct architecture once; stored
  in ``<out>/long_runs.json``), and their latencies are measured again together, in interleaved
  rounds (:func:`explore.measure.time_rounds`, the fastest kept); each run's front then gets a
  hypervolume from those figures.

With ``supernet`` among the schedules, a weight-sharing supernet of the space is trained once
(``supernet_epochs`` epochs of the same training subset, the sandwich rule with ``random_subnets``
random subnets per step: :func:`explore.supernet.train.train_supernet`, in ``<out>/supernet``), and
each of its runs is a ``--supernet`` study of ``supernet_trials`` architectures scored by inherited
top-1 (no training), whose final front is then trained on its own at ``epochs``
(:mod:`explore.search.inherited`). Its training is charged in the units of the other schedules:
every supernet step trains ``2 + random_subnets`` subnets on one batch, so one supernet epoch is
charged as ``2 + random_subnets`` epochs of the subset (each subnet at most the largest one's
cost), and each front member's stand-alone training as the images it trained on. Its hypervolume
curve starts at that charge (0 before: nothing trained on its own yet) and grows with each front
member trained, from their stand-alone top-1 (inherited top-1 is not comparable with the others'
proxy top-1). The supernet's wall seconds are in the runs table (``train_seconds``).

Hypervolumes use one fixed reference point for the whole comparison: top-1 at chance (100 / classes)
and ``ref_latency_ms`` (default: 1.05 x the largest latency of any trial of any run), in % x ms/img.

The budget ratio of a schedule: the first training spent at which its mean hypervolume curve (over
seeds) reaches the ``full`` runs' mean final hypervolume (and 95 % of it), divided by the ``full``
runs' mean spent budget (not reached: None). Why a schedule does or does not get there shows in
:func:`rung_agreement`: how well each rung's top-1 ranks the architectures as the next rung does. Follows the evaluation of multi-fidelity multi-objective search in
Schmucker et al. (arXiv:2106.12639, §5: hypervolume against wall-clock / budget, several seeds).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch
from optuna.trial import TrialState

from explore.arch import ArchConfig
from explore.errors import ExploreError
from explore.evaluate import TrainBudget, evaluate_candidate
from explore.measure import time_rounds
from explore.records import CONFIG_HASH, TrialRecord
from explore.resources import write_atomically
from explore.search.objective import CHECKPOINTS
from explore.search.results import open_study
from explore.search.run import prepare_study, run_study
from explore.search.schedule import (
    SCHEDULES,
    Schedule,
    hypervolume_2d,
    is_promotion,
    job_of,
    pareto_mask,
)
from explore.search.settings import StudySettings
from explore.stats import kendall_tau, mean_std

__all__ = ["COMPARED", "SUPERNET", "CompareSettings", "supernet_charge", "Comparison", "architectures_for", "compare_schedules", "hv_curve", "budget_ratio",
           "rung_agreement", "rung_pairs", "summarise", "RUNG_PAIR_COLUMNS"]

LONG_RUNS = "long_runs.json"
FRONT_LATENCY = "front_latency.json"
LATENCY_ROUNDS = 3
SUPERNET = "supernet"
"""The schedule name of runs scored with a weight-sharing supernet's weights."""
COMPARED = (*SCHEDULES, SUPERNET)
"""Every schedule a comparison may run."""
SUPERNET_DIR = "supernet"


@dataclass(frozen=True, kw_only=True)
class CompareSettings(TrainBudget):
    """What ``explore compare-schedules`` runs: the fields below and the budget fields of
    :class:`explore.evaluate.TrainBudget` (data, subsets, epochs, batch, lr).

    Attributes:
        space: space name or file.
        schedules: the schedules to compare (``full`` first when present; it sets the target).
        seeds: study seeds, one run per schedule and seed (>= 3 for a mean ± std worth reading).
        budget: total training budget of each run, in epochs of the training subset.
        rungs, eta: of ``sha`` / ``hyperband`` (see :class:`explore.search.schedule.Schedule`).
        long_epochs, long_seed: the re-training of the final fronts.
        ref_latency_ms: the reference latency of the hypervolume (None: 1.05 x the largest measured).
        out: the comparison's folder (runs, stored long runs and latencies, report).
        device, sampler, train_threads, latency_repeats: as for ``explore study``.
        supernet_epochs: ``supernet``: epochs of the supernet's training (whole epochs).
        random_subnets: ``supernet``: random subnets per step besides the largest and smallest.
        supernet_trials: ``supernet``: architectures each of its studies scores by inherited top-1.
        recalibration_images: ``supernet``: training images of each trial's BN recalibration.
    """

    space: str = "cga"
    schedules: tuple[str, ...] = ("full", "sha")
    seeds: tuple[int, ...] = (0, 1, 2)
    budget: float = 16.0
    rungs: tuple[float, ...] | None = None
    eta: int = 3
    long_epochs: float = 4.0
    long_seed: int = 0
    ref_latency_ms: float | None = None
    out: str = "reports/compare_schedules"
    device: str = "cpu"
    sampler: str = "tpe"
    train_threads: int | None = None
    latency_repeats: int = 20
    supernet_epochs: int = 5
    random_subnets: int = 2
    supernet_trials: int = 50
    recalibration_images: int = 2000

    def plan(self, schedule: str) -> Schedule:
        """The :class:`~explore.search.schedule.Schedule` of this comparison's runs of ``schedule``.

        Raises:
            ExploreError: bad ``--rungs`` or ``--eta`` (named).
        """
        if schedule == SUPERNET:  # its front is trained as full trains every architecture
            return Schedule.make("full", self.epochs, None, self.eta)
        return Schedule.make(schedule, self.epochs, None if schedule == "full" else self.rungs, self.eta)

    @property
    def supernet_dir(self) -> Path:
        """Where the comparison's supernet is trained: ``<out>/supernet``."""
        return Path(self.out) / SUPERNET_DIR

    def supernet_settings(self) -> Any:
        """The :class:`~explore.supernet.train.SupernetSettings` of the comparison's supernet (its space,
        data, subsets and batch; the first seed)."""
        from explore.supernet.train import SupernetSettings

        return SupernetSettings(space=self.space, dataset=self.dataset, data_root=self.data_root,
                                max_train=self.max_train, max_val=self.max_val, epochs=self.supernet_epochs,
                                batch_size=self.batch_size, random_subnets=self.random_subnets, seed=self.seeds[0],
                                device=self.device)

    def study(self, schedule: str, seed: int) -> StudySettings:
        """The settings of the run of ``schedule`` with ``seed``."""
        if schedule == SUPERNET:
            return StudySettings(
                space=self.space, study_name=f"{SUPERNET}-seed{seed}", out=str(Path(self.out) / "runs"),
                trials=self.supernet_trials, dataset=self.dataset, data_root=self.data_root, max_train=self.max_train,
                max_val=self.max_val, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=seed,
                device=self.device, sampler=self.sampler, train_threads=self.train_threads,
                latency_repeats=self.latency_repeats, remeasure_front=False, supernet=str(self.supernet_dir),
                recalibration_images=self.recalibration_images)
        return StudySettings(
            space=self.space, study_name=f"{schedule}-seed{seed}", out=str(Path(self.out) / "runs"),
            trials=architectures_for(self, schedule), dataset=self.dataset, data_root=self.data_root,
            max_train=self.max_train, max_val=self.max_val, epochs=self.epochs, batch_size=self.batch_size,
            lr=self.lr, seed=seed, device=self.device, sampler=self.sampler, train_threads=self.train_threads,
            latency_repeats=self.latency_repeats, remeasure_front=False, schedule=schedule,
            rungs=None if schedule == "full" else self.rungs, eta=self.eta)

    def validate(self) -> None:
        """Check everything before anything runs.

        Raises:
            ExploreError: names the option: unknown or repeated schedules, fewer than 1 seed, a budget
                smaller than one architecture's full training, bad long budget or reference latency,
                and whatever :meth:`StudySettings.validate` refuses.
        """
        if not self.schedules or any(s not in COMPARED for s in self.schedules) or len(set(self.schedules)) != len(self.schedules):
            raise ExploreError("--schedules", ",".join(self.schedules), f"expected distinct items of {', '.join(COMPARED)}")
        if "full" not in self.schedules or len(self.schedules) < 2:
            raise ExploreError("--schedules", ",".join(self.schedules),
                               "expected full and at least one of sha, hyperband, supernet")
        if SUPERNET in self.schedules:
            if isinstance(self.supernet_epochs, bool) or not isinstance(self.supernet_epochs, int) \
                    or self.supernet_epochs < 1:
                raise ExploreError("--supernet-epochs", self.supernet_epochs, "a supernet trains whole epochs: expected "
                                                                              "1, 2, ...")
            if self.random_subnets < 0:
                raise ExploreError("--random-subnets", self.random_subnets, "expected >= 0")
            if self.supernet_trials < 1:
                raise ExploreError("--supernet-trials", self.supernet_trials, "expected >= 1")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ExploreError("--seeds", ",".join(map(str, self.seeds)), "expected distinct seeds, e.g. 0,1,2")
        if not (isinstance(self.budget, (int, float)) and self.budget >= self.epochs):
            raise ExploreError("--budget", self.budget, f"expected at least one full training, --epochs {self.epochs:g}")
        if not self.long_epochs > 0:
            raise ExploreError("--long-epochs", self.long_epochs, "expected > 0")
        if self.ref_latency_ms is not None and not self.ref_latency_ms > 0:
            raise ExploreError("--ref-latency-ms", self.ref_latency_ms, "expected > 0 (ms/img)")
        for schedule in self.schedules:
            self.study(schedule, self.seeds[0]).validate()


def architectures_for(settings: CompareSettings, schedule: str) -> int:
    """Architectures a run of ``schedule`` starts within ``settings.budget`` (at least 1); ``supernet``:
    ``settings.supernet_trials`` (its trials train nothing)."""
    if schedule == SUPERNET:
        return settings.supernet_trials
    plan = settings.plan(schedule)
    return max(1, math.floor(settings.budget / plan.expected_epochs() + 1e-9))


def _jobs(study: optuna.Study) -> pd.DataFrame:
    """The COMPLETE jobs of a study in completion order: number, rung, top-1, latency, config,
    images trained."""
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        job = job_of(t)
        job["latency_ms"] = job.pop("latency")
        record = TrialRecord.of(t)
        rows.append({**job, "config": record.config, CONFIG_HASH: record.config_hash,
                     "images": float(record.train_images or 0), "done": t.datetime_complete,
                     "train_seconds": float(t.user_attrs.get("proxy_train_seconds") or 0.0)})
    frame = pd.DataFrame(rows)
    return frame.sort_values(["done", "number"]).reset_index(drop=True) if not frame.empty else frame


def supernet_charge(settings: CompareSettings) -> float:
    """The supernet's training in epochs of the training subset: ``supernet_epochs x (2 +
    random_subnets)`` (every step trains the largest, the smallest and the random subnets on one batch)."""
    return float(settings.supernet_epochs * (2 + settings.random_subnets))


def _supernet_jobs(study: optuna.Study) -> pd.DataFrame:
    """A ``--supernet`` study's stand-alone front runs as jobs, in the order they were trained:
    number, rung 0, top-1 (stand-alone, %), latency, config, images trained, training seconds.
    Its inherited trials trained nothing and are not jobs."""
    from explore.search.inherited import supernet_front_runs

    trials = study.get_trials(deepcopy=False)
    rows = []
    for number, run in supernet_front_runs(study).items():
        t = trials[number]
        record = TrialRecord.of(t)
        rows.append({"number": number, "rung": 0, "bracket": 0, "top1": float(run["top1"]),
                     "latency_ms": float(t.values[1]), "arch": number, "config": record.config,
                     CONFIG_HASH: record.config_hash, "images": float(run.get("train_images") or 0),
                     "done": float(run["at"]), "train_seconds": float(run["train_s"])})
    frame = pd.DataFrame(rows)
    return frame.sort_values(["done", "number"]).reset_index(drop=True) if not frame.empty else frame


def _train_supernet(settings: CompareSettings, say: Callable[[str], None]) -> float:
    """Train (or resume, or find trained) the comparison's supernet; its wall seconds over all its epochs."""
    from explore.supernet.train import train_supernet

    supernet = settings.supernet_settings()
    say(f"supernet: {supernet.epochs} epochs, {2 + supernet.random_subnets} subnets per step "
        f"(charged {supernet_charge(settings):g} epochs of the training subset)")
    path = train_supernet(supernet, settings.supernet_dir, command="explore compare-schedules (its supernet)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    seconds = float(state.get("train_seconds", 0.0))
    say(f"supernet: trained, {seconds:.0f} s")
    return seconds


def hv_curve(jobs: pd.DataFrame, top_rung: int, n_train: int, ref_top1: float, ref_latency: float,
             spent_before: float = 0.0) -> pd.DataFrame:
    """Hypervolume of the top-rung front after each job, against training spent (epochs of the subset).

    Args:
        jobs: the jobs in completion order (``number``, ``rung``, ``top1`` %, ``latency_ms``, ``images``).
        top_rung: the rung whose jobs make the front.
        n_train: images of the training subset (an epoch).
        ref_top1: the reference point's top-1 (%).
        ref_latency: the reference point's latency (ms/img).
        spent_before: training charged before the first job (epochs; a supernet's training).

    Returns:
        Columns ``spent_epochs`` (cumulative), ``hv``, ``number``; one row per job.
    """
    spent, rows, top = spent_before, [], []
    for job in jobs.itertuples(index=False):
        spent += job.images / n_train
        if job.rung == top_rung:
            top.append((job.top1, job.latency_ms))
        hv = hypervolume_2d([a for a, _ in top], [b for _, b in top], ref_top1, ref_latency)
        rows.append({"number": job.number, "spent_epochs": spent, "hv": hv})
    return pd.DataFrame(rows)


def _hv_at(curve: pd.DataFrame, budget: float) -> float:
    """A run's hypervolume once ``budget`` epochs were spent (0 before its first job)."""
    seen = curve[curve["spent_epochs"] <= budget + 1e-9]
    return float(seen["hv"].iloc[-1]) if len(seen) else 0.0


def budget_ratio(curves: Sequence[pd.DataFrame], target_hv: float, full_budget: float) -> float | None:
    """The first spent budget (at a job's end in any run) where the mean of the runs' hypervolumes
    reaches ``target_hv``, over ``full_budget``; None when it never does."""
    grid = sorted({float(b) for c in curves for b in c["spent_epochs"]})
    for budget in grid:
        if mean_std([_hv_at(c, budget) for c in curves])[0] >= target_hv - 1e-12:
            return budget / full_budget
    return None


@dataclass
class Comparison:
    """What :func:`compare_schedules` found (tables for the report).

    Attributes:
        runs: one row per (schedule, seed): architectures, jobs, spent epochs, final study hypervolume,
            long-budget hypervolume, front size.
        curves: per run, the hypervolume after every job (schedule, seed, spent_epochs, hv).
        fronts: per run, its final front's members with study and long-budget figures.
        summary: per schedule, mean ± std of the above and the budget ratio.
        reference: the hypervolume's reference point (top-1 %, latency ms/img).
        settings: the comparison's settings.
        rung_epochs: the rungs of ``sha`` / ``hyperband`` (defaults resolved).
        agreement: :func:`rung_agreement`.
        rung_pairs: :func:`rung_pairs`, the promotions ``agreement`` is computed from.
    """

    runs: pd.DataFrame
    curves: pd.DataFrame
    fronts: pd.DataFrame
    summary: pd.DataFrame
    reference: tuple[float, float]
    settings: CompareSettings
    rung_epochs: tuple[float, ...] = ()
    agreement: pd.DataFrame | None = None
    rung_pairs: pd.DataFrame | None = None


def _load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _save_json(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=1, sort_keys=True)
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def compare_schedules(settings: CompareSettings, *, on_event: Callable[[str], None] | None = None) -> Comparison:
    """Run (or resume) every study of the comparison, re-train the final fronts, measure and compare.

    Raises:
        ExploreError: bad settings (before anything is written), or what the studies raise.
    """
    settings.validate()
    say = on_event or (lambda text: None)
    for schedule in settings.schedules:
        if schedule == SUPERNET:  # its folder does not exist yet: the study's checks without it
            prepare_study(dataclasses.replace(settings.study(schedule, settings.seeds[0]), supernet=None))
        else:
            prepare_study(settings.study(schedule, settings.seeds[0]))  # every check before anything runs
    out = Path(settings.out)
    supernet_seconds = 0.0
    if SUPERNET in settings.schedules:
        supernet_seconds = _train_supernet(settings, say)
    studies: dict[tuple[str, int], optuna.Study] = {}
    for schedule in settings.schedules:
        for seed in settings.seeds:
            study_settings = settings.study(schedule, seed)
            say(f"study {study_settings.study_name}: {study_settings.trials} architectures")
            summary = run_study(study_settings)
            say(f"study {study_settings.study_name}: {summary.complete} jobs complete, {summary.wall_seconds:.0f} s")
            if summary.architectures >= study_settings.trials and not summary.running:
                shutil.rmtree(study_settings.run_dir / CHECKPOINTS, ignore_errors=True)  # the run is final
            studies[(schedule, seed)] = open_study(str(study_settings.run_dir))
    jobs = {key: _supernet_jobs(study) if key[0] == SUPERNET else _jobs(study) for key, study in studies.items()}
    info = next(iter(studies.values())).user_attrs.get("dataset_info") or {}
    n_train = int(info.get("train_images") or settings.max_train or 1)
    num_classes = int(info.get("num_classes") or 10)
    ref_top1 = 100.0 / num_classes
    ref_latency = settings.ref_latency_ms or 1.05 * max(float(j["latency_ms"].max()) for j in jobs.values() if not j.empty)

    curve_rows, front_rows = [], []
    curves: dict[tuple[str, int], pd.DataFrame] = {}
    for (schedule, seed), frame in jobs.items():
        top = settings.plan(schedule).top
        charge = supernet_charge(settings) if schedule == SUPERNET else 0.0
        curve = hv_curve(frame, top, n_train, ref_top1, ref_latency, spent_before=charge)
        curves[(schedule, seed)] = curve
        curve_rows += [{"schedule": schedule, "seed": seed, **row} for row in curve.to_dict("records")]
        final = frame[frame["rung"] == top]
        mask = pareto_mask(final["top1"].tolist(), final["latency_ms"].tolist())
        for job, on_front in zip(final.itertuples(index=False), mask):
            if on_front:
                front_rows.append({"schedule": schedule, "seed": seed, "trial": job.number, "arch_trial": job.arch,
                                   CONFIG_HASH: job.config_hash, "config": job.config, "study_top1": job.top1,
                                   "study_latency_ms": job.latency_ms})
    fronts = pd.DataFrame(front_rows)
    long_top1 = _train_long(settings, fronts, out, say)
    latency = _measure_fronts(settings, fronts, out, say)
    fronts["long_top1"] = fronts[CONFIG_HASH].map(long_top1)
    fronts["latency_ms"] = fronts[CONFIG_HASH].map(latency)

    run_rows = []
    for (schedule, seed), frame in jobs.items():
        members = fronts[(fronts["schedule"] == schedule) & (fronts["seed"] == seed)]
        curve = curves[(schedule, seed)]
        on_supernet = schedule == SUPERNET
        architectures = (sum(1 for t in studies[(schedule, seed)].get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
                         if on_supernet else int((frame["arch"] == frame["number"]).sum()))
        charge = supernet_charge(settings) if on_supernet else 0.0
        run_rows.append({
            "schedule": schedule, "seed": seed, "architectures": architectures,
            "jobs": len(frame), "spent_epochs": float(curve["spent_epochs"].iloc[-1]) if len(curve) else charge,
            "supernet_epochs_charged": charge,
            "train_seconds": float(frame["train_seconds"].sum()) + (supernet_seconds if on_supernet else 0.0),
            "study_hv": float(curve["hv"].iloc[-1]) if len(curve) else 0.0, "front_size": len(members),
            "long_hv": hypervolume_2d(members["long_top1"].tolist(), members["latency_ms"].tolist(), ref_top1,
                                      ref_latency)})
    runs = pd.DataFrame(run_rows)
    summary = summarise(runs, curves, settings.schedules, settings.seeds)
    pairs = rung_pairs(studies, settings)
    agreement = rung_agreement(pairs, settings.schedules)
    fronts = fronts.drop(columns=["config"])
    rung_epochs = Schedule.make("sha", settings.epochs, settings.rungs, settings.eta).rungs
    return Comparison(runs, pd.DataFrame(curve_rows), fronts, summary, (ref_top1, ref_latency), settings, rung_epochs,
                      agreement, pairs)


RUNG_PAIR_COLUMNS = ("schedule", "seed", "trial", "from (epochs)", "to (epochs)", "from top1", "to top1")
"""The columns of :func:`rung_pairs` (and of a comparison's stored ``rung_pairs.csv``)."""


def rung_pairs(studies: dict[tuple[str, int], optuna.Study], settings: CompareSettings) -> pd.DataFrame:
    """Every promotion of the ``sha`` / ``hyperband`` runs as one row: the promoted job (``trial``), the
    rung it was promoted from and to (cumulative epochs) and its top-1 (%) at both, read from the jobs'
    ``rung_history`` (columns :data:`RUNG_PAIR_COLUMNS`). The data behind :func:`rung_agreement`, stored
    beside the report so that its τ can be computed again without the studies."""
    rows = []
    for schedule in settings.schedules:
        if schedule in ("full", SUPERNET):
            continue
        for seed in settings.seeds:
            for t in studies[(schedule, seed)].get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                history = TrialRecord.of(t).rung_history
                if not is_promotion(t) or len(history) < 2:
                    continue
                low, high = history[-2], history[-1]
                rows.append(dict(zip(RUNG_PAIR_COLUMNS, (schedule, seed, t.number, float(low["epochs"]),
                                                         float(high["epochs"]), float(low["top1"]),
                                                         float(high["top1"])))))
    return pd.DataFrame(rows, columns=list(RUNG_PAIR_COLUMNS))


def rung_agreement(pairs: pd.DataFrame, schedules: Sequence[str]) -> pd.DataFrame:
    """How well a rung's top-1 ranks the architectures it promotes: per schedule and pair of rungs
    (k, k + 1), Kendall τ between top-1 at rung k and at rung k + 1 over the architectures that
    reached both, pooled over seeds. A τ near 1 means the low rung already ranks as the next one does;
    near 0, promotion is a lottery.

    Args:
        pairs: :func:`rung_pairs` (or a comparison's ``rung_pairs.csv`` read back).
        schedules: the order of the schedules in the table.
    """
    rows = []
    for schedule in schedules:
        mine = pairs[pairs["schedule"] == schedule]
        if not len(mine):
            continue
        for (low, high), group in sorted(mine.groupby(["from (epochs)", "to (epochs)"], sort=False),
                                         key=lambda item: item[0]):
            rows.append({"schedule": schedule, "from (epochs)": low, "to (epochs)": high, "architectures": len(group),
                         "kendall_tau": kendall_tau(group["from top1"].tolist(), group["to top1"].tolist())})
    return pd.DataFrame(rows)


def summarise(runs: pd.DataFrame, curves: dict[tuple[str, int], pd.DataFrame], schedules: Sequence[str],
              seeds: Sequence[int]) -> pd.DataFrame:
    """Per schedule: mean ± std over seeds of the runs' figures (``runs``: one row per schedule and seed), and
    the budget ratio against ``full`` from the runs' hypervolume curves (:func:`hv_curve`, keyed by
    (schedule, seed)); :func:`budget_ratio`."""
    full = runs[runs["schedule"] == "full"]
    target = float(full["study_hv"].mean())
    full_budget = float(full["spent_epochs"].mean())
    rows = []
    for schedule in schedules:
        mine = runs[runs["schedule"] == schedule]

        def stat(column: str, mine: pd.DataFrame = mine) -> tuple[float, float]:
            return mean_std(mine[column].astype(float).tolist())

        mine_curves = [curves[(schedule, s)] for s in seeds]
        ratio = budget_ratio(mine_curves, target, full_budget)
        row: dict[str, Any] = {"schedule": schedule, "seeds": len(mine)}
        for column in ("architectures", "spent_epochs", "study_hv", "long_hv"):
            row[f"{column}_mean"], row[f"{column}_std"] = stat(column)
        row["budget_to_full_hv"] = ratio
        row["budget_to_95pct_full_hv"] = budget_ratio(mine_curves, 0.95 * target, full_budget)
        rows.append(row)
    return pd.DataFrame(rows)


def _long_budget(settings: CompareSettings) -> TrainBudget:
    names = {f.name for f in dataclasses.fields(TrainBudget)}
    fields = {name: getattr(settings, name) for name in names}
    return TrainBudget(**{**fields, "epochs": settings.long_epochs})


def _train_long(settings: CompareSettings, fronts: pd.DataFrame, out: Path, say: Callable[[str], None]) -> dict[str, float]:
    """Top-1 at the long budget of every distinct front architecture (stored, resumable)."""
    path = out / LONG_RUNS
    stored = _load_json(path)
    key = f"{settings.long_epochs:g}ep-seed{settings.long_seed}-train{settings.max_train}-val{settings.max_val}"
    runs = stored.setdefault(key, {})
    todo = fronts.drop_duplicates(CONFIG_HASH)
    todo = todo[~todo[CONFIG_HASH].isin(runs)]
    if len(todo):
        budget = _long_budget(settings)
        data = budget.load_data(settings.long_seed)
        for i, row in enumerate(todo.itertuples(index=False)):
            config = ArchConfig.from_json(row.config)
            result = evaluate_candidate(config, seed=settings.long_seed, count=False, data=data,
                                        recipe=budget.proxy_recipe(), device=settings.device,
                                        threads=settings.train_threads).proxy
            runs[row.config_hash] = {"top1": result.top1, "train_seconds": result.train_seconds,
                                     "summary": config.summary()}
            _save_json(path, stored)
            say(f"long budget {i + 1}/{len(todo)}: {config.summary()} top-1 {result.top1:.2f} % "
                f"({result.train_seconds:.0f} s)")
    return {h: float(r["top1"]) for h, r in runs.items()}


def _measure_fronts(settings: CompareSettings, fronts: pd.DataFrame, out: Path, say: Callable[[str], None]) -> dict[str, float]:
    """Latency (ms/img) of every distinct front architecture, measured together in interleaved rounds
    with the studies' protocol (stored; architectures measured before are not measured again)."""
    path = out / FRONT_LATENCY
    stored = _load_json(path)
    todo = fronts.drop_duplicates(CONFIG_HASH)
    todo = todo[~todo[CONFIG_HASH].isin(stored)]
    if len(todo):
        study = settings.study("full", settings.seeds[0])
        jobs, hashes = [], []
        for row in todo.itertuples(index=False):
            config = ArchConfig.from_json(row.config)
            model = evaluate_candidate(config, count=False).model
            jobs.append((model, study.latency_protocol(config.img_size, config.in_chans)))
            hashes.append(row.config_hash)
        say(f"measuring the latency of {len(jobs)} front architectures, {LATENCY_ROUNDS} interleaved rounds")
        for h, results in zip(hashes, time_rounds(jobs, LATENCY_ROUNDS)):
            stored[h] = {"ms_per_img": min(r.latency_ms_per_img for r in results),
                         "rounds_ms_per_img": [r.latency_ms_per_img for r in results]}
        _save_json(path, stored)
    return {h: float(v["ms_per_img"]) for h, v in stored.items()}
