"""Reading a study's results: open it, one row per trial, the Pareto front (latencies re-measured at the end),
its stored settings and space, and the architecture of one trial.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch
from optuna.trial import FrozenTrial, TrialState

from explore.arch import ArchConfig
from explore.errors import ExploreError, SpaceError
from explore.evaluate import evaluate_candidate
from explore.measure import Protocol, device_name, time_rounds
from explore.records import CONFIG, FAIL_REASON, MACS, PARAMS, TrialRecord
from explore.search.objective import worker_id
from explore.search.schedule import pareto_mask
from explore.search.storage import default_storage, is_journal, make_storage, mask_password
from explore.space import SearchSpace, load_space

__all__ = ["REMEASURED_PREFIX", "LATENCY_FIGURES_ATTR", "LATENCY_FIGURES_NOTE", "REMEASURE_ROUNDS", "open_study", "trials_frame", "remeasured_latencies", "remeasure_latencies", "study_meta",
           "study_space", "trial_config"]

REMEASURED_PREFIX = "latency_remeasured:"
LATENCY_FIGURES_ATTR = "latency_figures"
"""Study attribute (shown by optuna-dashboard) saying which latency Optuna's tools show and which the report."""
LATENCY_FIGURES_NOTE = (
    "Optuna's trial values (what `optuna best-trials`, `optuna trials` and optuna-dashboard show) hold each trial's "
    "first latency measurement; explore's report (`explore report RUN`, trials.csv column latency_ms) ranks by the "
    "lower of that and the end-of-study re-measurement, stored as the study attribute latency_remeasured:<number>, "
    "so the two fronts can differ; trials.csv keeps both figures (latency_first_ms, latency_remeasured_ms)")
"""Study attributes holding the end-of-study latency re-measurements of COMPLETE trials, by trial number."""


def _trial_protocol(record: TrialRecord, device: torch.device) -> Protocol:
    """The latency protocol a trial was measured with (from its ``latency_protocol_*`` attributes), on ``device``."""
    fields = {f.name for f in dataclasses.fields(Protocol)}
    stored = {k: v for k, v in record.latency_protocol.items() if k in fields}
    return dataclasses.replace(Protocol(**stored), device=str(device))


REMEASURE_ROUNDS = 3
"""Rounds of the end-of-study re-measurement (:func:`remeasure_latencies`)."""


def remeasure_latencies(study: optuna.Study, device: Any,
                        on_remeasure: Callable[[int, float, float], None] | None = None,
                        rounds: int = REMEASURE_ROUNDS) -> list[int]:
    """Measure the latency of every COMPLETE trial again at the end of a study, in interleaved rounds.

    A trial's latency was measured once, at whatever moment its trial ran; on a shared machine (other
    jobs, a virtual machine whose host slows it down for seconds at a time) one figure can be 1.5x
    off, and the front with it. Each COMPLETE trial measured on this device model and not yet
    re-measured is rebuilt from its config once (trials of one architecture and protocol share one
    model and its figures), then measured ``rounds`` times with its own protocol
    (:func:`explore.measure.time_model`, under the device's exclusive lock), round-robin over the
    trials (``compile``: over groups of trials that stay compiled together, :func:`explore.measure.time_rounds`),
    so a slow spell of the machine falls on different trials in different rounds instead of
    on all the repeats of one. The fastest round is stored as the study attribute
    ``latency_remeasured:<number>`` and :func:`trials_frame` takes the lower of that and the trial's
    own figure (contention only slows a run down) and computes the front from it. Trials measured on
    another device model (another machine of a PostgreSQL study), and trials whose latency a
    latency table predicted, are left alone.

    Args:
        study: the study.
        device: the torch device to measure on.
        on_remeasure: called with (trial number, first ms/img, re-measured ms/img) after each trial's
            last round.
        rounds: measurements per trial (>= 1).

    Returns:
        The numbers of the trials re-measured by this call.
    """
    dev = torch.device(device)
    here = device_name(dev)
    done = set(remeasured_latencies(study))
    trials = [t for t in study.get_trials(deepcopy=False)
              if t.state == TrialState.COMPLETE and len(t.values or ()) > 1 and t.number not in done
              and TrialRecord.of(t).latency_device_name == here and TrialRecord.of(t).config
              and TrialRecord.of(t).latency_source != "table"]
    if not trials:
        return []
    # one model per architecture and protocol: trials that share one (a retry, an enqueued config) share its figures
    groups: dict[tuple[str, Protocol], list[optuna.trial.FrozenTrial]] = {}
    for t in trials:
        record = TrialRecord.of(t)
        groups.setdefault((record.config, _trial_protocol(record, dev)), []).append(t)
    keys = list(groups)
    timed = time_rounds([(evaluate_candidate(ArchConfig.from_json(config), count=False).model, protocol)
                         for config, protocol in keys], rounds)
    results = dict(zip(keys, timed))
    study.set_user_attr(LATENCY_FIGURES_ATTR, LATENCY_FIGURES_NOTE)  # Optuna's values cannot be changed afterwards
    for key, t in ((key, t) for key, members in groups.items() for t in members):
        best = min(results[key], key=lambda r: r.latency_ms_per_img)
        study.set_user_attr(f"{REMEASURED_PREFIX}{t.number}", {
            "ms_per_img": best.latency_ms_per_img, "median_ms": best.median_ms, "iqr_ms": best.iqr_ms,
            "batch_size": best.batch_size, "contended": best.contended, "contention_ratio": best.contention_ratio,
            "rounds_ms_per_img": [r.latency_ms_per_img for r in results[key]],
            "figure": best.figure, "raw_ms_per_img": min((r.raw_ms_per_img for r in results[key]
                                                          if r.raw_ms_per_img is not None), default=None),
            "measured_by": worker_id(), "at": time.time()})
        if on_remeasure is not None:
            on_remeasure(t.number, float(t.values[1]), best.latency_ms_per_img)
    return [t.number for t in trials]


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


def state_reason(study: optuna.Study, trial: FrozenTrial, retries: dict[int, int] | None = None) -> str:
    """Why a trial did not complete, never empty (the console line and ``trials.csv`` say the same).

    Its stored ``pruned_reason`` or ``fail_reason``; a FAIL trial without one was failed as stale
    (its process died, or stopped sending heartbeats, before it could store a reason), and the text
    says so and names its retry. A COMPLETE trial has no reason (empty string).

    Args:
        study: the trial's study (to find its retry).
        trial: the trial.
        retries: :func:`_retries` of the study, when the caller has it already.
    """
    if trial.state == TrialState.COMPLETE:
        return ""
    reason = TrialRecord.of(trial).reason
    if reason:
        return reason
    if trial.state == TrialState.FAIL:
        retries = _retries(study) if retries is None else retries
        again = f"retried as #{retries[trial.number]}" if trial.number in retries else "not retried"
        return f"stale: its process stopped sending heartbeats (killed or lost); {again}"
    return f"no reason was stored for this {trial.state.name} trial"


def remeasured_latencies(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """Trial number -> its end-of-study re-measurement (``ms_per_img``, ``contended``, ...; see
    :func:`remeasure_latencies`), from the study attributes ``latency_remeasured:<number>``."""
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
    again at the end of the study (:func:`remeasure_latencies`), the lower of the two figures
    (contention only slows a run down); ``latency_first_ms`` and ``latency_remeasured_ms`` keep both
    (``latency_remeasured_raw_ms``: the re-measurement's raw figure, the fastest round's).
    ``pareto`` is True for the Pareto-optimal COMPLETE trials on (``top1``, ``latency_ms``)
    (single-objective studies: the best trial). ``retry_of`` names the trial a retried trial
    re-runs; a FAIL trial whose process died gets a ``fail_reason`` saying so.
    """
    remeasured = remeasured_latencies(study)
    retries = _retries(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        record = TrialRecord.of(t)
        latency = record.latency_ms_per_img
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "top1": t.values[0] if t.values else float("nan"),
            "latency_ms": (t.values[1] if len(t.values) > 1 else (float("nan") if latency is None else latency))
            if t.values else float("nan"),
            "pareto": False,
            PARAMS: record.params,
            MACS: record.macs,
        }
        for key in sorted(record.attrs):  # one column per stored attribute (explore.records.FIELDS)
            if key not in row and key != CONFIG:
                row[key] = record.attrs[key]
        if t.state == TrialState.FAIL and not record.fail_reason:
            row[FAIL_REASON] = state_reason(study, t, retries)
        original = t.system_attrs.get("failed_trial")
        row["retry_of"] = int(original) if original is not None else None
        config = record.config
        row["summary"] = ArchConfig.from_json(config).summary() if config else ""
        row[CONFIG] = config
        row["duration_s"] = t.duration.total_seconds() if t.duration else float("nan")
        row.update({f"p.{k}": v for k, v in t.params.items()})
        if t.values and len(t.values) > 1:
            row["latency_first_ms"] = row["latency_ms"]
            again = remeasured.get(t.number)
            if again is not None:
                row["latency_remeasured_ms"] = float(again["ms_per_img"])
                row["latency_remeasured_contended"] = again.get("contended")
                row["latency_remeasured_raw_ms"] = again.get("raw_ms_per_img")
                row["latency_ms"] = min(row["latency_first_ms"], row["latency_remeasured_ms"])
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.sort_values("number").reset_index(drop=True)
    complete = frame["state"] == "COMPLETE"
    top = _top_rung(study)
    if top is not None and "rung" in frame:  # a schedule: the front of the jobs at the top rung
        complete &= frame["rung"] == top
    if complete.any():
        if len(study.directions) > 1:
            done = frame[complete]
            flags = pareto_mask(done["top1"].astype(float).tolist(), done["latency_ms"].astype(float).tolist())
            frame.loc[done.index, "pareto"] = flags
        else:
            frame["pareto"] = frame["number"].isin({t.number for t in study.best_trials})
    return frame


def _top_rung(study: optuna.Study) -> int | None:
    """The top rung's index of a study run with ``--schedule sha|hyperband``, else None."""
    stored = study.user_attrs.get("settings") or {}
    if stored.get("schedule", "full") == "full":
        return None
    return len(stored["rung_epochs"]) - 1


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



def trial_config(run_dir: str, number: int) -> ArchConfig:
    """The architecture trial ``number`` of the study in run folder ``run_dir`` stored: the loader of
    ``RUN_DIR:TRIAL`` for :func:`explore.arch.resolve_arch`.

    Raises:
        ExploreError: field ``STUDY``: not a study run folder, no such trial, or a trial without a
            stored config (``expected`` says which).
    """
    try:
        study = open_study(run_dir)
    except ExploreError as exc:
        raise ExploreError("STUDY", run_dir, f"STUDY is not a study run folder ({exc.expected})") from None
    trials = study.get_trials(deepcopy=False)
    trial = {t.number: t for t in trials}.get(number)
    if trial is None:
        raise ExploreError("STUDY", run_dir, f"no trial {number} in {run_dir} (it has {len(trials)} trials)")
    config_json = TrialRecord.of(trial).config
    if not config_json:
        raise ExploreError("STUDY", run_dir, f"trial {number} stored no config (state {trial.state.name})")
    return ArchConfig.from_json(config_json, source=f"{run_dir}:{number}")
