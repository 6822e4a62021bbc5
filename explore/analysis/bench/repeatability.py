"""Benchmark: is a study's latency repeatable on a shared machine?

``explore bench repeatability [--loads compute,bandwidth] [--load-threads 2] [--out DIR] [-- STUDY OPTIONS]``.

Runs the same study from the same seed (the README's main job by default: ``explore study
--space cga``, 8 trials): once on the otherwise idle machine, then once beside each competing load
(:data:`LOAD_KINDS`: matrix products on ``--load-threads`` threads, or one thread streaming memory),
comparing the normalised and the raw latency figures, idle vs loaded and first vs re-measured. Both runs sample the same architectures and, on the CPU, train them to the same top-1, so any
difference in their latencies or Pareto fronts comes from the measurement. It prints, per
architecture, the latency of both runs and their ratio, the largest deviation, whether the fronts
hold the same architectures, and how busy the loaded run found the machine. A table, not a timed
test: the target (within 10 %, the same front) is read off one run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from explore.errors import ExploreError
from explore.records import CONFIG_HASH
from explore.search import open_study, trials_frame

__all__ = ["LOAD_KINDS", "Repeatability", "compare", "load_command", "run_repeatability", "FIGURES_COMPARED"]

_LOAD = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
a = torch.randn(1024, 1024)
while True:
    a @ a
"""

_BANDWIDTH = """
import numpy as np
a = np.ones(32 * 2**20)  # 256 MB of float64
b = np.empty_like(a)
while True:
    np.copyto(b, a)
    a, b = b, a
"""

LOAD_KINDS = ("compute", "bandwidth")
"""Competing loads: ``compute`` (matrix products on ``--load-threads`` threads: both cores of a 2-core
machine by default) and ``bandwidth`` (one thread streaming through 256 MB arrays: memory bandwidth
taken, the other core left free)."""

FIGURES_COMPARED = {"normalised first": "norm_first", "normalised re-measured": "norm_again",
                    "raw first": "raw_first", "raw re-measured": "raw_again"}
"""The latency figures compared per architecture (ms/img): each trial's own measurement and its
end-of-study re-measurement, normalised and raw."""


def load_command(kind: str, threads: int) -> list[str]:
    """The command of a competing load.

    Args:
        kind: one of :data:`LOAD_KINDS`.
        threads: threads of the ``compute`` load (``bandwidth`` runs one).

    Returns:
        argv of a Python process that runs until killed.

    Raises:
        ExploreError: unknown kind (field ``--loads``).
    """
    if kind == "compute":
        return [sys.executable, "-c", _LOAD, str(threads)]
    if kind == "bandwidth":
        return [sys.executable, "-c", _BANDWIDTH]
    raise ExploreError("--loads", kind, f"expected some of {', '.join(LOAD_KINDS)}")


def _study(runs: Path, name: str, extra: list[str]) -> tuple[pd.DataFrame, float]:
    argv = [sys.executable, "-m", "explore.cli", "study", "--space", "cga", "--out", str(runs), "--study-name", name,
            "--no-report", *extra]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    (runs / f"{name}.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    if done.returncode != 0:
        raise ExploreError("study", name, f"failed (exit {done.returncode}); see {runs / (name + '.log')}")
    return trials_frame(open_study(str(runs / name))), seconds


def _figures(frame: pd.DataFrame) -> pd.DataFrame:
    """Per COMPLETE trial (by config hash): summary, top-1, on-front flag, contention figures and the
    four compared latency figures (:data:`FIGURES_COMPARED`)."""
    done = frame[frame["state"] == "COMPLETE"].copy()
    normalised = done.get("latency_figure", pd.Series(dtype=object)).eq("normalised")
    nan = float("nan")
    out = pd.DataFrame({
        CONFIG_HASH: done[CONFIG_HASH], "summary": done["summary"], "top1": done["top1"], "pareto": done["pareto"],
        "latency_ms": done["latency_ms"],
        "norm_first": done["latency_first_ms"].where(normalised, nan),
        "norm_again": done.get("latency_remeasured_ms", pd.Series(nan, index=done.index)).where(normalised, nan),
        "raw_first": done.get("latency_raw_ms_per_img", done["latency_first_ms"]),
        "raw_again": done.get("latency_remeasured_raw_ms", pd.Series(nan, index=done.index)),
        "contended": done.get("latency_contended", pd.Series(None, index=done.index)),
        "reference_slowdown": done.get("latency_reference_slowdown", pd.Series(nan, index=done.index)),
    })
    return out.set_index(CONFIG_HASH)


def compare(quiet: pd.DataFrame, loaded: pd.DataFrame) -> pd.DataFrame:
    """Per architecture (config hash) in both runs: top-1, the four latency figures of each run
    (:data:`FIGURES_COMPARED`, ms/img, suffixes ``_quiet`` and ``_loaded``), their ratios loaded /
    quiet (``ratio <figure>``), the quiet run's first / re-measured ratios (``within <figure>``),
    on-front flags and the loaded run's contention figures. ``ratio`` is that of the study's own
    latency (``latency_ms``)."""
    both = pd.merge(_figures(quiet), _figures(loaded), left_index=True, right_index=True, how="inner",
                    suffixes=("_quiet", "_loaded"))
    both["ratio"] = both["latency_ms_loaded"] / both["latency_ms_quiet"]
    for label, col in FIGURES_COMPARED.items():
        both[f"ratio {label}"] = both[f"{col}_loaded"] / both[f"{col}_quiet"]
    for kind in ("norm", "raw"):
        for run in ("quiet", "loaded"):
            both[f"within {kind} {run}"] = both[f"{kind}_again_{run}"] / both[f"{kind}_first_{run}"]
    return both.reset_index()


@dataclass(frozen=True)
class Repeatability:
    """The runs of :func:`run_repeatability`: per load kind the per-architecture comparison with the
    quiet run (:func:`compare`) and its wall time (s); the quiet run's wall time and the compute
    load's threads.

    Attributes:
        tables: load kind -> :func:`compare` of the quiet run and the run beside that load.
        quiet_s: wall time of the quiet run (s).
        loaded_s: load kind -> wall time of its run (s).
        load_threads: threads of the ``compute`` load.
    """

    tables: dict[str, pd.DataFrame]
    quiet_s: float
    loaded_s: dict[str, float]
    load_threads: int

    @property
    def table(self) -> pd.DataFrame:
        """Every load kind's comparison, one after the other, with a ``load`` column."""
        return pd.concat([t.assign(load=kind) for kind, t in self.tables.items()], ignore_index=True)


def run_repeatability(study_args: list[str], *, load_threads: int = 2, work: str = "runs/repeatability",
                      loads: tuple[str, ...] = ("compute",)) -> Repeatability:
    """Run the same study from the same seed on the idle machine, then beside each competing load.

    Args:
        study_args: options added to ``explore study --space cga`` (every run); without a
            ``--sampler`` the runs use ``--sampler random``, so that they sample the same
            architectures (TPE's samples after its start-up trials depend on the latencies measured).
        load_threads: threads of the ``compute`` load (a process multiplying matrices).
        work: the run folder of the studies (``quiet``, ``loaded_<kind>``; logs beside them).
        loads: the load kinds (:data:`LOAD_KINDS`), one loaded run each.

    Returns:
        :class:`Repeatability`.

    Raises:
        ExploreError: an unknown load kind (field ``--loads``) or ``work`` already holds the studies
            of an earlier run (field ``--work``; nothing is started), or a study failed (field
            ``study``; its log is named).
    """
    for kind in loads:
        load_command(kind, load_threads)  # unknown kinds fail before anything runs
    if not loads:
        raise ExploreError("--loads", "", f"expected some of {', '.join(LOAD_KINDS)}")
    runs = Path(work)
    taken = [name for name in ("quiet", *(f"loaded_{k}" for k in loads)) if (runs / name).exists()]
    if taken:
        raise ExploreError("--work", work, f"already holds the study folder(s) {taken} of an earlier run: "
                                           "remove them or name another folder")
    if "--sampler" not in study_args:  # TPE's later samples depend on the latencies measured: the runs would diverge
        study_args = [*study_args, "--sampler", "random"]
    runs.mkdir(parents=True, exist_ok=True)
    quiet, quiet_s = _study(runs, "quiet", study_args)
    tables, seconds = {}, {}
    for kind in loads:
        load = subprocess.Popen(load_command(kind, load_threads), start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"} if kind == "bandwidth" else None)
        try:
            time.sleep(2)
            loaded, seconds[kind] = _study(runs, f"loaded_{kind}", study_args)
        finally:
            os.killpg(load.pid, signal.SIGKILL)
            load.wait()
        tables[kind] = compare(quiet, loaded)
    return Repeatability(tables, quiet_s, seconds, load_threads)
