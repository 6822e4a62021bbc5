"""The record of a trial: every attribute a study's trial stores, with its unit; written and read here only.

A study keeps what each of its trials found as Optuna user attributes (name -> JSON value) in its
storage (SQLite, a journal file, PostgreSQL). This module is their schema:

* :data:`FIELDS` names every attribute with its unit and meaning, and :data:`FAMILIES` the
  prefixes whose members follow another type's fields (``latency_protocol_<field>`` of
  :class:`explore.measure.Protocol`, ``latency_<field>`` of :class:`explore.measure.Measurement`,
  ``proxy_<field>`` of :class:`explore.train.ProxyResult`);
* :class:`RecordWriter` is the only code that writes a trial's attributes (the study's objective,
  its failure wrapper); :func:`promotion_attrs` and :func:`importance_attrs` are the attributes a
  trial is enqueued with (a schedule's promotion, an architecture suggested by ``explore
  importance``);
* :class:`TrialRecord` reads a trial's attributes into typed fields (the worker loop, the
  schedules, the results, the study command's progress lines, the schedule comparison).

:func:`explore.search.trials_frame` writes one column per stored attribute under the same names,
so the columns of a study's ``trials.csv`` are these fields.

Versions: every trial written by this code stores ``record_version`` = :data:`RECORD_VERSION`.
Trials without it were written before the version was stored; their names are those of version 1,
so they read as version 1. A record of a version newer than this code knows is refused (one
``error:`` line naming ``record_version``) rather than misread.

A base module: it imports no stage (only :mod:`explore.errors` and Optuna's exception type).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import optuna

from explore.errors import ExploreError

__all__ = ["RECORD_VERSION", "Field", "FIELDS", "FAMILIES", "VERSION", "WORKER", "CONFIG", "CONFIG_HASH", "PARAMS",
           "MACS", "PRUNED_REASON", "FAIL_REASON", "LATENCY_MS", "LATENCY_SOURCE", "LATENCY_EXCESS", "LATENCY_CACHED",
           "LATENCY_DEVICE", "LATENCY_PROTOCOL", "PROXY", "PROXY_THREADS", "PROMOTES", "RUNG", "BRACKET", "ARCH", "HISTORY",
           "TRAIN_IMAGES", "CHECKPOINT", "ENQUEUED_BY", "IMPORTANCE_OF", "is_known", "TrialRecord", "RecordWriter",
           "promotion_attrs", "importance_attrs"]

RECORD_VERSION = 1
"""The version of the schema this code writes. 1: the attributes as :data:`FIELDS` lists them (the
names of every study written so far)."""


@dataclass(frozen=True)
class Field:
    """One stored attribute of a trial.

    Attributes:
        name: the attribute's name in the storage (and the column of ``trials.csv``).
        unit: its unit (``ms/img``, ``%``, ``images`` ...; empty for text, flags and identifiers).
        doc: what it holds, and who writes it.
    """

    name: str
    unit: str
    doc: str


_FIELDS = (
    # identity and architecture
    Field("record_version", "", "the schema version of this record (:data:`RECORD_VERSION`); absent: 1"),
    Field("worker", "", "``host:pid`` of the process that ran the trial (set as the trial starts)"),
    Field("config", "", "the architecture as built: :meth:`explore.arch.ArchConfig.to_json` (sorted keys)"),
    Field("config_hash", "", "the architecture's identity, :meth:`explore.arch.ArchConfig.config_hash` (hex); "
                             "set before the duplicate check"),
    Field("params", "count", "parameters of the built model"),
    Field("macs", "count", "multiply-accumulates of one image at the config's input side (norms not counted)"),
    # how the trial ended, when it did not complete
    Field("pruned_reason", "", "why the trial was PRUNED: ``surplus: ...``, ``infeasible: ...``, ``duplicate...``, "
                               "``over the latency budget: ...``, ``out of memory: ...``, ``non-finite loss: ...``, "
                               "``pruned by the median rule ...``"),
    Field("fail_reason", "", "the exception that FAILed the trial (storage passwords masked)"),
    # latency: measured here, or predicted by a latency table
    Field("latency_source", "", "``measured`` (timed here) or ``table`` (predicted by ``--latency-table``)"),
    Field("latency_ms_per_img", "ms/img", "the latency objective: median time of a batch / batch size"),
    Field("latency_cached", "", "True: taken from the study's latency cache (another trial timed it)"),
    Field("latency_measured_by_trial", "trial", "the trial whose measurement this is"),
    Field("latency_excess_ms", "ms/img", "latency minus ``--max-latency-ms`` (> 0: over the budget, pruned before "
                                         "training); also stored as the trial's Optuna constraint (``Trial.set_constraint``, "
                                         "for Optuna's tools). TPE steers away from over-budget draws because "
                                         "they are PRUNED; NSGA-II and random sampling learn nothing from them"),
    Field("latency_predicted_ms", "ms/img", "the latency table's prediction (``latency_source`` = table)"),
    Field("latency_table_file", "", "the latency table's file name"),
    Field("latency_table_regressor", "", "the table predictor's regressor (``linear`` or ``trees``)"),
    Field("latency_device_name", "", "the device the latency belongs to (this machine's, or the table's)"),
    Field("latency_batch_size", "images", "the batch timed (after any out-of-memory halving)"),
    Field("latency_median_ms", "ms", "median time of one batch over the timed repeats"),
    Field("latency_iqr_ms", "ms", "interquartile range of the timed repeats"),
    Field("latency_cv", "ratio", "coefficient of variation of the timed repeats"),
    Field("latency_passes_per_pair", "passes", "CUDA: passes timed between one pair of events (GPU time per pass = the pair's time / passes); not set on the CPU"),
    Field("latency_throughput_img_s", "img/s", "batch / median time"),
    Field("latency_gpu_ms", "ms", "CUDA: GPU time of a batch (events)"),
    Field("latency_host_ms", "ms", "CUDA: host time to launch a batch"),
    Field("latency_gpu_exec_ms", "ms", "CUDA: GPU execution time of a batch without launch gaps"),
    Field("latency_host_bound", "", "CUDA: True when the host's launches, not the GPU, set the time"),
    Field("latency_oom_retries", "count", "halvings of the batch after out-of-memory errors"),
    Field("latency_compiled_graphs", "count", "``compile`` mode: graphs torch.compile produced"),
    Field("latency_compiled_calls", "count", "``compile`` mode: compiled calls"),
    Field("latency_contention_ratio", "ratio", "CPU: how much slower a reference workload ran than when idle"),
    Field("latency_clean_share", "share", "CPU: share of repeats not slowed by another process (0-1)"),
    Field("latency_attempts", "count", "CPU: measurement attempts until the machine was quiet enough"),
    Field("latency_contended", "", "CPU: True when no attempt was quiet (the figure is then of the clean repeats of all "
                                   "attempts, or their CPU time), or the reference model ran > 1.2x its calibration"),
    Field("latency_figure", "", "which figure ``latency_ms_per_img`` (and median, IQR, CV, throughput) is: "
                                "``normalised`` (CPU: pair ratios x the reference's calibration) or ``raw``"),
    Field("latency_raw_median_ms", "ms", "the raw figure: median wall time of one batch over the repeats used"),
    Field("latency_raw_ms_per_img", "ms/img", "the raw figure per image (the objective when the figure is raw)"),
    Field("latency_normalised_median_ms", "ms", "CPU, normalised: median candidate/reference pair ratio x the "
                                                "reference's calibration (one batch)"),
    Field("latency_normalised_ms_per_img", "ms/img", "CPU, normalised: the normalised figure per image"),
    Field("latency_pair_ratio", "ratio", "CPU, normalised: median of the candidate/reference pair ratios"),
    Field("latency_pair_spread", "ratio", "CPU, normalised: IQR / median of the pair ratios (> 0.15: not quiet)"),
    Field("latency_pair_ratios", "ratio", "CPU, normalised: every pair's candidate/reference ratio, in order"),
    Field("latency_reference_name", "", "CPU, normalised: the reference model (``efficientvit_m0``)"),
    Field("latency_reference_median_ms", "ms", "CPU, normalised: the reference's median in this measurement"),
    Field("latency_reference_slowdown", "ratio", "CPU, normalised: the reference's median / its calibration "
                                                 "(> 1.2: flagged contended)"),
    Field("latency_reference_calibration_ms", "ms", "CPU, normalised: the reference's calibration on this machine "
                                                    "(median of its calibration repeats, one batch)"),
    Field("latency_reference_calibration_fastest_ms", "ms", "CPU, normalised: the fastest calibration repeat"),
    Field("latency_reference_calibration_times_ms", "ms", "CPU, normalised: every calibration repeat (one batch each)"),
    Field("latency_reference_calibration_contended", "", "CPU, normalised: True when the calibration itself was "
                                                         "contended"),
    Field("latency_versions", "", "library versions that change speed (``torch=...,cuda=...``)"),
    # proxy training
    Field("proxy_threads", "threads", "CPU threads the proxy training ran with"),
    Field("proxy_top1", "%", "classification: top-1 on the held-out subset"),
    Field("proxy_miou", "%", "segmentation: mean IoU on the held-out scenes"),
    Field("proxy_pixel_acc", "%", "segmentation: share of labelled pixels predicted right"),
    Field("proxy_train_loss", "", "mean training loss of the last epoch"),
    Field("proxy_steps", "count", "optimizer steps"),
    Field("proxy_train_seconds", "s", "wall time of the training steps"),
    Field("proxy_eval_seconds", "s", "wall time of the evaluations"),
    Field("proxy_train_img_s", "img/s", "training throughput"),
    Field("proxy_precision", "", "the precision trained in (``fp32``, ``amp-bf16`` ...)"),
    Field("train_images", "images", "training images this job processed (its share of the training budget)"),
    # scored with a supernet's weights (explore study --supernet; explore.search.inherited)
    Field("top1_source", "", "``inherited``: the first objective is the top-1 of the supernet's weights after BN "
                             "recalibration, nothing was trained (absent: proxy training)"),
    Field("supernet", "", "the supernet folder the trial inherited its weights from"),
    Field("recalibration_images", "images", "training images the BN statistics were recalibrated on"),
    Field("inherited_top1", "%", "top-1 on the held-out subset with the inherited weights"),
    Field("inherited_seconds", "s", "wall time of extraction, BN recalibration and scoring"),
    # multi-fidelity schedules (explore.search.schedule)
    Field("promotes", "trial", "a promotion job: the job it continues (set when it is enqueued)"),
    Field("rung", "index", "the rung (index into the rungs) the job trains to"),
    Field("bracket", "index", "the bracket of the architecture (its first rung)"),
    Field("arch_trial", "trial", "the architecture's first job (its name in reports)"),
    Field("rung_history", "", "per rung reached: {rung, epochs, top1 (%), train_seconds (s), train_images, trial}"),
    Field("checkpoint", "", "the job's stored training state, relative to the run folder"),
    # enqueued by another command
    Field("enqueued_by", "", "the command that enqueued this architecture (``explore importance``)"),
    Field("importance_of", "", "``explore importance``: the model whose reallocation this architecture is"),
)

FIELDS: dict[str, Field] = {f.name: f for f in _FIELDS}
"""Every attribute a trial stores, by name."""

FAMILIES: dict[str, str] = {
    "latency_protocol_": "the latency protocol's parameters (:class:`explore.measure.Protocol` fields: name, "
                         "mode, device, batch_size in images, img_size and img_width in pixels, in_chans, threads, "
                         "repeats, warmup, amp, channels_last, compile_backend, onnx)",
    "latency_": "a field of :class:`explore.measure.Measurement` (its ``as_attrs``); the known ones are in FIELDS",
    "proxy_": "a field of :class:`explore.train.ProxyResult` or :class:`explore.train.SegmentationResult`",
}
"""Prefixes whose members are the fields of another type: a new field there is stored under its
name without a change here (the ones known today are listed in :data:`FIELDS`, with units)."""

VERSION, WORKER, CONFIG, CONFIG_HASH, PARAMS, MACS = ("record_version", "worker", "config", "config_hash", "params",
                                                      "macs")
PRUNED_REASON, FAIL_REASON = "pruned_reason", "fail_reason"
LATENCY_MS, LATENCY_SOURCE, LATENCY_EXCESS = "latency_ms_per_img", "latency_source", "latency_excess_ms"
LATENCY_CACHED, LATENCY_DEVICE = "latency_cached", "latency_device_name"
LATENCY_PROTOCOL, PROXY, PROXY_THREADS = "latency_protocol_", "proxy_", "proxy_threads"
PROMOTES, RUNG, BRACKET, ARCH, HISTORY = "promotes", "rung", "bracket", "arch_trial", "rung_history"
TRAIN_IMAGES, CHECKPOINT, ENQUEUED_BY, IMPORTANCE_OF = "train_images", "checkpoint", "enqueued_by", "importance_of"


def is_known(name: str) -> bool:
    """Whether ``name`` is a field of the schema or a member of one of its families."""
    return name in FIELDS or (not name.endswith("_") and any(name.startswith(prefix) and len(name) > len(prefix)
                                                             for prefix in FAMILIES))


class _Stored(Protocol):
    """Anything with a trial's attributes: ``optuna.Trial`` (running) or ``optuna.trial.FrozenTrial``."""

    @property
    def user_attrs(self) -> dict[str, Any]: ...


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class TrialRecord:
    """A trial's stored attributes, read through the schema: typed properties over ``attrs``
    (None, or an empty list, where the trial did not store the field). Build it with :meth:`of`.

    Attributes:
        attrs: every stored attribute as stored (the columns of ``trials.csv``); not copied.
    """

    attrs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, trial: _Stored) -> TrialRecord:
        """The record of a trial (running or finished).

        Raises:
            ExploreError: field ``record_version``: the trial was written by a newer schema than
                :data:`RECORD_VERSION`.
        """
        record = cls(trial.user_attrs)
        if record.version > RECORD_VERSION:
            raise ExploreError(VERSION, record.version, f"a trial record of version <= {RECORD_VERSION}: this study "
                                                        "was written by a newer explore; upgrade to read it")
        return record

    @property
    def version(self) -> int:
        """The record's schema version (1 for records written before it was stored)."""
        return int(self.attrs.get(VERSION, 1))

    @property
    def worker(self) -> str | None:
        """``host:pid`` of the process that ran the trial (None: a trial of a version before workers were stored)."""
        return self.attrs.get(WORKER)

    @property
    def config(self) -> str | None:
        """The architecture's JSON (:meth:`explore.arch.ArchConfig.from_json` reads it)."""
        return self.attrs.get(CONFIG)

    @property
    def config_hash(self) -> str | None:
        """The architecture's identity (hex)."""
        return self.attrs.get(CONFIG_HASH)

    @property
    def params(self) -> int | None:
        """Parameters (count)."""
        return _int(self.attrs.get(PARAMS))

    @property
    def macs(self) -> int | None:
        """MACs of one image (count)."""
        return _int(self.attrs.get(MACS))

    @property
    def pruned_reason(self) -> str | None:
        """Why the trial was PRUNED."""
        return self.attrs.get(PRUNED_REASON)

    @property
    def fail_reason(self) -> str | None:
        """Why the trial FAILed."""
        return self.attrs.get(FAIL_REASON)

    @property
    def reason(self) -> str:
        """Why the trial did not complete: its ``pruned_reason``, else its ``fail_reason``, else empty."""
        return self.pruned_reason or self.fail_reason or ""

    @property
    def latency_ms_per_img(self) -> float | None:
        """The latency objective (ms/img)."""
        value = self.attrs.get(LATENCY_MS)
        return None if value is None else float(value)

    @property
    def latency_source(self) -> str | None:
        """``measured`` or ``table``."""
        return self.attrs.get(LATENCY_SOURCE)

    @property
    def latency_cached(self) -> bool:
        """True when the latency came from the study's cache."""
        return bool(self.attrs.get(LATENCY_CACHED))

    @property
    def latency_device_name(self) -> str | None:
        """The device the latency belongs to."""
        return self.attrs.get(LATENCY_DEVICE)

    @property
    def latency_protocol(self) -> dict[str, Any]:
        """The latency protocol's parameters (``latency_protocol_<field>`` without the prefix)."""
        return {k[len(LATENCY_PROTOCOL):]: v for k, v in self.attrs.items() if k.startswith(LATENCY_PROTOCOL)}

    @property
    def promotes(self) -> int | None:
        """A promotion job: the job it continues."""
        return _int(self.attrs.get(PROMOTES))

    @property
    def is_promotion(self) -> bool:
        """A schedule's promotion job (it continues the job :attr:`promotes`)."""
        return self.attrs.get(PROMOTES) is not None

    @property
    def rung(self) -> int | None:
        """A schedule's job: the rung it trains to."""
        return _int(self.attrs.get(RUNG))

    @property
    def bracket(self) -> int | None:
        """A schedule's job: its architecture's first rung."""
        return _int(self.attrs.get(BRACKET))

    @property
    def arch_trial(self) -> int | None:
        """A schedule's job: its architecture's first job."""
        return _int(self.attrs.get(ARCH))

    @property
    def rung_history(self) -> list[dict[str, Any]]:
        """A schedule's job: per rung its architecture reached, {rung, epochs, top1, train_seconds, train_images, trial}."""
        return list(self.attrs.get(HISTORY) or [])

    @property
    def train_images(self) -> int | None:
        """Training images the job processed."""
        return _int(self.attrs.get(TRAIN_IMAGES))

    @property
    def checkpoint(self) -> str | None:
        """The job's stored training state, relative to the run folder."""
        return self.attrs.get(CHECKPOINT)


class RecordWriter:
    """Writes the record of one running trial: every attribute goes through :meth:`set`, which checks
    the name against the schema (:func:`is_known`).

    Args:
        trial: the running ``optuna.Trial``.
    """

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def set(self, name: str, value: Any) -> None:
        """Store one attribute.

        Raises:
            KeyError: ``name`` is not in the schema (a programming error: add it to :data:`FIELDS`).
        """
        if not is_known(name):
            raise KeyError(f"{name!r} is not a field of the trial record (explore.records.FIELDS)")
        self.trial.set_user_attr(name, value)

    def update(self, values: Mapping[str, Any]) -> None:
        """Store several attributes (:meth:`set` each)."""
        for name, value in values.items():
            self.set(name, value)

    def start(self, worker: str) -> None:
        """The trial has started in ``worker`` (``host:pid``); stamps the record's version."""
        self.set(VERSION, RECORD_VERSION)
        self.set(WORKER, worker)

    def prune(self, reason: str) -> optuna.TrialPruned:
        """Store ``pruned_reason`` and return the exception that prunes the trial (``raise writer.prune(...)``)."""
        self.set(PRUNED_REASON, reason)
        return optuna.TrialPruned(reason)

    def fail(self, reason: str) -> None:
        """Store ``fail_reason`` (the trial is about to FAIL)."""
        self.set(FAIL_REASON, reason)

    def architecture(self, config_json: str | None = None, config_hash: str | None = None) -> None:
        """Store the architecture's hash (before the duplicate check) and/or its config JSON."""
        if config_hash is not None:
            self.set(CONFIG_HASH, config_hash)
        if config_json is not None:
            self.set(CONFIG, config_json)

    def counts(self, params: int | None, macs: int | None) -> None:
        """Store params and MACs (counts)."""
        self.set(PARAMS, params)
        self.set(MACS, macs)

    def latency(self, values: Mapping[str, Any]) -> None:
        """Store latency attributes (``latency_*`` names: a measurement's ``as_attrs``, the cache's
        flags, a table's prediction).

        Raises:
            KeyError: a name outside the ``latency_`` fields.
        """
        for name in values:
            if not name.startswith("latency_"):
                raise KeyError(f"{name!r} is not a latency field of the trial record")
        self.update(values)

    def measured_latency(self, attrs: Mapping[str, Any], *, cached: bool, measured_by: int | None) -> None:
        """Store a latency timed on this device: a measurement's attributes
        (:meth:`explore.measure.Measurement.as_attrs`), whether they came from the study's cache,
        and the trial that timed them."""
        self.latency({**attrs, LATENCY_CACHED: cached, "latency_measured_by_trial": measured_by,
                      LATENCY_SOURCE: "measured"})

    def predicted_latency(self, ms_per_img: float, *, protocol: Mapping[str, Any], table_file: str, regressor: str,
                          device: str, batch_size: int) -> None:
        """Store a latency a table predicted (ms/img), with the table's protocol, file, regressor,
        device and batch."""
        attrs = {f"{LATENCY_PROTOCOL}{k}": v for k, v in protocol.items()}
        attrs.update({LATENCY_MS: ms_per_img, "latency_predicted_ms": ms_per_img, LATENCY_SOURCE: "table",
                      "latency_table_file": table_file, "latency_table_regressor": regressor,
                      LATENCY_DEVICE: device, "latency_batch_size": batch_size})
        self.latency(attrs)

    def rung_reached(self, history: list[dict[str, Any]], *, rung: int, epochs: float, top1: float,
                     train_seconds: float, train_images: int) -> None:
        """Store the job's rung history: ``history`` (the rungs its architecture reached before) and
        this rung's epochs, top-1 (%), training seconds and images."""
        entry = {"rung": rung, "epochs": epochs, "top1": top1, "train_seconds": train_seconds,
                 "train_images": train_images, "trial": self.trial.number}
        self.set(HISTORY, [*history, entry])

    def proxy(self, result: Mapping[str, Any]) -> None:
        """Store a proxy result's fields as ``proxy_<field>`` (top-1 or mIoU in %, seconds, steps ...)."""
        self.update({f"{PROXY}{name}": value for name, value in result.items()})

    def job(self, rung: int, bracket: int, arch: int) -> None:
        """Store a schedule job's rung, bracket and architecture trial."""
        self.update({RUNG: rung, BRACKET: bracket, ARCH: arch})


def promotion_attrs(parent: int) -> dict[str, Any]:
    """The attributes a promotion job is enqueued with: the job it continues."""
    return {PROMOTES: parent}


def importance_attrs(model_name: str) -> dict[str, Any]:
    """The attributes of an architecture ``explore importance`` enqueues: by whom, and the model it
    reallocates."""
    return {ENQUEUED_BY: "explore importance", IMPORTANCE_OF: model_name}
