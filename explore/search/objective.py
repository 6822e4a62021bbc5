"""The study's objective: one trial, from the surplus and duplicate checks to the proxy top-1.

No architecture is trained twice: a trial whose sampled architecture (config hash) another trial
holds COMPLETE or RUNNING is PRUNED (``pruned_reason = "duplicate: same architecture as trial
#k"``) before anything is built. Exactly ``trials`` COMPLETE: a trial that finds COMPLETE +
(RUNNING trials with a smaller number) >= ``trials`` is surplus and PRUNED at once. Faults inside
a trial never stop the study; the trial keeps the reason (see :mod:`explore.search.run`).
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
from explore.measure import Measurement, device_name
from explore.records import ARCH, BRACKET, HISTORY, LATENCY_EXCESS, PROMOTES, RUNG, TRAIN_IMAGES
from explore.resources import display_path, write_atomically
from explore.search.cache import LatencyCache, LatencyKey
from explore.search.faults import inject_fault
from explore.search.schedule import is_promotion, promotion_claimed
from explore.search.settings import LATENCY_WARMUP, StudySettings
from explore.search.storage import scrub
from explore.space import SearchSpace
from explore.train import DatasetBundle

CHECKPOINTS = "checkpoints"
"""Folder of the run folder where jobs of a schedule store their training state."""
CHECKPOINT_ATTR = "checkpoint"
"""User attribute: the job's stored state, relative to the run folder."""

__all__ = ["CHECKPOINTS", "CHECKPOINT_ATTR", "DUPLICATE", "DUPLICATE_STREAK", "make_objective", "same_architecture", "training_threads",
           "with_failure_reason", "worker_id", "first_line"]

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


def same_architecture(study: optuna.Study, number: int, config_hash: str) -> int | None:
    """The first other trial that holds architecture ``config_hash`` and is COMPLETE or RUNNING.

    A RUNNING trial stores its ``config_hash`` as soon as it has sampled, before it checks; so of
    two processes that draw the same architecture at the same instant, at least the second to check
    sees the first (both may see each other and both be pruned: a wasted draw, never a duplicate).
    A FAIL or PRUNED trial does not count: its architecture may run again (a retried stale trial
    re-runs its FAIL original's parameters).
    """
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    same = [t.number for t in trials if t.number != number and t.user_attrs.get("config_hash") == config_hash]
    return min(same) if same else None


def make_objective(space: SearchSpace, data: DatasetBundle, settings: StudySettings, device: Any,
                   *, train_seed: int | None = None) -> Callable[[optuna.Trial], tuple[float, float]]:
    """The Optuna objective: surplus check -> sample -> validate -> duplicate check -> the candidate's
    evaluation (:func:`explore.evaluate.evaluate_candidate`: build -> params/MACs -> latency, looked up
    in the study's cache first -> the fault-injection seam -> proxy top-1).

    Args:
        space, data, settings, device: what to sample, train on, and measure with.
        train_seed: trial k trains with ``train_seed + k`` (default ``settings.seed``).

    Raises (inside the trial, handled by Optuna):
        optuna.TrialPruned: surplus trial, infeasible point, duplicate (an architecture that another
            trial of the study holds COMPLETE or RUNNING: ``duplicate: same architecture as trial
            #k``, nothing built), out of memory or non-finite training loss (reason stored on the
            trial as ``pruned_reason``).
    """
    recipe = settings.proxy_recipe()
    plan = settings.plan
    base_seed = settings.seed if train_seed is None else train_seed
    predictor = None
    if settings.latency_table is not None:
        from explore.measure.latency_table import LatencyTable, fit_predictor

        predictor = fit_predictor(LatencyTable.load(settings.latency_table))

    def objective(trial: optuna.Trial) -> tuple[float, float] | float:
        study = trial.study
        parent = trial.user_attrs.get(PROMOTES)
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        ahead = sum(1 for t in trials if (t.state == TrialState.COMPLETE or t.number < trial.number)
                    and not is_promotion(t))
        if parent is None and ahead >= settings.trials:
            reason = (f"surplus: {settings.trials} trials are complete or running ahead of this one "
                      "(another worker started at the same time)")
            trial.set_user_attr("pruned_reason", reason)
            raise optuna.TrialPruned(reason)
        trial.set_user_attr("worker", worker_id())
        try:
            config = settings.task_config(space.sample(trial, in_chans=data.in_chans, num_classes=data.num_classes))
        except ConfigError as exc:
            trial.set_user_attr("pruned_reason", f"infeasible: {exc}")
            raise optuna.TrialPruned(str(exc)) from None
        trial.set_user_attr("config_hash", config.config_hash())  # before the check: see same_architecture
        if parent is not None:
            other = promotion_claimed(study, trial, parent)
            if other is not None:  # two workers promoted the same job at once (see explore.search.schedule)
                reason = f"{DUPLICATE} promotion: job #{other} continues #{parent}"
                trial.set_user_attr("pruned_reason", reason)
                raise optuna.TrialPruned(reason)
        original = None if parent is not None else same_architecture(study, trial.number, config.config_hash())
        if original is not None:
            reason = f"{DUPLICATE}: same architecture as trial #{original}"
            trial.set_user_attr("pruned_reason", reason)
            raise optuna.TrialPruned(reason)
        oom = None
        try:
            return _measure_and_train(trial, config)
        except _OverBudget as exc:
            trial.set_user_attr("pruned_reason", str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        except NonFiniteLossError as exc:
            trial.set_user_attr("pruned_reason", f"non-finite loss: {exc}")
            raise optuna.TrialPruned(str(exc)) from None
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            oom = first_line(exc)
        release_memory()  # the failed trial's tensors are unreachable once the except block is left
        trial.set_user_attr("pruned_reason", f"out of memory: {oom}")
        raise optuna.TrialPruned(f"out of memory: {oom}")

    def _check_budget(trial: optuna.Trial, latency_ms: float, source: str) -> None:
        """Record the trial's excess over ``--max-latency-ms``; raise :class:`_OverBudget` when > 0."""
        if settings.max_latency_ms is None:
            return
        excess = latency_ms - settings.max_latency_ms
        trial.set_user_attr(LATENCY_EXCESS, excess)
        trial.set_constraint(LATENCY_EXCESS, excess)  # TPE and NSGA-II treat > 0 as infeasible
        if excess > 0:
            raise _OverBudget(f"over the latency budget: {latency_ms:.4f} ms/img {source} > "
                              f"--max-latency-ms {settings.max_latency_ms:g}")

    def _predict_and_train(trial: optuna.Trial, config: ArchConfig) -> tuple[float, float] | float:
        """With a latency table: the predicted latency is the objective; nothing is timed here."""
        assert predictor is not None
        predicted = predictor.predict(config)
        table = predictor.table
        attrs = {f"latency_protocol_{k}": v for k, v in table.protocol.items()}
        attrs.update({"latency_ms_per_img": predicted, "latency_predicted_ms": predicted, "latency_source": "table",
                      "latency_table_file": os.path.basename(settings.latency_table or ""),
                      "latency_table_regressor": predictor.regressor, "latency_device_name": table.device_name,
                      "latency_batch_size": table.batch_size})
        for name, value in attrs.items():
            trial.set_user_attr(name, value)
        _check_budget(trial, predicted, "predicted")

        def record(step: Step, evaluation: Evaluation) -> None:
            if step == "counted":
                trial.set_user_attr("params", evaluation.params)
                trial.set_user_attr("macs", evaluation.macs)

        evaluation = _train(trial, config, None, record)
        if settings.objective == "top1":
            return evaluation.proxy.score
        return evaluation.proxy.score, predicted

    def _train(trial: optuna.Trial, config: ArchConfig, protocol: Any,
               record: Callable[[Step, Evaluation], None]) -> Evaluation:
        threads = None
        if torch.device(device).type == "cpu":
            threads = settings.train_threads or training_threads(settings.workers)
            trial.set_user_attr("proxy_threads", threads)
        job = _job(trial, config) if plan.staged else None
        evaluation = evaluate_candidate(
            config, seed=base_seed + (job.arch if job else trial.number), protocol=protocol, data=data, recipe=recipe,
            device=device, threads=threads, on_epoch_end=_pruning_report(trial) if settings.objective == "top1" else None,
            on_step=record, until_epochs=job.until if job else None, resume=job.resume if job else None,
            on_checkpoint=job.save if job else None)
        for name, value in asdict(evaluation.proxy).items():
            trial.set_user_attr(f"proxy_{name}", value)
        images = evaluation.proxy.steps * min(recipe.batch_size, len(data.train))
        trial.set_user_attr(TRAIN_IMAGES, images)
        if job is not None:
            entry = {"rung": job.rung, "epochs": plan.rungs[job.rung], "top1": evaluation.proxy.score,
                     "train_seconds": evaluation.proxy.train_seconds, "train_images": images, "trial": trial.number}
            trial.set_user_attr(HISTORY, [*job.history, entry])
        return evaluation

    def _job(trial: optuna.Trial, config: ArchConfig) -> _Job:
        """The rung this job trains to, the state it continues from and where it stores its own."""
        parent_number = trial.user_attrs.get(PROMOTES)
        folder = settings.run_dir / CHECKPOINTS
        if parent_number is None:
            bracket = plan.bracket_for(base_seed, trial.number)
            job = _Job(arch=trial.number, rung=bracket, bracket=bracket, until=plan.rungs[bracket])
        else:
            parent = trial.study.get_trials(deepcopy=False)[int(parent_number)]
            if parent.user_attrs.get("config_hash") != config.config_hash():
                raise ExploreError("promotes", parent_number, "expected a job of the same architecture")
            rung = int(parent.user_attrs[RUNG]) + 1
            stored = settings.run_dir / parent.user_attrs.get(CHECKPOINT_ATTR, "")
            if not stored.is_file():
                raise ExploreError("checkpoint", display_path(stored), f"the state of job #{parent_number} is missing "
                                   "(checkpoints live in the run folder; workers need it shared)")
            job = _Job(arch=int(parent.user_attrs[ARCH]), rung=rung, bracket=int(parent.user_attrs[BRACKET]),
                       until=plan.rungs[rung], resume=torch.load(stored, map_location="cpu", weights_only=True),
                       history=list(parent.user_attrs.get(HISTORY, [])))
        for name, value in ((RUNG, job.rung), (BRACKET, job.bracket), (ARCH, job.arch)):
            trial.set_user_attr(name, value)
        if job.rung < plan.top:  # a promotion may continue from it
            path = folder / f"trial_{trial.number}.pt"

            def save(state: dict) -> None:
                write_atomically(path, lambda tmp: torch.save(state, tmp))  # never a half-written state
                trial.set_user_attr(CHECKPOINT_ATTR, f"{CHECKPOINTS}/{path.name}")

            job.save = save
        return job

    def _measure_and_train(trial: optuna.Trial, config: ArchConfig) -> tuple[float, float] | float:
        trial.set_user_attr("config", config.to_json(sort_keys=True))
        if predictor is not None:
            return _predict_and_train(trial, config)
        cache = LatencyCache(trial.study)
        protocol = settings.latency_protocol(config.img_size, config.in_chans)
        key = LatencyKey(config_hash=config.config_hash(), batch_size=protocol.batch_size,
                         threads=settings.latency_threads, warmup=LATENCY_WARMUP,
                         repeats=settings.latency_repeats, device=device_name(device),
                         protocol=protocol.name, mode=protocol.mode)
        cached = cache.get(key)
        latency: dict[str, Any] = {}

        def record(step: Step, evaluation: Evaluation) -> None:
            if step == "counted":
                trial.set_user_attr("params", evaluation.params)
                trial.set_user_attr("macs", evaluation.macs)
            elif step == "timed":
                latency.update(_latency_attrs(trial, cache, key, cached, evaluation.latency))
                latency["latency_source"] = "measured"
                for name, value in latency.items():
                    trial.set_user_attr(name, value)
                inject_fault(trial.number, evaluation.model)  # the test-only seam (explore.search.faults)
                _check_budget(trial, float(latency["latency_ms_per_img"]), "measured")

        evaluation = _train(trial, config, None if cached else protocol, record)
        if settings.objective == "top1":
            return evaluation.proxy.score
        return evaluation.proxy.score, float(latency["latency_ms_per_img"])

    def _pruning_report(trial: optuna.Trial) -> Callable[[int, float], None]:
        """Report each epoch's top-1 to Optuna; stop the trial when the pruner says so."""

        def report(epoch: int, top1: float) -> None:
            trial.report(top1, epoch)
            if trial.should_prune():
                reason = f"pruned by the median rule after epoch {epoch + 1} (top-1 {top1:.2f} %)"
                trial.set_user_attr("pruned_reason", reason)
                raise optuna.TrialPruned(reason)

        return report

    return objective


@dataclass
class _Job:
    """One rung of an architecture under a schedule (see :mod:`explore.search.schedule`)."""

    arch: int
    rung: int
    bracket: int
    until: float
    resume: dict | None = None
    history: list = dataclasses.field(default_factory=list)
    save: Callable[[dict], None] | None = None


class _OverBudget(Exception):
    """A trial's latency exceeds ``--max-latency-ms``: it is pruned before training."""


def _latency_attrs(trial: optuna.Trial, cache: LatencyCache, key: LatencyKey, cached: dict[str, Any] | None,
                   result: Measurement | None) -> dict[str, Any]:
    """The trial's latency attributes: the cache's entry, or the new measurement (then filed in the
    cache under ``key``, and also under the batch it timed when out of memory halved it)."""
    if cached is not None:
        return {**cached["attrs"], "latency_cached": True, "latency_measured_by_trial": cached.get("measured_by_trial")}
    attrs = result.as_attrs()
    cache.put(key, attrs, trial_number=trial.number, worker=worker_id())
    if result.batch_size != key.batch_size:  # halved after out of memory: also file it under what was timed
        cache.put(dataclasses.replace(key, batch_size=result.batch_size), attrs, trial_number=trial.number,
                  worker=worker_id())
    return {**attrs, "latency_cached": False, "latency_measured_by_trial": trial.number}


def training_threads(workers: int = 1, sample_s: float = 0.3) -> int:
    """CPU threads for one worker's proxy training: the cores free right now, shared by the workers.

    Cores this process may run on (its affinity) are sampled for ``sample_s`` seconds with psutil
    while this process is idle between trials; a core more than half busy belongs to someone else
    (another job, or another worker training). On a machine others share, training with more threads
    than free cores only makes every thread wait (involuntary context switches).

    Returns:
        ``max(1, min(free cores, usable cores // workers))``.
    """
    import psutil

    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    busy = psutil.cpu_percent(interval=sample_s, percpu=True)
    free = sum(1 for core in usable if core < len(busy) and busy[core] < 50.0)
    return max(1, min(free, len(usable) // max(1, workers)))


def with_failure_reason(objective: Callable[[optuna.Trial], Any], storage: str | None) -> Callable[[optuna.Trial], Any]:
    """Store the exception text (without any storage password) on a trial that fails."""

    def wrapped(trial: optuna.Trial) -> Any:
        try:
            return objective(trial)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (KeyboardInterrupt)")
            raise
        except Exception as exc:
            trial.set_user_attr("fail_reason", scrub(f"{type(exc).__name__}: {exc}", storage))
            raise

    return wrapped
