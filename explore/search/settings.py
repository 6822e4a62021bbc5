"""What a study runs with: its settings (stored on the study) and the summary of a run."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from explore.errors import ExploreError
from explore.evaluate import RunBudget
from explore.measure import Protocol, get_protocol
from explore.search.schedule import Schedule
from explore.search.storage import DEFAULT_HEARTBEAT_S, check_driver, default_storage, mask_password

__all__ = ["TASKS", "TASK_DEFAULTS", "OBJECTIVE_MODES", "OBJECTIVES", "DIRECTIONS", "SAMPLERS", "LATENCY_WARMUP", "DEFAULT_LATENCY_MODE",
           "StudySettings", "StudySummary"]

TASKS = ("classification", "segmentation")
"""``classification``: proxy top-1 (%); ``segmentation``: proxy mIoU (%) with the MIT head, at ``seg_size``."""
OBJECTIVE_MODES = ("pareto", "top1")
"""``pareto``: maximise top-1 and minimise latency (the default); ``top1``: maximise top-1 only,
with Optuna's MedianPruner stopping trials whose per-epoch top-1 falls behind (latency is still
measured and stored)."""
OBJECTIVES = ("top1", "latency_ms")
"""Metric names, in Optuna's order: top-1 (%, maximise) and latency (ms, minimise)."""
DIRECTIONS = ("maximize", "minimize")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SAMPLERS = ("tpe", "nsga2", "random")
LATENCY_WARMUP = 5
"""Untimed runs before a study's latency repeats."""
DEFAULT_LATENCY_MODE = {"cpu": "fused", "cuda": "cuda-graph"}
"""The study's latency mode when ``--latency-mode`` is not given, by device type. On the CPU, the
papers' deploy form (BN folded, eager). On CUDA, the same fused model replayed as a CUDA graph: the
small models a study samples, at its small resolutions, spend much of an eager pass launching
kernels, so an eager figure would rank the host's launch overhead; a replayed graph times the GPU's
work, as a deployed (graph-captured or TensorRT) model runs."""
TASK_DEFAULTS: dict[str, dict[str, object]] = {
    "segmentation": {"dataset": "fashion_scenes", "max_train": 1000, "max_val": 200, "batch_size": 16},
}
"""The budget defaults of a task where they differ from the fields' own (classification's):
segmentation trains on 1000 composed scenes (200 held out) in batches of 16."""
_PROTOCOL_OPTIONS = {"--mode": "--latency-mode", "--batch-size": "--latency-batch", "--repeats": "--latency-repeats"}
"""get_protocol's field names -> the study options that set them."""
_MAX_WORKERS = 64


@dataclass(frozen=True, kw_only=True)
class StudySettings(RunBudget):
    """Everything a study run needs; stored on the study so that a resumed run can be checked.

    Attributes:
        space: space name or file (``cga`` or a path).
        study_name: Optuna study name; also the run folder name (letters, digits, ``._-``).
        trials: number of COMPLETE trials to reach (pruned/failed ones do not count).
        out: parent folder of run folders.
        storage: Optuna storage URL or journal file path; None -> ``<out>/<study_name>/study.db``
            (SQLite), or ``<out>/<study_name>/journal.log`` with ``workers > 1`` (see
            :func:`default_storage`).
        dataset, data_root, max_train, max_val: proxy data (the shared budget fields of
            :class:`explore.evaluate.RunBudget`; see :func:`explore.train.load_dataset`).
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
            ``cuda-graph`` (see :mod:`explore.measure.protocols`); None (default) takes ``fused`` on the CPU
            and ``cuda-graph`` on CUDA, where graph replay removes the host's kernel-launch cost that
            would otherwise be timed for small models (see :data:`DEFAULT_LATENCY_MODE`).
        latency_figure: the latency figure that ranks: ``normalised`` (the CPU default: every
            measurement interleaved with a reference model and scaled to its calibration, so a
            shared machine's slowdowns cancel) or ``raw`` (the wall time as timed); None takes the
            device's default (CUDA: ``raw``, the only figure there). Both are stored on the CPU.
        train_threads: CPU threads of proxy training; None (default): the cores this process may run
            on, shared by the workers (:func:`explore.search.training_threads`), a property of the
            machine, not of its momentary load. Results on the CPU are reproducible for the same seed
            and the same number of training threads (``proxy_threads`` on every trial).
        train_threads_from_load: with ``train_threads`` None, take the cores free at the start of
            each trial instead (faster beside other jobs; top-1 then depends on the load).
        remeasure_front: at the end, measure every COMPLETE trial's latency again, in interleaved
            rounds, and compute the front from the lower figures
            (:func:`~explore.search.results.remeasure_latencies`).
        devices: CUDA device indices the workers use, worker i on ``cuda:devices[i % len]``
            (None: every worker on ``device``). Workers that share a device never time it while
            another trains on it (:func:`explore.device.device_lock`).
        workers: processes started on this machine, each running trials against the storage.
        heartbeat_s: seconds between heartbeats of a RUNNING trial; after 3x that without one the
            trial is stale (its process died): FAIL, and its parameters are retried.
        latency_table: a latency table file (``explore latency-table``): the latency objective is
            the table's prediction for its device and protocol, and nothing is timed here
            (:mod:`explore.measure.latency_table`).
        max_latency_ms: a latency budget (ms/img, predicted with a table, else measured): a trial
            over it is PRUNED before training, and its excess is stored as an Optuna constraint
            (``Trial.set_constraint``). TPE steers away from the pruned draws (it counts PRUNED trials
            among the bad ones; the constraint changes nothing more for it); NSGA-II builds its
            populations from COMPLETE trials only, so with it the budget saves the training and no more.
        schedule, rungs, eta: multi-fidelity training (:mod:`explore.search.schedule`): ``full``
            trains every architecture for ``epochs``; ``sha`` / ``hyperband`` train to the rungs
            (cumulative epochs, the last one ``epochs``; None: ``epochs / eta**2, epochs / eta,
            epochs``) and promote about one in ``eta`` jobs per rung. With a schedule, ``trials``
            counts architectures started (first jobs), not COMPLETE jobs.
        task, seg_size: ``segmentation`` trains every architecture with the MIT segmentation head
            (``seg_head_width``, ``seg_head_depth``; ``task_config``) on scenes of ``seg_size``
            pixels (:func:`explore.train.load_segmentation`), and the first objective is mIoU (%);
            latency is measured at ``seg_size``.
        supernet: a supernet folder (``explore supernet train --out``) of the same space: every trial
            is scored by inherited top-1 after BN recalibration instead of being trained, and the
            final front is trained on its own at the proxy budget (:mod:`explore.search.inherited`).
        recalibration_images: with ``supernet``, the training images each trial's BN statistics are
            recalibrated on (Once-for-All's 2,000).
    """

    space: str = "cga"
    study_name: str = "cga"
    trials: int = 8
    out: str = "runs"
    storage: str | None = None
    sampler: str = "tpe"
    latency_batch: int | None = None
    latency_threads: int | None = 1
    latency_repeats: int = 20
    latency_mode: str | None = None
    latency_figure: str | None = None
    objective: str = "pareto"
    workers: int = 1
    devices: tuple[int, ...] | None = None
    remeasure_front: bool = True
    train_threads: int | None = None
    train_threads_from_load: bool = False
    heartbeat_s: int = DEFAULT_HEARTBEAT_S
    latency_table: str | None = None
    max_latency_ms: float | None = None
    schedule: str = "full"
    rungs: tuple[float, ...] | None = None
    eta: int = 3
    supernet: str | None = None
    recalibration_images: int = 2000

    @classmethod
    def for_task(cls, **fields: object) -> StudySettings:
        """Settings from the fields a user gave (the others keep their defaults), with the defaults
        of the study's task: :data:`TASK_DEFAULTS` for the budget fields not given (segmentation's
        ``fashion_mnist`` is its composed scenes, ``fashion_scenes``), ``epochs`` the last of the
        ``rungs`` when only those are given, and ``study_name`` (None or not given) the space's
        file name without its suffix."""
        task = str(fields.get("task", "classification"))
        for name, value in TASK_DEFAULTS.get(task, {}).items():
            fields.setdefault(name, value)
        if task == "segmentation" and fields.get("dataset") == "fashion_mnist":
            fields["dataset"] = "fashion_scenes"  # the task's own form of the default data
        rungs = fields.get("rungs")
        if "epochs" not in fields and rungs:
            fields["epochs"] = float(rungs[-1])  # type: ignore[index]
        if fields.get("study_name") is None:
            fields["study_name"] = Path(str(fields.get("space", "cga"))).stem
        return cls(**fields)  # type: ignore[arg-type]

    @property
    def plan(self) -> Schedule:
        """The study's :class:`~explore.search.schedule.Schedule` (checked by :meth:`validate`)."""
        return Schedule.make(self.schedule, self.epochs, self.rungs, self.eta)

    def latency_protocol(self, img_size: int = 224, in_chans: int = 3) -> Protocol:
        """The latency protocol of this study's trials: ``cpu-latency`` on CPU, ``gpu-throughput``
        on CUDA, with the study's batch, threads, repeats, mode and figure."""
        on_cuda = self.device.startswith("cuda")
        name = "gpu-throughput" if on_cuda else "cpu-latency"
        return get_protocol(name, device=self.device, batch_size=self.latency_batch, img_size=img_size,
                            in_chans=in_chans, threads=self.latency_threads, repeats=self.latency_repeats,
                            warmup=LATENCY_WARMUP, mode=self.resolved_latency_mode, figure=self.latency_figure)

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
            raise ExploreError("--train-threads", self.train_threads, "expected >= 1, or 0 for the usable cores shared by the workers")
        if self.max_latency_ms is not None and not self.max_latency_ms > 0:
            raise ExploreError("--max-latency-ms", self.max_latency_ms, "expected a budget > 0 (ms per image)")
        if self.latency_table is not None and not Path(self.latency_table).is_file():
            raise ExploreError("--latency-table", self.latency_table, "no such latency table file")
        self.plan  # raises for a bad --schedule, --rungs or --eta
        if self.task not in TASKS:
            raise ExploreError("--task", self.task, f"expected one of {', '.join(TASKS)}")
        if self.task == "segmentation":
            if self.schedule != "full":
                raise ExploreError("--schedule", self.schedule, "--task segmentation trains each architecture in "
                                                                "one go: expected full")
            if self.seg_size < 16:
                raise ExploreError("--seg-size", self.seg_size, "expected >= 16 pixels")
            if self.seg_head_width < 1 or self.seg_head_depth < 0:
                field, value = (("--seg-head-width", self.seg_head_width) if self.seg_head_width < 1
                                else ("--seg-head-depth", self.seg_head_depth))
                raise ExploreError(field, value, "expected a width >= 1 and a depth >= 0")
        if self.schedule != "full" and self.objective != "pareto":
            raise ExploreError("--schedule", self.schedule, "needs --objective pareto (--objective top1 has its "
                                                            "median pruner)")
        if self.supernet is not None:
            for field, value, ok, need in (("--task", self.task, self.task == "classification", "classification"),
                                           ("--schedule", self.schedule, self.schedule == "full", "full"),
                                           ("--objective", self.objective, self.objective == "pareto", "pareto")):
                if not ok:
                    raise ExploreError(field, value, f"--supernet scores trials by inherited top-1 (no training): "
                                                     f"expected {need}")
            if isinstance(self.recalibration_images, bool) or self.recalibration_images < 1:
                raise ExploreError("--recalibration-images", self.recalibration_images, "expected >= 1 training image")
        if self.heartbeat_s < 1:
            raise ExploreError("--heartbeat-interval", self.heartbeat_s, "expected >= 1 (seconds)")
        if self.storage is not None and not self.storage.strip():
            raise ExploreError("--storage", self.storage, "expected an Optuna storage URL or a journal file path")
        if self.storage is not None:
            check_driver(self.storage)  # postgresql:// without its driver: say which extra to install
        url = self.storage_url
        if self.workers > 1 and url.startswith("sqlite"):
            raise ExploreError("--workers", self.workers,
                               f"{mask_password(url)} is SQLite, which takes one writer at a time: use "
                               "--workers 1, another --study-name (a journal file), or --storage postgresql://...")


@dataclass(frozen=True)
class StudySummary:
    """Counts at the end of a run: states over the whole study, and the wall time of this run (s).

    Attributes:
        running: trials still RUNNING at the end (a dead process's, before its heartbeat is stale).
        workers: processes that ran trials in this run.
        workers_failed: of those, how many exited abnormally (killed, crashed).
        note: why the run ended short of ``trials`` COMPLETE trials, where it knows (the space ran
            out of new architectures); empty otherwise.
        remeasured: trials whose latency this run measured again at the end (:func:`~explore.search.results.remeasure_latencies`).
        architectures: COMPLETE architectures (= ``complete`` without a schedule; with one, the
            COMPLETE first jobs: promotions are further jobs of the same architectures).
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
    architectures: int = 0
