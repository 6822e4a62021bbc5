"""Benchmark: is a study's latency repeatable on a shared machine?

Run: ``python -m explore.bench_repeatability [--load-threads 2] [--out reports/latency_repeatability]
[-- STUDY OPTIONS]``.

Runs the same study twice from the same seed (the README's main job by default: ``explore study
--space cga``, 8 trials): once on the otherwise idle machine, once while a competing load (a process
multiplying matrices on ``--load-threads`` threads, like other jobs sharing the cores) runs beside
it. Both runs sample the same architectures and, on the CPU, train them to the same top-1, so any
difference in their latencies or Pareto fronts comes from the measurement. It prints, per
architecture, the latency of both runs and their ratio, the largest deviation, whether the fronts
hold the same architectures, and how busy the loaded run found the machine. A table, not a timed
test: the target (within 10 %, the same front) is read off one run of this script.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

__all__ = ["main", "compare"]

_LOAD = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
a = torch.randn(1024, 1024)
while True:
    a @ a
"""


def _study(runs: Path, name: str, extra: list[str]) -> tuple[pd.DataFrame, float]:
    from explore.study import open_study, trials_frame

    argv = [sys.executable, "-m", "explore.cli", "study", "--space", "cga", "--out", str(runs), "--study-name", name,
            "--no-report", *extra]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    (runs / f"{name}.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    if done.returncode != 0:
        raise SystemExit(f"error: the {name} study failed (exit {done.returncode}); see {runs / (name + '.log')}")
    return trials_frame(open_study(str(runs / name))), seconds


def compare(quiet: pd.DataFrame, loaded: pd.DataFrame) -> pd.DataFrame:
    """Per architecture (config hash) in both runs: top-1, final latency (ms/img), ratio loaded/quiet,
    the first-measured latencies, on-front flags and the loaded run's contention figures."""
    cols = ["config_hash", "summary", "top1", "latency_ms", "latency_first_ms", "pareto",
            "latency_contention_ratio", "latency_clean_share", "latency_contended"]

    def pick(frame: pd.DataFrame) -> pd.DataFrame:
        done = frame[frame["state"] == "COMPLETE"]
        return done[[c for c in cols if c in done]].set_index("config_hash")

    q, lo = pick(quiet), pick(loaded)
    both = q.join(lo, lsuffix="_quiet", rsuffix="_loaded", how="inner")
    both["ratio"] = both["latency_ms_loaded"] / both["latency_ms_quiet"]
    both["ratio_first"] = both["latency_first_ms_loaded"] / both["latency_first_ms_quiet"]
    return both.reset_index()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: run both studies, print and (with ``--out``) write the comparison."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    study_args = args_in[args_in.index("--") + 1:] if "--" in args_in else []
    own = args_in[: args_in.index("--")] if "--" in args_in else args_in
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load-threads", type=int, default=2, help="threads of the competing load")
    parser.add_argument("--out", default=None, help="folder for latency_repeatability.md/.csv")
    parser.add_argument("--work", default="runs/repeatability", help="run folder of the two studies")
    args = parser.parse_args(own)
    runs = Path(args.work)
    runs.mkdir(parents=True, exist_ok=True)
    quiet, quiet_s = _study(runs, "quiet", study_args)
    load = subprocess.Popen([sys.executable, "-c", _LOAD, str(args.load_threads)], start_new_session=True)
    try:
        time.sleep(2)
        loaded, loaded_s = _study(runs, "loaded", study_args)
    finally:
        os.killpg(load.pid, signal.SIGKILL)
        load.wait()
    table = compare(quiet, loaded)
    front_q = set(table.loc[table["pareto_quiet"].astype(bool), "config_hash"])
    front_l = set(table.loc[table["pareto_loaded"].astype(bool), "config_hash"])
    worst = float((table["ratio"] - 1).abs().max())
    worst_first = float((table["ratio_first"] - 1).abs().max())
    same_top1 = bool((table["top1_quiet"] == table["top1_loaded"]).all())
    command = "python -m explore.bench_repeatability " + " ".join(shlex.quote(a) for a in args_in)
    shown = table[["summary_quiet", "top1_quiet", "latency_ms_quiet", "latency_ms_loaded", "ratio",
                   "latency_first_ms_quiet", "latency_first_ms_loaded", "ratio_first", "pareto_quiet",
                   "pareto_loaded", "latency_contention_ratio_loaded", "latency_clean_share_loaded"]].rename(
        columns={"summary_quiet": "architecture", "top1_quiet": "top-1 (%)"})
    text = "\n".join([
        "# Latency repeatability on a shared machine", "",
        f"Command: `{command}`", "",
        f"The same study twice from the same seed: once on the idle machine ({quiet_s:.0f} s), once beside a "
        f"competing load on {args.load_threads} thread(s) ({loaded_s:.0f} s); {len(table)} architectures in both "
        f"runs, top-1 {'identical' if same_top1 else 'NOT identical'} between the runs. Latency in ms per image "
        "(`latency` = the figure the study uses, after the end-of-study re-measurement of the front; `first` = "
        "the trial's own measurement).", "",
        f"- largest deviation of the study's latency, loaded vs quiet: **{worst * 100:.1f} %** "
        f"(first measurements: {worst_first * 100:.1f} %); target: within 10 %",
        f"- Pareto fronts: quiet {sorted(front_q)} · loaded {sorted(front_l)} -> "
        f"**{'the same' if front_q == front_l else 'different'}**", "",
        shown.to_markdown(index=False, floatfmt=".4g"), ""])
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "latency_repeatability.md").write_text(text, encoding="utf-8")
        table.to_csv(out / "latency_repeatability.csv", index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
