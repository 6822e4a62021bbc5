"""The Optuna study: sample an architecture, measure it, train it briefly, record everything.

Objectives (multi-objective, Optuna's Pareto front): maximise proxy top-1 (%) and minimise
measured latency (ms per batch). Every trial stores, as user attributes, the config (JSON), its
hash, params, MACs, the latency protocol and spread (``latency_cached`` says whether it came from
the study's latency cache, :mod:`explore.cache`), the proxy training figures and the ``worker``
(``host:pid``) that ran it.

Storage (see :mod:`explore.storage`): an SQLite file in the run directory
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

Fault-injection hook (for :mod:`explore.faults` and the tests only): the environment variable
``EXPLORE_INJECT_FAULTS="kind@trial,..."`` makes trial number ``trial`` suffer ``kind`` after its
latency is measured: ``oom`` (raises ``torch.cuda.OutOfMemoryError``), ``nan`` (fills the weights
with NaN, so that training sees a NaN loss), ``error`` (raises ``RuntimeError``) or ``kill``
(``SIGKILL`` to its own process). Nothing else reads it.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import re
import signal
import socket
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import torch
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from explore.cache import LatencyCache, LatencyKey, device_name
from explore.config import ArchConfig
from explore.data import DatasetBundle, check_dataset, dataset_info, load_dataset
from explore.device import device_lock, is_out_of_memory, on_device, release_memory, resolve_device
from explore.errors import ConfigError, DeviceError, ExploreError, NonFiniteLossError, SpaceError
from explore.measure import count_macs, count_params
from explore.protocols import Protocol, device_model_name, get_protocol, measure
from explore.models import build
from explore.resources import display_path
from explore.space import SearchSpace, load_space
from explore.storage import DEFAULT_HEARTBEAT_S, MAX_RETRY, is_journal, make_storage, mask_password, scrub
from explore.train import ProxyRecipe, seed_everything, train_proxy

__all__ = [
    "StudySettings",
    "StudySummary",
    "TrialSeededSampler",
    "prepare_study",
    "run_study",
    "open_study",
    "trials_frame",
    "study_meta",
    "study_space",
    "remeasure_front",
    "remeasured_latencies",
    "training_threads",
    "default_storage",
    "make_objective",
    "mask_password",
    "OBJECTIVES",
    "FAULTS_ENV",
]

OBJECTIVE_MODES = ("pareto", "top1")
"""``pareto``: maximise top-1 and minimise latency (the default); ``top1``: maximise top-1 only,
with Optuna's MedianPruner stopping trials whose per-epoch top-1 falls behind (latency is still
measured and stored)."""
OBJECTIVES = ("top1", "latency_ms")
"""Metric names, in Optuna's order: top-1 (%, maximise) and latency (ms, minimise)."""
_DIRECTIONS = ("maximize", "minimize")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SAMPLERS = ("tpe", "nsga2", "random")
REMEASURED_PREFIX = "latency_remeasured:"
"""Study attributes holding the end-of-study latency re-measurements of Pareto trials, by trial number."""
FAULTS_ENV = "EXPLORE_INJECT_FAULTS"
"""Environment variable of the fault-injection hook (see the module docstring)."""
_FAULT_KINDS = ("oom", "nan", "error", "kill")
_DUPLICATE = "duplicate"
_DUPLICATE_STREAK = 50
"""A run stops after this many draws in a row gave architectures already COMPLETE or RUNNING."""
_LATENCY_WARMUP = 5
DEFAULT_LATENCY_MODE = {"cpu": "fused", "cuda": "cuda-graph"}
"""The study's latency mode when ``--latency-mode`` is not given, by device type. On the CPU, the
papers' deploy form (BN folded, eager). On CUDA, the same fused model replayed as a CUDA graph: the
small models a study samples, at its small resolutions, spend much of an eager pass launching
kernels, so an eager figure would rank the host's launch overhead; a replayed graph times the GPU's
work, as a deployed (graph-captured or TensorRT) model runs."""
_PROTOCOL_OPTIONS = {"--mode": "--latency-mode", "--batch-size": "--latency-batch", "--repeats": "--latency-repeats"}
"""get_protocol's field names -> the study options that set them."""
_POLL_S = 1.0
_MAX_WORKERS = 64


@dataclass(frozen=True)
class StudySettings:
    """Everything a study run needs; stored on the study so that a resumed run can be checked.

    Attributes:
        space: space name or file (``cga`` or a path).
        study_name: Optuna study name; also the run folder name (letters, digits, ``._-``).
        trials: number of COMPLETE trials to reach (pruned/failed ones do not count).
        out: parent folder of run folders.
        storage: Optuna storage URL or journal file path; None -> ``<out>/<study_name>/study.db``
            (SQLite), or ``<out>/<study_name>/journal.log`` with ``workers > 1`` (see
            :func:`default_storage`).
        dataset, data_root, max_train, max_val: proxy data (see :mod:`explore.data`).
        device: ``cpu`` or ``cuda[:N]`` for both training and latency.
        seed: sampler seed: trial k draws with a seed derived from (``seed``, k) (see
            :class:`TrialSeededSampler`), so that every worker, and every machine on a shared
            storage, may use the same seed; trial k trains with seed ``s + k``, ``s`` the seed of
            the study's first run.
        sampler: ``tpe`` (default, multivariate, constant liar for parallel workers), ``nsga2`` or
            ``random``.
        epochs, batch_size, lr: proxy training budget (see :class:`explore.train.ProxyRecipe`).
        latency_batch, latency_threads, latency_repeats: latency protocol parameters (CPU: the CGA
            paper's ``cpu-latency``, batch 16, one thread; CUDA: ``gpu-throughput``, batch 2048);
            ``latency_batch`` None takes the protocol's batch.
        objective: ``pareto`` (top-1 and latency) or ``top1`` (single objective, pruned by
            Optuna's MedianPruner from the proxy's per-epoch top-1).
        latency_mode: ``eager``, ``fused`` (BN folded, the papers' deploy form), ``compile`` or
            ``cuda-graph`` (see :mod:`explore.protocols`); None (default) takes ``fused`` on the CPU
            and ``cuda-graph`` on CUDA, where graph replay removes the host's kernel-launch cost that
            would otherwise be timed for small models (see :data:`DEFAULT_LATENCY_MODE`).
        train_threads: CPU threads of proxy training; None (default) takes the cores free at the start
            of each trial (:func:`training_threads`). Results on the CPU are reproducible for the same
            seed and the same number of training threads (``proxy_threads`` on every trial).
        remeasure_front: at the end, measure the Pareto trials' latency again until the front
            holds only re-measured trials (:func:`remeasure_front`).
        devices: CUDA device indices the workers use, worker i on ``cuda:devices[i % len]``
            (None: every worker on ``device``). Workers that share a device never time it while
            another trains on it (:func:`explore.device.device_lock`).
        workers: processes started on this machine, each running trials against the storage.
        heartbeat_s: seconds between heartbeats of a RUNNING trial; after 3x that without one the
            trial is stale (its process died): FAIL, and its parameters are retried.
    """

    space: str = "cga"
    study_name: str = "cga"
    trials: int = 8
    out: str = "runs"
    storage: str | None = None
    dataset: str = "fashion_mnist"
    data_root: str | None = None
    max_train: int | None = 10000
    max_val: int | None = 2000
    device: str = "cpu"
    seed: int = 0
    sampler: str = "tpe"
    epochs: float = 2.0
    batch_size: int = 128
    lr: float = 2e-3
    latency_batch: int | None = None
    latency_threads: int | None = 1
    latency_repeats: int = 20
    latency_mode: str | None = None
    objective: str = "pareto"
    workers: int = 1
    devices: tuple[int, ...] | None = None
    remeasure_front: bool = True
    train_threads: int | None = None
    heartbeat_s: int = DEFAULT_HEARTBEAT_S

    def latency_protocol(self, img_size: int = 224, in_chans: int = 3) -> Protocol:
        """The latency protocol of this study's trials: ``cpu-latency`` on CPU, ``gpu-throughput``
        on CUDA, with the study's batch, threads, repeats and mode."""
        on_cuda = self.device.startswith("cuda")
        name = "gpu-throughput" if on_cuda else "cpu-latency"
        return get_protocol(name, device=self.device, batch_size=self.latency_batch, img_size=img_size,
                            in_chans=in_chans, threads=self.latency_threads, repeats=self.latency_repeats,
                            warmup=_LATENCY_WARMUP, mode=self.resolved_latency_mode)

    @property
    def resolved_latency_mode(self) -> str:
        """``latency_mode``, or the device's default (:data:`DEFAULT_LATENCY_MODE`)."""
        if self.latency_mode is not None:
            return self.latency_mode
        return DEFAULT_LATENCY_MODE["cuda" if self.device.startswith("cuda") else "cpu"]

    def worker_device(self, index: int) -> str:
        """The device of worker ``index``: ``cuda:<devices[index % len(devices)]>`` where ``devices``
        is set, else ``device``."""
        if not self.devices:
            return self.device
        return f"cuda:{self.devices[index % len(self.devices)]}"

    @property
    def run_dir(self) -> Path:
        """The run folder: ``<out>/<study_name>``."""
        return Path(self.out) / self.study_name

    @property
    def storage_url(self) -> str:
        """The storage in use: ``storage``, else the run folder's (see :func:`default_storage`)."""
        return self.storage or default_storage(self.run_dir, self.workers)

    def validate(self) -> None:
        """Check the settings that can be checked without side effects.

        Raises:
            ExploreError: a bad study name, trial count, sampler, budget, worker count or storage
                (names the option).
        """
        if not _NAME_RE.match(self.study_name):
            raise ExploreError("--study-name", self.study_name,
                               "expected 1-100 letters, digits, '.', '_' or '-', not starting with '.', '_' or '-'")
        if self.trials < 1:
            raise ExploreError("--trials", self.trials, "expected >= 1")
        if self.sampler not in SAMPLERS:
            raise ExploreError("--sampler", self.sampler, f"expected one of {', '.join(SAMPLERS)}")
        if not self.epochs > 0:
            raise ExploreError("--epochs", self.epochs, "expected > 0")
        if self.objective not in OBJECTIVE_MODES:
            raise ExploreError("--objective", self.objective, f"expected one of {', '.join(OBJECTIVE_MODES)}")
        if self.latency_batch is not None and self.latency_batch < 1:
            raise ExploreError("--latency-batch", self.latency_batch, "expected >= 1")
        try:
            self.latency_protocol()  # raises for an unknown mode or one the device cannot run
        except ExploreError as exc:  # name the study's option, not the protocol's parameter
            option = _PROTOCOL_OPTIONS.get(exc.field, exc.field)
            raise type(exc)(option, exc.value, exc.expected) from None
        if self.latency_repeats < 2:
            raise ExploreError("--latency-repeats", self.latency_repeats, "expected >= 2")
        if not 1 <= self.workers <= _MAX_WORKERS:
            raise ExploreError("--workers", self.workers, f"expected 1 to {_MAX_WORKERS}")
        if self.devices is not None:
            if not self.device.startswith("cuda"):
                raise ExploreError("--devices", ",".join(map(str, self.devices)), "needs --device cuda")
            if not self.devices or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in self.devices):
                raise ExploreError("--devices", self.devices, "expected CUDA device indices, e.g. 0,1,2,3")
        if self.train_threads is not None and (isinstance(self.train_threads, bool) or self.train_threads < 1):
            raise ExploreError("--train-threads", self.train_threads, "expected >= 1, or 0 for the free cores")
        if self.heartbeat_s < 1:
            raise ExploreError("--heartbeat-interval", self.heartbeat_s, "expected >= 1 (seconds)")
        if self.storage is not None and not self.storage.strip():
            raise ExploreError("--storage", self.storage, "expected an Optuna storage URL or a journal file path")
        url = self.storage_url
        if self.workers > 1 and url.startswith("sqlite"):
            raise ExploreError("--workers", self.workers,
                               f"{mask_password(url)} is SQLite, which takes one writer at a time: use "
                               "--workers 1, another --study-name (a journal file), or --storage postgresql://...")


def default_storage(run_dir: Path, workers: int = 1) -> str:
    """The storage of a run folder: its ``journal.log`` or ``study.db`` if one exists, else a new
    journal file for ``workers > 1`` and a new SQLite file otherwise.

    Returns:
        A journal file path (``<run_dir>/journal.log``) or ``sqlite:///<run_dir>/study.db``.
    """
    journal, sqlite = run_dir / "journal.log", run_dir / "study.db"
    if journal.is_file() or (workers > 1 and not sqlite.is_file()):
        return journal.as_posix()
    return f"sqlite:///{sqlite.as_posix()}"


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """A sampler whose random draws for trial number k depend only on (``seed``, k).

    Optuna samplers are seeded once, when they are built: every process that builds one with the
    same seed replays the same random sequence from its start, so a resumed run, or a second process
    on the same storage, draws again the points the first one drew. This wrapper builds a fresh
    inner sampler for each trial, seeded with :meth:`trial_seed` of the study seed and the trial's
    number. Trial numbers are unique in a study (Optuna assigns them in the storage under a lock),
    so every trial gets its own random stream, whichever process runs it and whenever: a resumed
    run goes on where the first one stopped, and processes that share a storage need no distinct
    seeds. Trial k draws the same parameters for the same seed and the same trials in the study
    when it samples (so one process, or one resumed in steps, draws the same parameters trial by
    trial for the same seed and objective values).

    Nothing is lost by rebuilding the inner sampler: Optuna's TPE (multivariate, constant liar),
    NSGA-II and random samplers read the study's trials (and NSGA-II its generations, kept in the
    storage) on every draw; what their instances hold besides the random state are caches.

    Args:
        factory: builds the inner sampler from an integer seed (0 <= seed < 2**32).
        seed: the study seed (any integer).
    """

    def __init__(self, factory: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._factory = factory
        self._seed = seed
        self._inner: dict[int, optuna.samplers.BaseSampler] = {}  # trial number -> its sampler

    @staticmethod
    def trial_seed(seed: int, number: int) -> int:
        """The inner sampler's seed for trial ``number`` of a study seeded with ``seed``.

        Returns:
            An integer in [0, 2**32), mixed from both (numpy's ``SeedSequence``), so that nearby
            (seed, number) pairs give unrelated streams.
        """
        sequence = np.random.SeedSequence([seed % 2**64, number])
        return int(sequence.generate_state(1, dtype=np.uint32)[0])

    def _for(self, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        inner = self._inner.get(trial.number)
        if inner is None:
            inner = self._inner[trial.number] = self._factory(self.trial_seed(self._seed, trial.number))
        return inner

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Build the trial's inner sampler (seeded from the study seed and ``trial.number``)."""
        self._inner.pop(trial.number, None)
        self._for(trial).before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, optuna.distributions.BaseDistribution]:
        """The trial's inner sampler's relative search space."""
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, optuna.distributions.BaseDistribution]) -> dict[str, Any]:
        """The trial's inner sampler's relative sample."""
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: optuna.distributions.BaseDistribution) -> Any:
        """The trial's inner sampler's independent sample."""
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        """The inner sampler's post-processing; then the trial's inner sampler is dropped."""
        self._for(trial).after_trial(study, trial, state, values)
        self._inner.pop(trial.number, None)

    def reseed_rng(self) -> None:
        """Nothing to do: every trial already has its own seed (Optuna calls this for ``n_jobs > 1``)."""


def _make_sampler(settings: StudySettings) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded per trial (see :class:`TrialSeededSampler`)."""

    def build(seed: int) -> optuna.samplers.BaseSampler:
        if settings.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        if settings.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=8, constant_liar=True)

    return TrialSeededSampler(build, settings.seed)


@dataclass(frozen=True)
class StudySummary:
    """Counts at the end of a run: states over the whole study, and the wall time of this run (s).

    Attributes:
        running: trials still RUNNING at the end (a dead process's, before its heartbeat is stale).
        workers: processes that ran trials in this run.
        workers_failed: of those, how many exited abnormally (killed, crashed).
        note: why the run ended short of ``trials`` COMPLETE trials, where it knows (the space ran
            out of new architectures); empty otherwise.
        remeasured: Pareto trials whose latency this run measured again (:func:`remeasure_front`).
    """

    study_name: str
    run_dir: str
    storage: str
    complete: int
    pruned: int
    failed: int
    wall_seconds: float
    running: int = 0
    workers: int = 1
    workers_failed: int = 0
    note: str = ""
    remeasured: tuple[int, ...] = ()


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
    check_dataset(settings.dataset, settings.data_root)
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
                                   directions=list(_DIRECTIONS), sampler=sampler, load_if_exists=True)
    except ValueError as exc:  # e.g. an existing study of the same name with other directions
        raise ExploreError("--study-name", settings.study_name, scrub(str(exc), settings.storage)) from None


def _check_resume(study: optuna.Study, settings: StudySettings, space: SearchSpace,
                  data_info: dict[str, Any] | None = None) -> None:
    """A resumed study must keep its space and data; other settings may change (and are recorded).

    A new study stores ``settings``, ``space_name``, ``space_file`` (a relative path, see
    :func:`explore.resources.display_path`) and ``dataset_info`` (:func:`explore.data.dataset_info`).

    Raises:
        ExploreError: the resumed study ran with another space, dataset, subset or classes.
    """
    stored = study.user_attrs.get("settings")
    if stored is None:
        with warnings.catch_warnings():  # set_metric_names is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(OBJECTIVES) if settings.objective == "pareto" else ["top1"])
        stored = asdict(settings)
        if stored["storage"]:
            stored["storage"] = mask_password(stored["storage"])
        study.set_user_attr("settings", stored)
        study.set_user_attr("space_name", space.name)
        study.set_user_attr("space_file", display_path(space.path, "search_spaces"))
        if data_info is not None:
            study.set_user_attr("dataset_info", data_info)
        return
    for key in ("dataset", "max_train", "max_val"):
        if stored.get(key) != getattr(settings, key):
            raise ExploreError(f"--{key.replace('_', '-')}", getattr(settings, key),
                               f"study {settings.study_name!r} was run with {stored.get(key)!r}; "
                               "use another --study-name for a different setting")
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


def _count(study: optuna.Study, state: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=(state,)))


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --------------------------------------------------------------------------------------------------
# faults
def _injected_fault(trial_number: int) -> str | None:
    """The fault-injection hook: the kind of fault ``EXPLORE_INJECT_FAULTS`` sets for this trial."""
    spec = os.environ.get(FAULTS_ENV, "")
    for item in spec.split(","):
        kind, _, number = item.strip().partition("@")
        if kind in _FAULT_KINDS and number.strip().isdigit() and int(number) == trial_number:
            return kind
    return None


def _inject(kind: str, model: torch.nn.Module) -> None:
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "oom":
        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 20.00 GiB (injected by {FAULTS_ENV})")
    if kind == "error":
        raise RuntimeError(f"injected fault ({FAULTS_ENV})")
    if kind == "nan":
        with torch.no_grad():
            for param in model.parameters():
                param.fill_(float("nan"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _same_architecture(study: optuna.Study, number: int, config_hash: str) -> int | None:
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


# --------------------------------------------------------------------------------------------------
# the objective
def make_objective(space: SearchSpace, data: DatasetBundle, settings: StudySettings, device: Any,
                   *, train_seed: int | None = None) -> Callable[[optuna.Trial], tuple[float, float]]:
    """The Optuna objective: surplus check -> sample -> validate -> duplicate check -> build ->
    params/MACs -> latency (cached per config and protocol) -> proxy top-1.

    Args:
        space, data, settings, device: what to sample, train on, and measure with.
        train_seed: trial k trains with ``train_seed + k`` (default ``settings.seed``).

    Raises (inside the trial, handled by Optuna):
        optuna.TrialPruned: surplus trial, infeasible point, duplicate (an architecture that another
            trial of the study holds COMPLETE or RUNNING: ``duplicate: same architecture as trial
            #k``, nothing built), out of memory or non-finite training loss (reason stored on the
            trial as ``pruned_reason``).
    """
    recipe = ProxyRecipe(epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr)
    base_seed = settings.seed if train_seed is None else train_seed

    def objective(trial: optuna.Trial) -> tuple[float, float] | float:
        study = trial.study
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        ahead = sum(1 for t in trials if t.state == TrialState.COMPLETE or t.number < trial.number)
        if ahead >= settings.trials:
            reason = (f"surplus: {settings.trials} trials are complete or running ahead of this one "
                      "(another worker started at the same time)")
            trial.set_user_attr("pruned_reason", reason)
            raise optuna.TrialPruned(reason)
        trial.set_user_attr("worker", _worker_id())
        try:
            config = space.sample(trial, in_chans=data.in_chans, num_classes=data.num_classes)
        except ConfigError as exc:
            trial.set_user_attr("pruned_reason", f"infeasible: {exc}")
            raise optuna.TrialPruned(str(exc)) from None
        trial.set_user_attr("config_hash", config.config_hash())  # before the check: see _same_architecture
        original = _same_architecture(study, trial.number, config.config_hash())
        if original is not None:
            reason = f"{_DUPLICATE}: same architecture as trial #{original}"
            trial.set_user_attr("pruned_reason", reason)
            raise optuna.TrialPruned(reason)
        oom = None
        try:
            return _measure_and_train(trial, config)
        except NonFiniteLossError as exc:
            trial.set_user_attr("pruned_reason", f"non-finite loss: {exc}")
            raise optuna.TrialPruned(str(exc)) from None
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            oom = _first_line(exc)
        release_memory()  # the failed trial's tensors are unreachable once the except block is left
        trial.set_user_attr("pruned_reason", f"out of memory: {oom}")
        raise optuna.TrialPruned(f"out of memory: {oom}")

    def _measure_and_train(trial: optuna.Trial, config: ArchConfig) -> tuple[float, float] | float:
        trial.set_user_attr("config", config.to_json(sort_keys=True))
        seed = base_seed + trial.number
        seed_everything(seed)
        model = build(config)
        trial.set_user_attr("params", count_params(model))
        trial.set_user_attr("macs", count_macs(model, config.img_size, config.in_chans))
        latency_attrs = _latency(trial, model, config)
        for key, value in latency_attrs.items():
            trial.set_user_attr(key, value)
        fault = _injected_fault(trial.number)
        if fault:
            _inject(fault, model)
        report = _pruning_report(trial) if settings.objective == "top1" else None
        threads = torch.get_num_threads()
        if torch.device(device).type == "cpu":
            torch.set_num_threads(settings.train_threads or training_threads(settings.workers))
            trial.set_user_attr("proxy_threads", torch.get_num_threads())
        try:
            with device_lock(device, exclusive=False), on_device(device):  # no worker times this device meanwhile
                result = train_proxy(model, data, img_size=config.img_size, recipe=recipe, device=str(device),
                                     seed=seed, on_epoch_end=report)
        finally:
            torch.set_num_threads(threads)
        for key, value in asdict(result).items():
            trial.set_user_attr(f"proxy_{key}", value)
        if settings.objective == "top1":
            return result.top1
        return result.top1, float(latency_attrs["latency_ms_per_img"])

    def _pruning_report(trial: optuna.Trial) -> Callable[[int, float], None]:
        """Report each epoch's top-1 to Optuna; stop the trial when the pruner says so."""

        def report(epoch: int, top1: float) -> None:
            trial.report(top1, epoch)
            if trial.should_prune():
                reason = f"pruned by the median rule after epoch {epoch + 1} (top-1 {top1:.2f} %)"
                trial.set_user_attr("pruned_reason", reason)
                raise optuna.TrialPruned(reason)

        return report

    def _latency(trial: optuna.Trial, model: torch.nn.Module, config: ArchConfig) -> dict[str, Any]:
        cache = LatencyCache(trial.study)
        protocol = settings.latency_protocol(config.img_size, config.in_chans)
        key = LatencyKey(config_hash=config.config_hash(), batch_size=protocol.batch_size,
                         threads=settings.latency_threads, warmup=_LATENCY_WARMUP,
                         repeats=settings.latency_repeats, device=device_name(str(device)),
                         protocol=protocol.name, mode=protocol.mode)
        entry = cache.get(key)
        if entry is not None:
            return {**entry["attrs"], "latency_cached": True,
                    "latency_measured_by_trial": entry.get("measured_by_trial")}
        with device_lock(device, exclusive=True):  # waits until no worker of this machine trains on the device
            result = measure(model, protocol)
        attrs = result.as_attrs()
        cache.put(key, attrs, trial_number=trial.number, worker=_worker_id())
        if result.batch_size != key.batch_size:  # halved after out of memory: also file it under what was timed
            cache.put(dataclasses.replace(key, batch_size=result.batch_size), attrs, trial_number=trial.number,
                      worker=_worker_id())
        return {**attrs, "latency_cached": False, "latency_measured_by_trial": trial.number}

    return objective


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


def _with_failure_reason(objective: Callable[[optuna.Trial], Any], storage: str | None) -> Callable[[optuna.Trial], Any]:
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


# --------------------------------------------------------------------------------------------------
# running: one worker loop, many workers
def _fail_stale(study: optuna.Study, heartbeat_s: int = DEFAULT_HEARTBEAT_S) -> None:
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
            if "worker" in trial.user_attrs or started is None or (now - started).total_seconds() < orphan_age:
                continue
            try:
                failed = study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker got there first
            if failed:
                RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, trial)


def _work(study: optuna.Study, objective: Callable[[optuna.Trial], Any], settings: StudySettings,
          on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> None:
    """Run trials until ``settings.trials`` are COMPLETE (never more; see the module docstring).

    Pruned (infeasible, duplicate) trials are cheap; the attempts of one call are capped at 50x the
    missing COMPLETE trials so that a space with no feasible point ends, and the call ends after
    ``_DUPLICATE_STREAK`` duplicates in a row, so that a space with fewer distinct feasible
    architectures than ``settings.trials`` ends (see :func:`_exhausted_note`).
    """
    streak = 0

    def count_duplicates(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal streak
        reason = trial.user_attrs.get("pruned_reason", "")
        if reason.startswith(_DUPLICATE):
            streak += 1
        elif not reason.startswith("surplus"):
            streak = 0

    callbacks = [count_duplicates] + ([on_trial] if on_trial is not None else [])
    wrapped = _with_failure_reason(objective, settings.storage)
    attempts, cap = 0, 50 * max(1, settings.trials - _count(study, TrialState.COMPLETE))
    while attempts < cap and streak < _DUPLICATE_STREAK:
        _fail_stale(study, settings.heartbeat_s)  # dead processes' trials: FAIL and re-queued
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        complete = sum(1 for t in trials if t.state == TrialState.COMPLETE)
        if complete >= settings.trials:
            return
        if len(trials) >= settings.trials:  # the rest is running elsewhere; stay to take over on failure
            time.sleep(_POLL_S)
            continue
        study.optimize(wrapped, n_trials=1, callbacks=callbacks, catch=(Exception,))
        attempts += 1


def _exhausted_note(study: optuna.Study, settings: StudySettings) -> str:
    """Why a run ended short of ``settings.trials``: when its last trials (by number, skipping
    surplus ones) are ``_DUPLICATE_STREAK`` or more duplicates, the space has (nearly) run out of new
    architectures. Empty otherwise."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) >= settings.trials:
        return ""
    streak = 0
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number, reverse=True):
        reason = trial.user_attrs.get("pruned_reason", "")
        if not trial.state.is_finished() or reason.startswith("surplus"):
            continue
        if not reason.startswith(_DUPLICATE):
            break
        streak += 1
    if streak < _DUPLICATE_STREAK:
        return ""
    distinct = len({t.user_attrs.get("config_hash") for t in complete})
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
        data = load_dataset(settings.dataset, settings.data_root, max_train=settings.max_train,
                            max_val=settings.max_val, seed=settings.seed)
        study = _open(settings, _make_sampler(settings))
        objective = make_objective(space, data, settings, device, train_seed=_train_seed(study, settings))
        _work(study, objective, settings)
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
              on_remeasure: Callable[[int, float, float], None] | None = None) -> StudySummary:
    """Run (or resume) a study until ``settings.trials`` trials are COMPLETE.

    With ``settings.workers > 1`` it starts that many worker processes (``spawn``) on the shared
    storage and reports their trials; otherwise it runs the trials itself.

    Args:
        settings: the run's settings.
        on_trial: called after every finished trial (progress display).
        prepared: the result of :func:`prepare_study` if the caller already validated.
        on_data: called once the data is loaded, before anything is written, with
            :func:`explore.data.dataset_info` (classes, split sizes, where the splits came from).
        on_remeasure: called after each end-of-study re-measurement of a Pareto trial (see
            :func:`remeasure_front`; ``settings.remeasure_front``).

    Returns:
        :class:`StudySummary`.

    Raises:
        ExploreError: bad input, before anything is written; or a storage that cannot be opened.
    """
    space, device = prepared or prepare_study(settings)
    start = time.perf_counter()
    workers_failed = 0
    data = load_dataset(settings.dataset, settings.data_root, max_train=settings.max_train,
                        max_val=settings.max_val, seed=settings.seed)
    info = dataset_info(data)
    if on_data is not None:
        on_data(info)
    if settings.workers > 1:
        del data  # each worker loads its own copy
        study = _open(settings, _make_sampler(settings))
        _check_resume(study, settings, space, info)
        if _count(study, TrialState.COMPLETE) < settings.trials:
            workers_failed = _run_workers(study, settings, on_trial)
    else:
        study = _open(settings, _make_sampler(settings))
        _check_resume(study, settings, space, info)
        objective = make_objective(space, data, settings, device, train_seed=_train_seed(study, settings))
        _work(study, objective, settings, on_trial)
    remeasured = []
    if settings.remeasure_front and settings.objective == "pareto" and _count(study, TrialState.COMPLETE) >= settings.trials:
        remeasured = remeasure_front(study, device, on_remeasure)
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
    )


def _trial_protocol(attrs: dict[str, Any], device: torch.device) -> Protocol:
    """The latency protocol a trial was measured with (from its ``latency_protocol_*`` attributes), on ``device``."""
    fields = {f.name for f in dataclasses.fields(Protocol)}
    stored = {k[len("latency_protocol_"):]: v for k, v in attrs.items() if k.startswith("latency_protocol_")}
    stored = {k: v for k, v in stored.items() if k in fields}
    return dataclasses.replace(Protocol(**stored), device=str(device))


def remeasure_front(study: optuna.Study, device: Any,
                    on_remeasure: Callable[[int, float, float], None] | None = None) -> list[int]:
    """Measure the latency of the study's Pareto trials again, until the front holds only re-measured trials.

    A trial's latency was measured once, at whatever moment its trial ran; on a shared machine one
    figure can be off. Each Pareto trial measured on this device model is rebuilt from its config and
    measured again with its own protocol (under the device's exclusive lock); the result is stored as
    the study attribute ``latency_remeasured:<number>``, and :func:`trials_frame` takes the lower of
    the two figures and recomputes the front, which may bring in trials not yet re-measured: those
    are measured next. Trials measured on another device model (another machine of a PostgreSQL
    study) are left alone.

    Args:
        study: the study.
        device: the torch device to measure on.
        on_remeasure: called with (trial number, first ms/img, re-measured ms/img) after each.

    Returns:
        The numbers of the trials re-measured by this call.
    """
    dev = torch.device(device)
    here = device_model_name(dev)
    done = set(remeasured_latencies(study))
    measured = []
    while True:
        frame = trials_frame(study)
        front = frame[frame["pareto"] & ~frame["number"].isin(done)] if not frame.empty else frame
        todo = [int(n) for n, name in zip(front.get("number", []), front.get("latency_device_name", []))
                if name == here]
        if not todo:
            return measured
        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        for number in todo:
            attrs = trials[number].user_attrs
            config = ArchConfig.from_json(attrs["config"])
            with device_lock(dev, exclusive=True):
                result = measure(build(config), _trial_protocol(attrs, dev))
            study.set_user_attr(f"{REMEASURED_PREFIX}{number}", {
                "ms_per_img": result.latency_ms_per_img, "median_ms": result.median_ms, "iqr_ms": result.iqr_ms,
                "batch_size": result.batch_size, "contended": result.contended,
                "contention_ratio": result.contention_ratio, "measured_by": _worker_id(), "at": time.time()})
            done.add(number)
            measured.append(number)
            if on_remeasure is not None:
                on_remeasure(number, float(trials[number].values[1]), result.latency_ms_per_img)


# --------------------------------------------------------------------------------------------------
# reading results
def open_study(study: str, storage: str | None = None) -> optuna.Study:
    """Open an existing study for reading: a run folder (``runs/cga``, holding ``study.db`` or
    ``journal.log``) or a study name with ``storage`` (URL or journal file).

    Raises:
        ExploreError: no such run folder, storage or study (messages carry no password).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is None:
        run_dir = Path(study)
        if not ((run_dir / "study.db").is_file() or (run_dir / "journal.log").is_file()):
            raise ExploreError("STUDY", study, "expected a run folder holding study.db or journal.log (e.g. runs/cga), "
                                               "or a study name with --storage URL")
        storage, name = default_storage(run_dir), None
    else:
        name = study
    if not is_journal(storage) and storage.startswith("sqlite:///"):
        db = Path(storage[len("sqlite:///"):])
        if not db.is_file():  # SQLAlchemy would create an empty database
            raise ExploreError("--storage", storage, "no such SQLite file")
    backend = make_storage(storage, create_journal=False)
    try:
        if name is None:
            summaries = optuna.get_all_study_summaries(backend)
            if len(summaries) != 1:
                raise ExploreError("STUDY", study, f"the storage holds {len(summaries)} studies; name one with --storage")
            name = summaries[0].study_name
        return optuna.load_study(study_name=name, storage=backend)
    except KeyError:
        raise ExploreError("STUDY", study, f"no such study in {mask_password(storage)}") from None


def _retries(study: optuna.Study) -> dict[int, int]:
    """Original trial number -> the number of its (last) retry."""
    out = {}
    for t in study.get_trials(deepcopy=False):
        original = t.system_attrs.get("failed_trial")
        if original is not None:
            out[int(original)] = t.number
    return out


def _non_dominated(top1: list[float], latency: list[float]) -> list[bool]:
    """Pareto-optimal points of (top-1 up, latency down): no other point at least as good in both
    and better in one."""
    out = []
    for i, (a, la) in enumerate(zip(top1, latency)):
        out.append(not any((b >= a and lb <= la) and (b > a or lb < la)
                           for j, (b, lb) in enumerate(zip(top1, latency)) if j != i))
    return out


def remeasured_latencies(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """Trial number -> its front re-measurement (``ms_per_img``, ``contended``, ...; see
    :func:`remeasure_front`), from the study attributes ``latency_remeasured:<number>``."""
    out = {}
    for key, value in study.user_attrs.items():
        if key.startswith(REMEASURED_PREFIX) and isinstance(value, dict):
            out[int(key[len(REMEASURED_PREFIX):])] = value
    return out


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, objectives, params (count), MACs, latency and its spread,
    proxy figures, reasons, the config (JSON) and the sampled knobs (``p.<name>`` columns).

    Columns ``top1`` (%) and ``latency_ms`` (ms per image) are NaN for trials that did not complete.
    ``latency_ms`` is the trial's latency objective, or, for a trial whose latency was measured
    again at the end of the study (:func:`remeasure_front`), the lower of the two figures
    (contention only slows a run down); ``latency_first_ms`` and ``latency_remeasured_ms`` keep both.
    ``pareto`` is True for the Pareto-optimal COMPLETE trials on (``top1``, ``latency_ms``)
    (single-objective studies: the best trial). ``retry_of`` names the trial a retried trial
    re-runs; a FAIL trial whose process died gets a ``fail_reason`` saying so.
    """
    remeasured = remeasured_latencies(study)
    retries = _retries(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "top1": t.values[0] if t.values else float("nan"),
            "latency_ms": (t.values[1] if len(t.values) > 1 else attrs.get("latency_ms_per_img", float("nan")))
            if t.values else float("nan"),
            "pareto": False,
            "params": attrs.get("params"),
            "macs": attrs.get("macs"),
        }
        for key in sorted(attrs):
            if key not in row and key != "config":
                row[key] = attrs[key]
        if t.state == TrialState.FAIL and not attrs.get("fail_reason"):
            again = f"retried as #{retries[t.number]}" if t.number in retries else "not retried"
            row["fail_reason"] = f"stale: its process stopped sending heartbeats (killed or lost); {again}"
        original = t.system_attrs.get("failed_trial")
        row["retry_of"] = int(original) if original is not None else None
        config = attrs.get("config")
        row["summary"] = ArchConfig.from_json(config).summary() if config else ""
        row["config"] = config
        row["duration_s"] = t.duration.total_seconds() if t.duration else float("nan")
        row.update({f"p.{k}": v for k, v in t.params.items()})
        if t.values and len(t.values) > 1:
            row["latency_first_ms"] = row["latency_ms"]
            again = remeasured.get(t.number)
            if again is not None:
                row["latency_remeasured_ms"] = float(again["ms_per_img"])
                row["latency_remeasured_contended"] = again.get("contended")
                row["latency_ms"] = min(row["latency_first_ms"], row["latency_remeasured_ms"])
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.sort_values("number").reset_index(drop=True)
    complete = frame["state"] == "COMPLETE"
    if complete.any():
        if len(study.directions) > 1:
            done = frame[complete]
            flags = _non_dominated(done["top1"].astype(float).tolist(), done["latency_ms"].astype(float).tolist())
            frame.loc[done.index, "pareto"] = flags
        else:
            frame["pareto"] = frame["number"].isin({t.number for t in study.best_trials})
    return frame


def study_meta(study: optuna.Study) -> dict[str, Any]:
    """The study's stored settings, space and data (for report headers); ``dataset_info`` is None
    for studies made before it was stored."""
    return {
        "study_name": study.study_name,
        "space_name": study.user_attrs.get("space_name"),
        "space_file": study.user_attrs.get("space_file"),
        "settings": json.loads(json.dumps(study.user_attrs.get("settings", {}))),
        "dataset_info": study.user_attrs.get("dataset_info"),
    }


def study_space(study: optuna.Study, run_dir: str | Path | None = None) -> SearchSpace:
    """The search space a study ran with, loaded from its stored ``space_file``.

    The stored name is tried as a built-in file (``search_spaces/cga.toml``) or a path from the
    current folder, then relative to ``run_dir`` and each folder above it (a user's file named
    relative to the folder the study was started from); studies of older versions stored
    absolute paths, which are tried as they are.

    Args:
        study: an opened study.
        run_dir: its run folder, when it has one (``runs/cga``).

    Raises:
        SpaceError: field ``space_file``: none stored, or no file found under that name (or the
            file is no longer a valid space).
    """
    ref = study.user_attrs.get("space_file")
    if not ref:
        raise SpaceError("space_file", None, f"study {study.study_name!r} stores no space file")
    candidates = [Path(ref)]
    if run_dir is not None and not Path(ref).is_absolute():
        base = Path(run_dir).resolve()
        candidates += [folder / ref for folder in (base, *base.parents)]
    for candidate in candidates:
        if candidate.is_file():
            return load_space(candidate)
    try:
        return load_space(ref)  # a built-in file named as search_spaces/<name>.toml
    except SpaceError:
        raise SpaceError("space_file", ref, f"study {study.study_name!r} names this space file, which is not "
                                            "found from here nor beside its run folder") from None
