"""The study's objective: one trial, from the surplus and duplicate checks to the proxy top-1.

A trial runs these steps, each a function of this module that can be called (and tested) alone:

1. **surplus** (:func:`surplus_reason`): exactly ``trials`` COMPLETE: a trial that finds COMPLETE +
   (RUNNING trials with a smaller number) >= ``trials`` is surplus and PRUNED at once;
2. **sample** (:func:`sample_config`): the space's point, as the task trains it; an infeasible
   point is PRUNED (``infeasible: ...``);
3. **deduplicate** (:func:`duplicate_reason`): no architecture is trained twice: a trial whose
   architecture (config hash) another trial holds COMPLETE or RUNNING is PRUNED (``duplicate: same
   architecture as trial #k``) before anything is built;
4. **cache** (:class:`MeasuredLatency`, or :class:`PredictedLatency` with a latency table): the
   latency is looked up in the study's cache (or predicted) before anything is timed, and a trial
   over ``--max-latency-ms`` is PRUNED before training (:func:`check_budget`);
5. **evaluate** (:func:`train_candidate`): build -> count -> time -> train
   (:func:`explore.evaluate.evaluate_candidate`), a schedule's job from its parent's state
   (:func:`schedule_job`); with ``--supernet``, build -> count -> time, then the inherited top-1
   after BN recalibration instead of training (:class:`explore.search.inherited.InheritedScorer`);
6. **record**: every step writes its figures through one :class:`explore.records.RecordWriter`
   as it comes (the trial record's schema is :mod:`explore.records`).

:class:`Objective` (built by :func:`make_objective`) runs them in order. Faults inside a trial never
stop the study; the trial keeps the reason (see :mod:`explore.search.run`).
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from explore.arch import ArchConfig
from explore.device import is_out_of_memory, release_memory
from explore.errors import ConfigError, ExploreError, NonFiniteLossError
from explore.evaluate import Evaluation, Step, evaluate_candidate
from explore.measure import Measurement, Protocol, device_name
from explore.records import (CHECKPOINT, LATENCY_EXCESS, LATENCY_MS, PROMOTES, PROXY_THREADS, TRAIN_IMAGES, RecordWriter,
                             TrialRecord)
from explore.resources import write_atomically
from explore.search.cache import LatencyCache, LatencyKey
from explore.search.faults import inject_fault
from explore.search.schedule import Schedule, is_promotion, promotion_claimed
from explore.search.settings import LATENCY_WARMUP, StudySettings
from explore.search.storage import scrub
from explore.space import SearchSpace
from explore.train import DatasetBundle, ProxyRecipe

CHECKPOINTS = "checkpoints"
"""Folder of the run folder where jobs of a schedule store their training state."""

__all__ = ["CHECKPOINTS", "DUPLICATE", "DUPLICATE_STREAK", "Objective", "make_objective", "surplus_reason",
           "sample_config", "duplicate_reason", "same_architecture", "check_budget", "OverBudget", "MeasuredLatency",
           "PredictedLatency", "Job", "schedule_job", "train_candidate", "training_threads", "usable_cores", "with_failure_reason",
           "worker_id", "first_line"]

DUPLICATE = "duplicate"
"""The start of a duplicate trial's ``pruned_reason``."""
DUPLICATE_STREAK = 50
"""A run stops after this many draws in a row gave architectures already COMPLETE or RUNNING."""


def worker_id() -> str:
    """``host:pid`` of this process (stored on every trial it runs)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (its type name when empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------------
# 1-3: surplus, sample, deduplicate
def surplus_reason(study: optuna.Study, number: int, trials: int) -> str | None:
    """Why trial ``number`` is surplus, or None: ``trials`` first jobs are COMPLETE, or RUNNING with
    a smaller number (another worker started at the same time); promotions do not count."""
    running = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    ahead = sum(1 for t in running if (t.state == TrialState.COMPLETE or t.number < number) and not is_promotion(t))
    if ahead < trials:
        return None
    return f"surplus: {trials} trials are complete or running ahead of this one (another worker started at the same time)"


def sample_config(trial: optuna.Trial, space: SearchSpace, data: DatasetBundle, settings: StudySettings,
                  record: RecordWriter) -> ArchConfig:
    """The trial's architecture: the space's point for the data's channels and classes, as the task
    trains it (:meth:`explore.evaluate.TrainBudget.task_config`); its hash is recorded at once.

    Raises:
        optuna.TrialPruned: an infeasible point (``pruned_reason = "infeasible: ..."``).
    """
    try:
        config = settings.task_config(space.sample(trial, in_chans=data.in_chans, num_classes=data.num_classes))
    except ConfigError as exc:
        raise record.prune(f"infeasible: {exc}") from None
    record.architecture(config_hash=config.config_hash())  # before the check: see same_architecture
    return config


def same_architecture(study: optuna.Study, number: int, config_hash: str) -> int | None:
    """The first other trial that holds architecture ``config_hash`` and is COMPLETE or RUNNING.

    A RUNNING trial stores its ``config_hash`` as soon as it has sampled, before it checks; so of
    two processes that draw the same architecture at the same instant, at least the second to check
    sees the first (both may see each other and both be pruned: a wasted draw, never a duplicate).
    A FAIL or PRUNED trial does not count: its architecture may run again (a retried stale trial
    re-runs its FAIL original's parameters).
    """
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    same = [t.number for t in trials if t.number != number and TrialRecord.of(t).config_hash == config_hash]
    return min(same) if same else None


def duplicate_reason(trial: optuna.Trial, config_hash: str, parent: int | None) -> str | None:
    """Why the trial repeats work, or None: a promotion another job already continues (two workers
    promoted the same job at once, see :func:`explore.search.schedule.promotion_claimed`), or a
    first job of an architecture another trial holds COMPLETE or RUNNING (:func:`same_architecture`)."""
    if parent is not None:
        other = promotion_claimed(trial.study, trial, parent)
        return None if other is None else f"{DUPLICATE} promotion: job #{other} continues #{parent}"
    original = same_architecture(trial.study, trial.number, config_hash)
    return None if original is None else f"{DUPLICATE}: same architecture as trial #{original}"


# --------------------------------------------------------------------------------------------------
# 4: latency, from the cache or timed, or predicted by a table; the budget
class OverBudget(Exception):
    """A trial's latency exceeds ``--max-latency-ms``: it is pruned before training."""


def check_budget(record: RecordWriter, latency_ms: float, source: str, max_latency_ms: float | None) -> None:
    """Record the trial's excess over ``max_latency_ms`` (ms/img) as an attribute and as an Optuna
    constraint (> 0: infeasible; the trial is then PRUNED, which is what steers TPE away from it);
    nothing without a budget.

    Raises:
        OverBudget: the excess is > 0.
    """
    if max_latency_ms is None:
        return
    excess = latency_ms - max_latency_ms
    record.set(LATENCY_EXCESS, excess)
    record.trial.set_constraint(LATENCY_EXCESS, excess)
    if excess > 0:
        raise OverBudget(f"over the latency budget: {latency_ms:.4f} ms/img {source} > --max-latency-ms "
                         f"{max_latency_ms:g}")


class MeasuredLatency:
    """Latency timed on this device, through the study's cache (:class:`explore.search.LatencyCache`):
    an architecture timed once with a protocol is not timed again by any trial of the study.

    Args:
        settings: the study's settings (protocol, threads, repeats, budget).
        device: the device the latency is measured on.
    """

    def __init__(self, settings: StudySettings, device: Any) -> None:
        self.settings = settings
        self.device = device

    def lookup(self, trial: optuna.Trial, config: ArchConfig) -> tuple[LatencyCache, LatencyKey, Protocol,
                                                                        dict[str, Any] | None]:
        """The study's cache, the key of ``config``'s measurement, its protocol, and the cached entry (None: time it)."""
        cache = LatencyCache(trial.study)
        # the worker's own device (``--devices K``: cuda:K), whose name the cache key carries
        protocol = dataclasses.replace(self.settings.latency_protocol(config.img_size, config.in_chans),
                                       device=str(torch.device(self.device)))
        key = LatencyKey(config_hash=config.config_hash(), batch_size=protocol.batch_size,
                         threads=self.settings.latency_threads, warmup=LATENCY_WARMUP,
                         repeats=self.settings.latency_repeats, device=device_name(self.device),
                         protocol=protocol.name, mode=protocol.mode)
        return cache, key, protocol, cache.get(key)

    def record(self, record: RecordWriter, cache: LatencyCache, key: LatencyKey, cached: dict[str, Any] | None,
               result: Measurement | None) -> float:
        """Store the latency attributes (the cache's entry, or the new measurement, filed in the cache);
        returns ms/img (:func:`check_budget` follows)."""
        attrs, measured_by = cached_or_filed(record.trial.number, cache, key, cached, result)
        record.measured_latency(attrs, cached=cached is not None, measured_by=measured_by)
        return float(attrs[LATENCY_MS])


def cached_or_filed(number: int, cache: LatencyCache, key: LatencyKey, cached: dict[str, Any] | None,
                    result: Measurement | None) -> tuple[dict[str, Any], int | None]:
    """Trial ``number``'s latency attributes (:meth:`explore.measure.Measurement.as_attrs`) and the
    trial that measured them: the cache's entry, or the new measurement (then filed in the cache
    under ``key``, and also under the batch it timed when out of memory halved it)."""
    if cached is not None:
        return dict(cached["attrs"]), cached.get("measured_by_trial")
    attrs = result.as_attrs()
    cache.put(key, attrs, trial_number=number, worker=worker_id())
    if result.batch_size != key.batch_size:  # halved after out of memory: also file it under what was timed
        cache.put(dataclasses.replace(key, batch_size=result.batch_size), attrs, trial_number=number,
                  worker=worker_id())
    return attrs, number


class PredictedLatency:
    """Latency predicted by a latency table (``--latency-table``) for the table's device: nothing is
    timed here (:mod:`explore.measure.latency_table`).

    Args:
        path: the table file.
    """

    def __init__(self, path: str) -> None:
        from explore.measure.latency_table import LatencyTable, fit_predictor

        self.path = path
        self.predictor = fit_predictor(LatencyTable.load(path))

    def record(self, record: RecordWriter, config: ArchConfig) -> float:
        """Predict ``config``'s latency (ms/img) and store it with the table's protocol and device."""
        predicted = self.predictor.predict(config)
        table = self.predictor.table
        record.predicted_latency(predicted, protocol=table.protocol, table_file=os.path.basename(self.path),
                                 regressor=self.predictor.regressor, device=table.device_name,
                                 batch_size=table.batch_size)
        return predicted


# --------------------------------------------------------------------------------------------------
# 5: evaluate (a schedule's job, the proxy training) and record
@dataclass
class Job:
    """One rung of an architecture under a schedule (see :mod:`explore.search.schedule`).

    Attributes:
        arch: the architecture's first job (its number); its seed is the study's + arch.
        rung, bracket: the rung this job trains to, the architecture's first rung.
        until: epochs (cumulative) at the end of this job.
        resume: the training state it continues from (None: a first job).
        history: the rungs the architecture reached before.
        save: stores the state at the end of the job (None at the top rung: nothing continues it).
    """

    arch: int
    rung: int
    bracket: int
    until: float
    resume: dict | None = None
    history: list = dataclasses.field(default_factory=list)
    save: Callable[[dict], None] | None = None


def schedule_job(trial: optuna.Trial, record: RecordWriter, config: ArchConfig, plan: Schedule,
                 settings: StudySettings, base_seed: int) -> Job:
    """The rung this job trains to, the state it continues from and where it stores its own.

    A first job draws its bracket from (``base_seed``, its number); a promotion continues its parent's
    stored state (``checkpoint``) at the next rung. Records the job's rung, bracket and architecture.

    Raises:
        ExploreError: the parent is another architecture (field ``promotes``), or its stored state
            is missing (field ``checkpoint``).
    """
    parent_number = TrialRecord.of(trial).promotes
    if parent_number is None:
        bracket = plan.bracket_for(base_seed, trial.number)
        job = Job(arch=trial.number, rung=bracket, bracket=bracket, until=plan.rungs[bracket])
    else:
        parent = TrialRecord.of(trial.study.get_trials(deepcopy=False)[parent_number])
        if parent.config_hash != config.config_hash():
            raise ExploreError(PROMOTES, parent_number, "expected a job of the same architecture")
        stored = settings.run_dir / (parent.checkpoint or "")
        if not stored.is_file():
            raise ExploreError(CHECKPOINT, parent.checkpoint, f"the state of job #{parent_number} in the run folder "
                               f"{settings.run_dir}; it is missing (workers need the run folder shared)")
        rung = int(parent.rung or 0) + 1
        job = Job(arch=int(parent.arch_trial), rung=rung, bracket=int(parent.bracket), until=plan.rungs[rung],
                  resume=torch.load(stored, map_location="cpu", weights_only=True), history=parent.rung_history)
    record.job(job.rung, job.bracket, job.arch)
    if job.rung < plan.top:  # a promotion may continue from it
        path = settings.run_dir / CHECKPOINTS / f"trial_{trial.number}.pt"

        def save(state: dict) -> None:
            write_atomically(path, lambda tmp: torch.save(state, tmp))  # never a half-written state
            record.set(CHECKPOINT, f"{CHECKPOINTS}/{path.name}")

        job.save = save
    return job


def train_candidate(record: RecordWriter, config: ArchConfig, *, seed: int, data: DatasetBundle, recipe: ProxyRecipe,
                    device: Any, threads: int | None, protocol: Protocol | None, job: Job | None, plan: Schedule,
                    on_step: Callable[[Step, Evaluation], None],
                    on_epoch_end: Callable[[int, float], None] | None = None) -> Evaluation:
    """Evaluate the candidate (build -> count -> time with ``protocol`` unless None -> train one rung
    of ``job``, or the whole budget) and record the proxy's figures, the training images and the
    job's rung history.

    Raises:
        Exception: whatever :func:`explore.evaluate.evaluate_candidate` raises (after the steps before
            it were passed to ``on_step``).
    """
    if threads is not None:
        record.set(PROXY_THREADS, threads)
    evaluation = evaluate_candidate(
        config, seed=seed, protocol=protocol, data=data, recipe=recipe, device=device, threads=threads,
        on_epoch_end=on_epoch_end, on_step=on_step, until_epochs=job.until if job else None,
        resume=job.resume if job else None, on_checkpoint=job.save if job else None)
    record.proxy(asdict(evaluation.proxy))
    images = evaluation.proxy.steps * min(recipe.batch_size, len(data.train))
    record.set(TRAIN_IMAGES, images)
    if job is not None:
        record.rung_reached(job.history, rung=job.rung, epochs=plan.rungs[job.rung], top1=evaluation.proxy.score,
                            train_seconds=evaluation.proxy.train_seconds, train_images=images)
    return evaluation


def _pruning_report(record: RecordWriter) -> Callable[[int, float], None]:
    """Report each epoch's top-1 to Optuna; stop the trial when the (median) pruner says so."""

    def report(epoch: int, top1: float) -> None:
        record.trial.report(top1, epoch)
        if record.trial.should_prune():
            raise record.prune(f"pruned by the median rule after epoch {epoch + 1} (top-1 {top1:.2f} %)")

    return report


# --------------------------------------------------------------------------------------------------
# the objective: the steps in order
class Objective:
    """The Optuna objective of a study: surplus -> sample -> deduplicate -> latency (cache or table)
    -> evaluate, each step recorded (see the module docstring).

    Args:
        space: what to sample.
        data: what to train on.
        settings: the study's settings.
        device: what to train and measure on.
        base_seed: trial k trains with ``base_seed + k`` (a schedule's job: + its architecture's first job).

    Calling it with a trial returns (score, latency ms/img), or the score alone for ``--objective top1``.
    With ``settings.supernet`` the score is the trial's inherited top-1 (the supernet is loaded here,
    once per worker) and nothing is trained.

    Raises (inside the trial, handled by Optuna):
        optuna.TrialPruned: surplus trial, infeasible point, duplicate, over the latency budget, out of
            memory or non-finite training loss (reason stored on the trial as ``pruned_reason``).
    """

    def __init__(self, space: SearchSpace, data: DatasetBundle, settings: StudySettings, device: Any,
                 base_seed: int) -> None:
        self.space, self.data, self.settings, self.device, self.base_seed = space, data, settings, device, base_seed
        self.recipe = settings.proxy_recipe()
        self.plan = settings.plan
        self.latency = (PredictedLatency(settings.latency_table) if settings.latency_table is not None
                        else MeasuredLatency(settings, device))
        self.scorer = None
        if settings.supernet is not None:  # loaded once per worker, not per trial
            from explore.search.inherited import InheritedScorer

            self.scorer = InheritedScorer(settings.supernet, data, device, settings.recalibration_images)

    def __call__(self, trial: optuna.Trial) -> tuple[float, float] | float:
        record = RecordWriter(trial)
        parent = TrialRecord.of(trial).promotes
        reason = surplus_reason(trial.study, trial.number, self.settings.trials) if parent is None else None
        if reason is not None:
            raise record.prune(reason)
        record.start(worker_id())
        config = sample_config(trial, self.space, self.data, self.settings, record)
        reason = duplicate_reason(trial, config.config_hash(), parent)
        if reason is not None:
            raise record.prune(reason)
        oom = None
        try:
            return self._evaluate(record, config)
        except OverBudget as exc:
            raise record.prune(str(exc)) from None
        except NonFiniteLossError as exc:
            raise record.prune(f"non-finite loss: {exc}") from None
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            oom = first_line(exc)
        release_memory()  # the failed trial's tensors are unreachable once the except block is left
        raise record.prune(f"out of memory: {oom}")

    def _evaluate(self, record: RecordWriter, config: ArchConfig) -> tuple[float, float] | float:
        """Latency (predicted, cached or timed; the budget checked) and the proxy training."""
        record.architecture(config_json=config.to_json(sort_keys=True))
        latency: list[float] = []
        if isinstance(self.latency, PredictedLatency):
            latency.append(self.latency.record(record, config))
            check_budget(record, latency[0], "predicted", self.settings.max_latency_ms)
            protocol = None
            lookup = None
        else:
            lookup = self.latency.lookup(record.trial, config)
            protocol = None if lookup[3] else lookup[2]

        def on_step(step: Step, evaluation: Evaluation) -> None:
            if step == "counted":
                record.counts(evaluation.params, evaluation.macs)
            elif step == "timed" and lookup is not None:
                cache, key, _, cached = lookup
                latency.append(self.latency.record(record, cache, key, cached, evaluation.latency))
                inject_fault(record.trial.number, evaluation.model)  # the test-only seam (explore.search.faults)
                check_budget(record, latency[0], "measured", self.settings.max_latency_ms)

        if self.scorer is not None:
            score = self._inherit(record, config, protocol, on_step)
        else:
            score = self._train(record, config, protocol, on_step).proxy.score
        if self.settings.objective == "top1":
            return score
        return score, latency[0]

    def _inherit(self, record: RecordWriter, config: ArchConfig, protocol: Protocol | None,
                 on_step: Callable[[Step, Evaluation], None]) -> float:
        """Build, count and time the static model as any trial does (the budget checked there), then
        score it with the supernet's weights after BN recalibration; nothing is trained."""
        evaluate_candidate(config, seed=self.base_seed + record.trial.number, protocol=protocol, on_step=on_step)
        threads = self._threads()
        top1, seconds = self.scorer.score(config, threads)
        record.update({"top1_source": "inherited", "supernet": self.scorer.run_dir,
                       "recalibration_images": self.scorer.images, "inherited_top1": top1,
                       "inherited_seconds": seconds, TRAIN_IMAGES: 0})
        if threads is not None:
            record.set(PROXY_THREADS, threads)
        return top1

    def _threads(self) -> int | None:
        """CPU threads of this worker's training or scoring (None on CUDA)."""
        if torch.device(self.device).type != "cpu":
            return None
        return self.settings.train_threads or training_threads(self.settings.workers,
                                                               from_load=self.settings.train_threads_from_load)

    def _train(self, record: RecordWriter, config: ArchConfig, protocol: Protocol | None,
               on_step: Callable[[Step, Evaluation], None]) -> Evaluation:
        """The proxy training of the trial (one rung of a schedule's job), on the study's threads."""
        threads = self._threads()
        job = schedule_job(record.trial, record, config, self.plan, self.settings, self.base_seed) \
            if self.plan.staged else None
        return train_candidate(
            record, config, seed=self.base_seed + (job.arch if job else record.trial.number), data=self.data,
            recipe=self.recipe, device=self.device, threads=threads, protocol=protocol, job=job, plan=self.plan,
            on_step=on_step, on_epoch_end=_pruning_report(record) if self.settings.objective == "top1" else None)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where there is none)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def training_threads(workers: int = 1, *, from_load: bool = False, sample_s: float = 0.3) -> int:
    """CPU threads for one worker's proxy training.

    By default they depend on the machine only: the cores this process may run on (its affinity),
    shared by the workers. Training on the CPU is bit-exact for one seed and one thread count, so
    this keeps the same command and seed at the same top-1 whether the machine is idle or loaded
    (issue 30; the count is stored on every trial as ``proxy_threads``).

    With ``from_load`` (``explore study --train-threads-from-load``) they follow the momentary load
    instead: the usable cores are sampled for ``sample_s`` seconds with psutil while this process is
    idle between trials, and a core more than half busy belongs to someone else. That trains faster
    beside other jobs (no thread waits for a taken core), but top-1 then changes with the load.

    Returns:
        ``max(1, usable cores // workers)``; with ``from_load``, at most the free cores.
    """
    share = max(1, usable_cores() // max(1, workers))
    if not from_load:
        return share
    import psutil

    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    busy = psutil.cpu_percent(interval=sample_s, percpu=True)
    free = sum(1 for core in usable if core < len(busy) and busy[core] < 50.0)
    return max(1, min(free, share))


def with_failure_reason(objective: Callable[[optuna.Trial], Any], storage: str | None) -> Callable[[optuna.Trial], Any]:
    """Store the exception text (without any storage password) on a trial that fails."""

    def wrapped(trial: optuna.Trial) -> Any:
        try:
            return objective(trial)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            RecordWriter(trial).fail("interrupted (KeyboardInterrupt)")
            raise
        except Exception as exc:
            RecordWriter(trial).fail(scrub(f"{type(exc).__name__}: {exc}", storage))
            raise

    return wrapped


def make_objective(space: SearchSpace, data: DatasetBundle, settings: StudySettings, device: Any,
                   *, train_seed: int | None = None) -> Objective:
    """The study's :class:`Objective`.

    Args:
        space: what to sample.
        data: what to train on.
        settings: the study's settings.
        device: what to train and measure on.
        train_seed: trial k trains with ``train_seed + k`` (default ``settings.seed``).

    Raises:
        ExploreError: a latency table that cannot be read (``settings.latency_table``), or a supernet
            folder without a supernet for the data's channels and classes (``settings.supernet``).
    """
    return Objective(space, data, settings, device, settings.seed if train_seed is None else train_seed)
