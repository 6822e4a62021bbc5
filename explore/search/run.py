"""Running a study: prepare, open or resume, run trials (one process or many workers), re-measure
the Pareto front at the end.

Objectives (multi-objective, Optuna's Pareto front): maximise proxy top-1 (%) and minimise
measured latency (ms per batch). Every trial stores, as user attributes, the config (JSON), its
hash, params, MACs, the latency protocol and spread (``latency_cached`` says whether it came from
the study's latency cache, :mod:`explore.search.cache`), the proxy training figures and the ``worker``
(``host:pid``) that ran it.

Storage (see :mod:`explore.search.storage`): an SQLite file in the run directory
(``runs/<study-name>/study.db``) by default, a journal file (``runs/<study-name>/journal.log``)
for ``workers > 1`` on one machine, or any Optuna storage URL (``postgresql://...`` for processes on
many machines). Running the same study again resumes it: it goes on until ``trials`` trials are
COMPLETE, never more, however many workers share it.

Faults inside a trial never stop the study; the trial keeps the reason:

* infeasible sampled point -> PRUNED, ``pruned_reason = "infeasible: ..."`` (never built);
* out of memory (``torch.cuda.OutOfMemoryError``, or an allocator "out of memory" error) ->
  PRUNED, ``pruned_reason = "out of memory: ..."`` (the CUDA cache is emptied);
* NaN/inf training loss -> PRUNED, ``pruned_reason = "non-finite loss: ..."``;
* any other exception -> FAIL, ``fail_reason = "<type>: <message>"`` (password-free);
* a sticky CUDA error (illegal address, device-side assert: every later CUDA call of the process
  would fail) -> that trial FAIL, then the worker ends with one ``error:`` line (DeviceError); the
  study resumes when the command is run again;
* the process dies (``kill -9``, a lost machine) -> the trial stays RUNNING until its heartbeat is
  stale, then becomes FAIL and its parameters are re-run as a new trial (``retry_of``).

No architecture is trained twice: a trial whose sampled architecture (config hash) another trial
holds COMPLETE or RUNNING is PRUNED (``pruned_reason = "duplicate: same architecture as trial
#k"``) before anything is built, and another is drawn; FAIL and PRUNED trials do not count, so a
retried trial runs. The sampler draws for trial number k with a seed derived from (seed, k)
(:class:`TrialSeededSampler`), so a resumed run or another process continues the search instead of
replaying it. A run stops after 50 duplicates in a row (the space has run out of new
architectures) and says so in :attr:`StudySummary.note`.

Exactly ``trials`` COMPLETE: a worker starts a trial only while COMPLETE + RUNNING < ``trials``;
otherwise it waits (polling every second), so that it can take over if a running trial fails.
Two workers can still start at the same instant; each trial therefore checks its rank first:
if COMPLETE + (RUNNING trials with a smaller number) >= ``trials``, it is surplus and is PRUNED at
once (``pruned_reason = "surplus: ..."``), before anything is built.

Fault injection (for the tests only) goes through one seam, :mod:`explore.search.faults`.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

import optuna
import torch
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from explore.device import is_sticky_cuda_error, resolve_device
from explore.errors import DeviceError, ExploreError
from explore.records import TrialRecord, promotion_attrs
from explore.resources import display_path
from explore.search.objective import DUPLICATE, DUPLICATE_STREAK, make_objective, with_failure_reason
from explore.search.results import remeasure_latencies
from explore.search.sampler import make_sampler
from explore.search.schedule import is_promotion, next_promotion
from explore.search.settings import DIRECTIONS, OBJECTIVES, StudySettings, StudySummary
from explore.search.storage import DEFAULT_HEARTBEAT_S, MAX_RETRY, make_storage, mask_password, scrub
from explore.space import SearchSpace, load_space
from explore.train import check_dataset, check_segmentation_dataset, dataset_info, segmentation_info

__all__ = ["prepare_study", "run_study", "fail_stale"]

_POLL_S = 1.0
"""Seconds between a waiting worker's looks at the study."""


def prepare_study(settings: StudySettings) -> tuple[SearchSpace, Any]:
    """Validate every input before anything is written: settings, device, space, dataset.

    Returns:
        (space, torch.device).

    Raises:
        ExploreError: (or a subclass) naming the offending option and value.
    """
    settings.validate()
    device = resolve_device(settings.worker_device(0) if settings.workers == 1 else settings.device)
    for index in range(settings.workers if settings.devices else 0):
        try:
            resolve_device(settings.worker_device(index))
        except DeviceError as exc:
            raise DeviceError("--devices", ",".join(map(str, settings.devices)), exc.expected) from None
    space = load_space(settings.space)
    if settings.task == "segmentation":
        check_segmentation_dataset(settings.dataset, settings.data_root)
    else:
        check_dataset(settings.dataset, settings.data_root)
    if settings.latency_table is not None:
        from explore.measure.latency_table import LatencyTable

        LatencyTable.load(settings.latency_table)  # a corrupt or foreign file: one error, nothing written
    if settings.supernet is not None:
        from explore.search.inherited import check_supernet

        check_supernet(settings.supernet, space, settings.dataset)  # another space: one error, nothing written
    return space, device


def _open(settings: StudySettings, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Create or load the study, on a storage that records trial heartbeats."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if settings.storage is None:
        settings.run_dir.mkdir(parents=True, exist_ok=True)
    storage = make_storage(settings.storage_url, heartbeat_s=settings.heartbeat_s)
    try:
        if settings.objective == "top1":  # one objective: a pruner can stop weak trials early
            return optuna.create_study(study_name=settings.study_name, storage=storage, direction="maximize",
                                       sampler=sampler, load_if_exists=True,
                                       pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
        return optuna.create_study(study_name=settings.study_name, storage=storage,
                                   directions=list(DIRECTIONS), sampler=sampler, load_if_exists=True)
    except ValueError as exc:  # e.g. an existing study of the same name with other directions
        raise ExploreError("--study-name", settings.study_name, scrub(str(exc), settings.storage)) from None


def _check_resume(study: optuna.Study, settings: StudySettings, space: SearchSpace,
                  data_info: dict[str, Any] | None = None) -> None:
    """A resumed study must keep its space and data; other settings may change (and are recorded).

    A new study stores ``settings``, ``space_name``, ``space_file`` (a relative path, see
    :func:`explore.resources.display_path`) and ``dataset_info`` (:func:`explore.train.dataset_info`).

    Raises:
        ExploreError: the resumed study ran with another space, dataset, subset or classes.
    """
    stored = study.user_attrs.get("settings")
    if stored is None:
        with warnings.catch_warnings():  # set_metric_names is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            first = "miou" if settings.task == "segmentation" else "top1"
            study.set_metric_names([first, OBJECTIVES[1]] if settings.objective == "pareto" else [first])
        stored = asdict(settings)
        stored["rung_epochs"] = list(settings.plan.rungs)  # the schedule's rungs, defaults resolved
        if stored["storage"]:
            stored["storage"] = mask_password(stored["storage"])
        study.set_user_attr("settings", stored)
        study.set_user_attr("space_name", space.name)
        study.set_user_attr("space_file", display_path(space.path, "search_spaces"))
        if data_info is not None:
            study.set_user_attr("dataset_info", data_info)
        return
    staged_keys = ("schedule", "rungs", "eta", "batch_size", "epochs")
    for key in ("dataset", "max_train", "max_val", *staged_keys, "task", "seg_size"):
        value = getattr(settings, key)
        if key in staged_keys and settings.schedule == "full" \
                and stored.get("schedule", "full") == "full":
            continue  # only a schedule's stored states depend on these
        if key == "seg_size" and settings.task != "segmentation":
            continue
        before = stored.get(key, _DEFAULTS[key])  # a study of an older version lacks the newer fields
        if _jsonable(before) != _jsonable(value):
            raise ExploreError(f"--{key.replace('_', '-')}", getattr(settings, key),
                               f"study {settings.study_name!r} was run with {before!r}; "
                               "use another --study-name for a different setting")
    if stored.get("supernet") != settings.supernet:  # inherited and trained top-1 do not mix in one study
        raise ExploreError("--supernet", settings.supernet,
                           f"study {settings.study_name!r} was run with --supernet {stored.get('supernet')!r}; "
                           "use another --study-name")
    if study.user_attrs.get("space_name") != space.name:
        raise ExploreError("--space", settings.space,
                           f"study {settings.study_name!r} was run with space {study.user_attrs.get('space_name')!r}")
    if data_info is None:
        return
    known = study.user_attrs.get("dataset_info")
    if known is None:  # a study of an older version
        study.set_user_attr("dataset_info", data_info)
    elif (known.get("num_classes"), known.get("classes")) != (data_info["num_classes"], data_info["classes"]):
        raise ExploreError("--data-root", settings.data_root,
                           f"study {settings.study_name!r} was run on {known.get('num_classes')} classes "
                           f"({', '.join(known.get('classes') or [])}); this data has {data_info['num_classes']} "
                           f"({', '.join(data_info['classes'])}): use another --study-name")


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(StudySettings)}
"""Field defaults: what a study stored by an older version ran with."""


def _jsonable(value: Any) -> Any:
    """``value`` as the study's stored settings hold it (tuples come back as lists)."""
    return list(value) if isinstance(value, tuple) else value


def _count(study: optuna.Study, state: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=(state,)))


def fail_stale(study: optuna.Study, heartbeat_s: int = DEFAULT_HEARTBEAT_S) -> None:
    """FAIL (and re-queue) the RUNNING trials of dead processes.

    Optuna's heartbeat check finds those of processes that recorded heartbeats. A RUNNING trial
    without a ``worker`` attribute (this version sets it as a trial starts) that started long ago
    was left by a run of an older version, which recorded none: it is failed and re-queued the
    same way, so that no worker waits for it forever.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
        orphan_age = 3 * heartbeat_s + 60
        now = datetime.now()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            started = trial.datetime_start
            if TrialRecord.of(trial).worker is not None or started is None or (now - started).total_seconds() < orphan_age:
                continue
            try:
                failed = study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker got there first
            if failed:
                RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, trial)


class _DuplicateStreak:
    """An Optuna callback counting the duplicate draws in a row (see :data:`DUPLICATE_STREAK`): a
    duplicate adds one, any other finished draw resets it; surplus trials and promotion jobs of a
    schedule (which repeat their architecture on purpose) leave it as it is."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if is_promotion(trial):
            return
        reason = TrialRecord.of(trial).pruned_reason or ""
        if reason.startswith(DUPLICATE):
            self.count += 1
        elif not reason.startswith("surplus"):
            self.count = 0


class _DeviceGuard:
    """Wraps the objective: a trial that hit a sticky CUDA error (:func:`explore.device.is_sticky_cuda_error`)
    is recorded FAIL as any error is, and then :meth:`check` ends this worker with one clear line
    instead of letting every later trial fail the same way until the attempt cap."""

    def __init__(self, objective: Callable[[optuna.Trial], Any], settings: StudySettings) -> None:
        self.objective, self.settings, self.fault = objective, settings, None

    def __call__(self, trial: optuna.Trial) -> Any:
        try:
            return self.objective(trial)
        except Exception as exc:
            if is_sticky_cuda_error(exc):
                self.fault = (trial.number, (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200])
            raise

    def check(self) -> None:
        """Raises DeviceError (field ``--device``) after a sticky CUDA error."""
        if self.fault is not None:
            number, line = self.fault
            raise DeviceError("--device", self.settings.device,
                              f"trial #{number} hit a CUDA error that leaves the device unusable in this process "
                              f"({line}); the trial is FAIL; run the same command again to resume the study")


def _work(study: optuna.Study, objective: Callable[[optuna.Trial], Any], settings: StudySettings,
          on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> None:
    """Run trials until ``settings.trials`` are COMPLETE (never more; see the module docstring).

    Pruned (infeasible, duplicate) trials are cheap; the attempts of one call are capped at 50x the
    missing COMPLETE trials so that a space with no feasible point ends, and the call ends after
    ``DUPLICATE_STREAK`` duplicates in a row, so that a space with fewer distinct feasible
    architectures than ``settings.trials`` ends (see :func:`_exhausted_note`).
    """
    streak = _DuplicateStreak()
    callbacks = [streak] + ([on_trial] if on_trial is not None else [])
    guard = _DeviceGuard(objective, settings)
    wrapped = with_failure_reason(guard, settings.storage)
    attempts, cap = 0, 50 * max(1, settings.trials - _count(study, TrialState.COMPLETE))
    while attempts < cap and streak.count < DUPLICATE_STREAK:
        fail_stale(study, settings.heartbeat_s)  # dead processes' trials: FAIL and re-queued
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        complete = sum(1 for t in trials if t.state == TrialState.COMPLETE)
        if complete >= settings.trials:
            return
        if len(trials) >= settings.trials:  # the rest is running elsewhere; stay to take over on failure
            time.sleep(_POLL_S)
            continue
        study.optimize(wrapped, n_trials=1, callbacks=callbacks, catch=(Exception,))
        guard.check()
        attempts += 1


def _work_scheduled(study: optuna.Study, objective: Callable[[optuna.Trial], Any], settings: StudySettings,
                    on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> None:
    """Run jobs of a schedule (:mod:`explore.search.schedule`) until ``settings.trials`` architectures
    are started and no job is left to promote: promotions first (top rungs first), then new
    architectures; a worker with nothing to do waits while others run (their results may make a
    job promotable). Attempts are capped as in :func:`_work`.
    """
    plan = settings.plan
    streak = _DuplicateStreak()
    callbacks = [streak] + ([on_trial] if on_trial is not None else [])
    guard = _DeviceGuard(objective, settings)
    wrapped = with_failure_reason(guard, settings.storage)
    attempts, cap = 0, 50 * max(1, settings.trials) * len(plan.rungs)
    while attempts < cap and streak.count < DUPLICATE_STREAK:
        fail_stale(study, settings.heartbeat_s)
        parent = next_promotion(study, plan)
        if parent is not None:
            study.enqueue_trial(parent.params, user_attrs=promotion_attrs(parent.number))
        else:
            trials = study.get_trials(deepcopy=False)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            started = sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.RUNNING)
                          and not is_promotion(t))
            if not waiting and started >= settings.trials:
                if not any(t.state == TrialState.RUNNING for t in trials):
                    return
                time.sleep(_POLL_S)  # others' results may make a job promotable
                continue
        study.optimize(wrapped, n_trials=1, callbacks=callbacks, catch=(Exception,))
        guard.check()
        attempts += 1


def _exhausted_note(study: optuna.Study, settings: StudySettings) -> str:
    """Why a run ended short of ``settings.trials``: when its last trials (by number, skipping
    surplus ones) are ``DUPLICATE_STREAK`` or more duplicates, the space has (nearly) run out of new
    architectures. Empty otherwise."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if not is_promotion(t)]
    if len(complete) >= settings.trials:
        return ""
    streak = 0
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number, reverse=True):
        reason = TrialRecord.of(trial).pruned_reason or ""
        if not trial.state.is_finished() or reason.startswith("surplus"):
            continue
        if not reason.startswith(DUPLICATE):
            break
        streak += 1
    if streak < DUPLICATE_STREAK:
        return ""
    distinct = len({TrialRecord.of(t).config_hash for t in complete})
    return (f"the last {streak} draws were all architectures already complete or running: the space seems to "
            f"hold only {distinct} distinct feasible architectures, fewer than --trials {settings.trials}; "
            "lower --trials or widen the space")


def _train_seed(study: optuna.Study, settings: StudySettings) -> int:
    stored = study.user_attrs.get("settings") or {}
    return int(stored.get("seed", settings.seed))


def _worker_main(settings: StudySettings, index: int) -> None:
    """Entry point of worker process ``index`` of ``--workers`` (spawned, so it imports afresh)."""
    try:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings.workers))
        settings = dataclasses.replace(settings, device=settings.worker_device(index), devices=None)
        space, device = prepare_study(settings)
        data = settings.load_data(settings.seed)
        study = _open(settings, make_sampler(settings))
        objective = make_objective(space, data, settings, device, train_seed=_train_seed(study, settings))
        (_work_scheduled if settings.plan.staged else _work)(study, objective, settings)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - reported on stderr, the exit code tells the parent
        print(f"error: worker {index}: {scrub(f'{type(exc).__name__}: {exc}', settings.storage)}",
              file=sys.stderr, flush=True)
        sys.exit(1)


def _run_workers(study: optuna.Study, settings: StudySettings,
                 on_trial: Callable[[optuna.Study, FrozenTrial], None] | None) -> int:
    """Start ``settings.workers`` processes and report finished trials until they all exit.

    Returns:
        The number of workers that exited abnormally.
    """
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_worker_main, args=(settings, i), name=f"explore-worker-{i}")
             for i in range(settings.workers)]
    for proc in procs:
        proc.start()
    seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}

    def report_new() -> None:
        for trial in study.get_trials(deepcopy=False):
            if trial.state.is_finished() and trial.number not in seen:
                seen.add(trial.number)
                if on_trial is not None:
                    on_trial(study, trial)

    try:
        while any(proc.is_alive() for proc in procs):
            report_new()
            time.sleep(_POLL_S)
    except KeyboardInterrupt:  # the workers got the same SIGINT: give them time to record it
        for proc in procs:
            proc.join(timeout=10)
        raise
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()
    report_new()
    return sum(1 for proc in procs if proc.exitcode != 0)


def run_study(settings: StudySettings, *, on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
              prepared: tuple[SearchSpace, Any] | None = None,
              on_data: Callable[[dict[str, Any]], None] | None = None,
              on_remeasure: Callable[[int, float, float], None] | None = None,
              on_front_run: Callable[[int, float, float, float], None] | None = None) -> StudySummary:
    """Run (or resume) a study until ``settings.trials`` trials are COMPLETE.

    With ``settings.workers > 1`` it starts that many worker processes (``spawn``) on the shared
    storage and reports their trials; otherwise it runs the trials itself.

    Args:
        settings: the run's settings.
        on_trial: called after every finished trial (progress display).
        prepared: the result of :func:`prepare_study` if the caller already validated.
        on_data: called once the data is loaded, before anything is written, with
            :func:`explore.train.dataset_info` (classes, split sizes, where the splits came from).
        on_remeasure: called after each trial's end-of-study latency re-measurement (see
            :func:`remeasure_latencies`; ``settings.remeasure_front``).
        on_front_run: with ``settings.supernet``, called after each front member's stand-alone
            training at the end (trial, stand-alone top-1 %, inherited top-1 %, training seconds;
            :func:`explore.search.inherited.retrain_supernet_front`).

    Returns:
        :class:`StudySummary`.

    Raises:
        ExploreError: bad input, before anything is written; or a storage that cannot be opened.
    """
    space, device = prepared or prepare_study(settings)
    start = time.perf_counter()
    workers_failed = 0
    data = settings.load_data(settings.seed)
    info = segmentation_info(data) if settings.task == "segmentation" else dataset_info(data)
    if on_data is not None:
        on_data(info)
    if settings.workers > 1:
        del data  # each worker loads its own copy
        study = _open(settings, make_sampler(settings))
        _check_resume(study, settings, space, info)
        if _count(study, TrialState.COMPLETE) < settings.trials:
            workers_failed = _run_workers(study, settings, on_trial)
    else:
        study = _open(settings, make_sampler(settings))
        _check_resume(study, settings, space, info)
        objective = make_objective(space, data, settings, device, train_seed=_train_seed(study, settings))
        (_work_scheduled if settings.plan.staged else _work)(study, objective, settings, on_trial)
    remeasured = []
    architectures = sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                        if not is_promotion(t))
    if settings.remeasure_front and settings.objective == "pareto" and architectures >= settings.trials:
        remeasured = remeasure_latencies(study, device, on_remeasure)
    if settings.supernet is not None and architectures >= settings.trials:
        from explore.search.inherited import retrain_supernet_front
        from explore.search.objective import training_threads

        threads = None if device.type != "cpu" else settings.train_threads or training_threads(1)
        retrain_supernet_front(study, device=str(device), threads=threads, train_seed=_train_seed(study, settings),
                               on_run=on_front_run)
    return StudySummary(
        study_name=settings.study_name,
        run_dir=str(settings.run_dir),
        storage=mask_password(settings.storage_url),
        complete=_count(study, TrialState.COMPLETE),
        pruned=_count(study, TrialState.PRUNED),
        failed=_count(study, TrialState.FAIL),
        wall_seconds=time.perf_counter() - start,
        running=_count(study, TrialState.RUNNING),
        workers=settings.workers,
        workers_failed=workers_failed,
        note=_exhausted_note(study, settings),
        remeasured=tuple(remeasured),
        architectures=architectures,
    )
