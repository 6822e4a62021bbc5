"""Seeds for a study's Pareto front: re-train its members with common seeds and say which are
distinguishable.

A study trains each architecture once, trial k with seed ``s + k``, so two neighbours on the front
differ by the architecture *and* by the seed's draw of initial weights, data order and
augmentation; at proxy budgets that draw moves top-1 by 0.2-1.4 points, as much as the gaps
between front members. :func:`retrain_front` trains every front member again with the same seeds
(seed ``FRONT_SEED_OFFSET + i`` for i = 0..n-1: the study's data subsets and proxy budget, and, per
seed, the same data order and augmentation draws for every member), and stores each run on the
study (attribute ``front_seeds:<trial>``), so that a second call adds seeds instead of repeating
them and an interrupted one resumes.

:func:`front_table` then compares each member with the most accurate *faster* member (by mean
top-1 over the common seeds) with the paired interval of
:func:`explore.stats.paired_delta`: a slower member is *distinguishable* when
its interval lies above 0 (the extra latency buys top-1 that seeds cannot explain); where the
interval lies below 0 the member is dominated, where it lies inside ±margin the two are equally
accurate, and otherwise more seeds are needed.

Follows: the paired design of :mod:`explore.stats` applied to the front of
arXiv:2305.07027-style accuracy/latency searches.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import optuna
import pandas as pd

from explore.arch import ArchConfig
from explore.errors import ExploreError
from explore.evaluate import TrainBudget, evaluate_candidate
from explore.search.results import trials_frame
from explore.stats import ACC_MIN_EFFECT, decision, mean_interval, paired_delta

__all__ = ["FRONT_SEED_PREFIX", "FRONT_SEED_OFFSET", "FRONT_RUNS_COLUMNS", "front_runs", "front_runs_table",
           "runs_of_table", "front_members", "retrain_front", "front_table"]

FRONT_SEED_PREFIX = "front_seeds:"
"""Study attributes holding a front member's re-training runs: ``front_seeds:<trial>`` ->
{seed (str): {"top1": %, "train_s": s, "threads": n, "at": unix time}}."""
FRONT_SEED_OFFSET = 10_000
"""Front seed i trains with seed ``FRONT_SEED_OFFSET + i`` (away from the trials' own ``s + k``)."""


FRONT_RUNS_COLUMNS = ("trial", "seed", "top-1 (%)", "train (s)", "threads")
"""Columns of :func:`front_runs_table` (the report's ``front_seed_runs.csv``)."""


def _stored_runs(study: optuna.Study) -> dict[int, dict[str, dict[str, Any]]]:
    """Trial number -> seed (str) -> its stored run (the ``front_seeds:<trial>`` attributes)."""
    return {int(key[len(FRONT_SEED_PREFIX):]): dict(value) for key, value in study.user_attrs.items()
            if key.startswith(FRONT_SEED_PREFIX) and isinstance(value, dict)}


def front_runs(study: optuna.Study) -> dict[int, dict[int, float]]:
    """Trial number -> seed -> top-1 (%) of the stored front re-training runs, trials and seeds in
    ascending order (the order :func:`front_table` sums them in, so that a table of the same runs
    read back, :func:`runs_of_table` of :func:`front_runs_table`, gives the same figures to the bit)."""
    return runs_of_table(front_runs_table(study))


def front_runs_table(study: optuna.Study) -> pd.DataFrame:
    """Every stored front re-training run as a row, by trial then seed.

    Returns:
        Columns :data:`FRONT_RUNS_COLUMNS`: ``trial`` (int), ``seed`` (int, the training seed:
        ``FRONT_SEED_OFFSET + i``), ``top-1 (%)`` (float), ``train (s)`` (training wall seconds,
        NaN where not stored) and ``threads`` (CPU threads of training, None where torch's default).
        Empty (those columns) when the study stores no run.
    """
    rows = [{"trial": number, "seed": int(seed), "top-1 (%)": float(run["top1"]),
             "train (s)": float(run["train_s"]) if run.get("train_s") is not None else float("nan"),
             "threads": run.get("threads")}
            for number, runs in sorted(_stored_runs(study).items())
            for seed, run in sorted(runs.items(), key=lambda item: int(item[0]))]
    table = pd.DataFrame(rows, columns=list(FRONT_RUNS_COLUMNS))
    if table.empty:
        return table
    threads = [None if r["threads"] is None else int(r["threads"]) for r in rows]  # ints, not floats, in the CSV
    table["threads"] = pd.Series(threads, dtype=object if None in threads else "int64")
    return table


def runs_of_table(table: pd.DataFrame, source: str = "front_seed_runs.csv") -> dict[int, dict[int, float]]:
    """Trial -> seed -> top-1 (%) of a :func:`front_runs_table` (as written, or read back from the
    report's ``front_seed_runs.csv``), in its row order.

    Args:
        table: rows with at least ``trial``, ``seed`` and ``top-1 (%)``.
        source: the table's name in errors.

    Raises:
        ExploreError: field ``source``: a column missing, a trial or seed that is not an integer, a
            top-1 that is not a number in [0, 100], or a (trial, seed) given twice.
    """
    missing = [c for c in ("trial", "seed", "top-1 (%)") if c not in table]
    if missing and not table.empty:
        raise ExploreError(source, f"columns {list(table.columns)}", f"a table with the columns trial, seed, "
                                                                     f"top-1 (%) (missing: {', '.join(missing)})")
    runs: dict[int, dict[int, float]] = {}
    if table.empty:
        return runs
    for trial, seed, top1 in zip(table["trial"], table["seed"], table["top-1 (%)"]):
        try:
            number, index, value = int(trial), int(seed), float(top1)
        except (TypeError, ValueError):
            raise ExploreError(source, f"trial {trial}, seed {seed}, top-1 {top1}",
                               "integer trial and seed and a numeric top-1 (%)") from None
        if number != trial or index != seed or not 0.0 <= value <= 100.0:
            raise ExploreError(source, f"trial {trial}, seed {seed}, top-1 {top1}",
                               "integer trial and seed and a top-1 (%) in [0, 100]")
        if index in runs.setdefault(number, {}):
            raise ExploreError(source, f"trial {number}, seed {index}", "one row per (trial, seed): this one is twice")
        runs[number][index] = value
    return runs


def front_members(frame: pd.DataFrame) -> pd.DataFrame:
    """The Pareto-optimal COMPLETE trials of :func:`explore.search.trials_frame`, fastest first."""
    if frame.empty or "pareto" not in frame:
        return frame.iloc[0:0]
    front = frame[frame["pareto"].astype(bool) & (frame["state"] == "COMPLETE")]
    return front.sort_values("latency_ms").reset_index(drop=True)


def _budget(settings: Mapping[str, Any]) -> TrainBudget:
    """The study's data and proxy schedule from its stored settings (defaults for fields it lacks)."""
    names = {f.name for f in dataclasses.fields(TrainBudget)}
    return TrainBudget(**{k: v for k, v in settings.items() if k in names})


def retrain_front(study: optuna.Study, seeds: int, *, device: str = "cpu", threads: int | None = None,
                  on_run: Callable[[int, int, float, float], None] | None = None) -> int:
    """Train every member of the study's current front with the common seeds it does not have yet.

    Seed-major order (every member's seed i before any member's seed i+1), so that an interrupted
    run leaves the members with equal seed counts; each run is stored on the study as it ends.
    The data are the study's subsets (drawn with its stored seed) and the budget its stored proxy
    schedule, so a front seed is an independent repeat of the trial's training.

    Args:
        study: a multi-objective study with COMPLETE trials (their ``config`` attribute stored).
        seeds: seeds per member (>= 2; stored runs count).
        device: training device (``cpu``, ``cuda[:N]``).
        threads: CPU threads of training (None: the study's ``train_threads`` setting, else torch's).
        on_run: called with (trial, seed index, top-1 %, training seconds) after each new run.

    Returns:
        The number of runs trained by this call.

    Raises:
        ExploreError: field ``--front-seeds`` below 2; field ``STUDY`` for a single-objective
            study or one without a front; DataError when the study's data are not found here.
    """
    if seeds < 2:
        raise ExploreError("--front-seeds", seeds, "at least 2 seeds per front member (a paired interval needs 2)")
    if len(study.directions) < 2:
        raise ExploreError("STUDY", study.study_name, "a two-objective study (top-1 and latency): this one has one "
                                                      "objective, so it has no Pareto front")
    front = front_members(trials_frame(study))
    if front.empty:
        raise ExploreError("STUDY", study.study_name, "a study with complete trials: its Pareto front is empty")
    settings = study.user_attrs.get("settings") or {}
    budget = _budget(settings)
    if threads is None:
        threads = settings.get("train_threads")
    data = budget.load_data(int(settings.get("seed", 0)))
    stored = _stored_runs(study)
    trained = 0
    for index in range(seeds):
        seed = FRONT_SEED_OFFSET + index
        for row in front.itertuples(index=False):
            number = int(row.number)
            runs = stored.setdefault(number, {})
            if str(seed) in runs:
                continue
            config = ArchConfig.from_json(row.config, source=f"trial {number}")
            evaluation = evaluate_candidate(config, seed=seed, count=False, data=data,
                                            recipe=budget.proxy_recipe(), device=device, threads=threads)
            runs[str(seed)] = {"top1": float(evaluation.proxy.top1), "train_s": float(evaluation.proxy.train_seconds),
                               "threads": threads, "at": time.time()}
            study.set_user_attr(f"{FRONT_SEED_PREFIX}{number}", runs)
            trained += 1
            if on_run is not None:
                on_run(number, index, float(evaluation.proxy.top1), float(evaluation.proxy.train_seconds))
    return trained


def front_table(frame: pd.DataFrame, runs: Mapping[int, Mapping[int, float]], margin: float = ACC_MIN_EFFECT,
                level: float = 0.95) -> pd.DataFrame:
    """Which front members are distinguishable, from the common-seed runs of :func:`retrain_front`.

    Each member (fastest first) is compared with the faster member of highest mean top-1 over the
    seeds both ran (the one it must beat to be worth its latency): Δ = member − reference per
    common seed, its paired interval and :func:`~explore.stats.decision`.

    Args:
        frame: :func:`explore.search.trials_frame` of the study.
        runs: trial -> seed -> top-1 (%) (:func:`front_runs`).
        margin: top-1 points below which two members count as equally accurate.
        level: confidence level.

    Returns:
        One row per front member, fastest first: ``trial``, ``architecture``, ``latency (ms/img)``,
        ``search top-1 (%)`` (the trial's own run), ``seeds``, ``mean top-1 (%)``, ``std``,
        ``CI low``, ``CI high`` (t interval of the mean), ``vs`` (the reference trial, None for the
        fastest), ``Δ top-1``, ``Δ low``, ``Δ high``, ``verdict`` and ``distinguishable``
        (True: more accurate than every faster member, beyond the seeds' noise; the fastest member
        is distinguishable by latency alone). Empty when no member has runs.
    """
    front = front_members(frame)
    rows: list[dict[str, Any]] = []
    faster: list[int] = []
    for row in front.itertuples(index=False):
        number = int(row.number)
        mine = dict(runs.get(number, {}))
        mean, sd, low, high = mean_interval(list(mine.values()), level)
        entry: dict[str, Any] = {
            "trial": number, "architecture": row.summary, "latency (ms/img)": float(row.latency_ms),
            "search top-1 (%)": float(row.top1), "seeds": len(mine), "mean top-1 (%)": mean, "std": sd,
            "CI low": low, "CI high": high, "vs": None, "Δ top-1": float("nan"), "Δ low": float("nan"),
            "Δ high": float("nan"),
        }
        candidates = [(sum(runs[o][s] for s in common) / len(common), o)
                      for o in faster for common in [sorted(set(runs.get(o, {})) & set(mine))] if common]
        if not faster:
            entry["verdict"], entry["distinguishable"] = "fastest", True
        elif len(mine) < 2 or not candidates:
            entry["verdict"], entry["distinguishable"] = "not re-trained", False
        else:
            ref = max(candidates)[1]
            ci = paired_delta(runs[ref], mine, level)
            state = decision(ci, margin)
            entry.update({"vs": ref, "Δ top-1": ci.mean, "Δ low": ci.low, "Δ high": ci.high})
            if state == "effect" and ci.mean > 0:
                verdict = f"more accurate than #{ref}"
            elif state == "effect":
                verdict = f"less accurate than #{ref}: dominated"
            elif state == "negligible":
                verdict = f"as accurate as #{ref} (|Δ| < {margin:g}): slower for nothing"
            else:
                verdict = f"not distinguishable from #{ref} at {ci.pairs} seeds"
            entry["verdict"], entry["distinguishable"] = verdict, state == "effect" and ci.mean > 0
        rows.append(entry)
        faster.append(number)
    if not any(r["seeds"] for r in rows):
        return pd.DataFrame()
    return pd.DataFrame(rows)
