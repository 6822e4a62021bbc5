"""Benchmark: is a study's latency repeatable on a shared machine?

``explore bench repeatability [--load-threads 2] [--out reports/latency_repeatability] [-- STUDY OPTIONS]``.

Runs the same study twice from the same seed (the README's main job by default: ``explore study
--space cga``, 8 trials): once on the otherwise idle machine, once while a competing load (a process
multiplying matrices on ``--load-threads`` threads, like other jobs sharing the cores) runs beside
it. Both runs sample the same architectures and, on the CPU, train them to the same top-1, so any
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

__all__ = ["Repeatability", "compare", "run_repeatability"]

_LOAD = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
a = torch.randn(1024, 1024)
while True:
    a @ a
"""


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


def compare(quiet: pd.DataFrame, loaded: pd.DataFrame) -> pd.DataFrame:
    """Per architecture (config hash) in both runs: top-1, final latency (ms/img), ratio loaded/quiet,
    the first-measured latencies, on-front flags and the loaded run's contention figures."""
    cols = [CONFIG_HASH, "summary", "top1", "latency_ms", "latency_first_ms", "pareto",
            "latency_contention_ratio", "latency_clean_share", "latency_contended"]

    def pick(frame: pd.DataFrame) -> pd.DataFrame:
        done = frame[frame["state"] == "COMPLETE"]
        return done[[c for c in cols if c in done]].set_index(CONFIG_HASH)

    q, lo = pick(quiet), pick(loaded)
    both = pd.merge(q, lo, left_index=True, right_index=True, how="inner", suffixes=("_quiet", "_loaded"))
    both["ratio"] = both["latency_ms_loaded"] / both["latency_ms_quiet"]
    both["ratio_first"] = both["latency_first_ms_loaded"] / both["latency_first_ms_quiet"]
    return both.reset_index()


@dataclass(frozen=True)
class Repeatability:
    """Both runs of :func:`run_repeatability`: the per-architecture comparison (:func:`compare`),
    each run's wall time (s), the competing load's threads and whether top-1 matched."""

    table: pd.DataFrame
    quiet_s: float
    loaded_s: float
    load_threads: int


def run_repeatability(study_args: list[str], *, load_threads: int = 2, work: str = "runs/repeatability") -> Repeatability:
    """Run the same study twice from the same seed: on the idle machine, then beside a competing load.

    Args:
        study_args: options added to ``explore study --space cga`` (both runs); without a
            ``--sampler`` both runs use ``--sampler random``, so that they sample the same
            architectures (TPE's samples after its start-up trials depend on the latencies measured).
        load_threads: threads of the competing load (a process multiplying matrices).
        work: the run folder of the two studies (``quiet``, ``loaded``; logs beside them).

    Raises:
        ExploreError: ``work`` already holds the studies of an earlier run (field ``--work``;
            nothing is started), or a study failed (field ``study``; its log is named).
    """
    runs = Path(work)
    taken = [name for name in ("quiet", "loaded") if (runs / name).exists()]
    if taken:
        raise ExploreError("--work", work, f"already holds the study folder(s) {taken} of an earlier run: "
                                           "remove them or name another folder")
    if "--sampler" not in study_args:  # TPE's later samples depend on the latencies measured: the runs would diverge
        study_args = [*study_args, "--sampler", "random"]
    runs.mkdir(parents=True, exist_ok=True)
    quiet, quiet_s = _study(runs, "quiet", study_args)
    load = subprocess.Popen([sys.executable, "-c", _LOAD, str(load_threads)], start_new_session=True)
    try:
        time.sleep(2)
        loaded, loaded_s = _study(runs, "loaded", study_args)
    finally:
        os.killpg(load.pid, signal.SIGKILL)
        load.wait()
    return Repeatability(compare(quiet, loaded), quiet_s, loaded_s, load_threads)
