"""Fault injection: break studies on purpose and check that no result is lost or duplicated.

    python tests/tools/faults.py [--workdir DIR]

Runs real ``explore study`` processes on a tiny space and synthetic data (about a minute on two
CPU cores) and injects, through the study's fault-injection hook (``EXPLORE_INJECT_FAULTS``, see
:mod:`explore.search.faults`, the one seam) or from outside:

1. an out-of-memory error in a trial (``torch.cuda.OutOfMemoryError``) -> that trial PRUNED with
   ``out of memory: ...``, the study goes on;
2. a NaN loss (weights filled with NaN) -> PRUNED with ``non-finite loss: ...``;
3. an exception in a trial -> FAIL with ``fail_reason``;
4. ``kill -9`` of the study process in the middle of a trial; then the same command again -> it
   resumes: the dead trial's heartbeat goes stale, it becomes FAIL and is retried, every COMPLETE
   trial of the first run is still there with the same values, and it ends at exactly ``--trials``;
5. a corrupt space file -> the CLI refuses it with one ``error:`` line, exit code 1, nothing written;
6. concurrent writers: three ``--workers`` on one journal file -> exactly ``--trials`` COMPLETE
   trials, no trial number twice;
7. ``kill -9`` of one of those workers in the middle of a trial -> the others retry its trial.

It prints one line per fault, then, last, ``faults injected N, survived M, trials lost K``; the
exit code is 0 only when every fault was survived and no trial was lost.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FaultReport", "run_faults", "main", "TINY_SPACE"]

TINY_SPACE = (Path(__file__).resolve().parents[1] / "fixtures" / "spaces" / "tiny.toml").read_text(encoding="utf-8")
"""The tiny space the faults run on (``tests/fixtures/spaces/tiny.toml``)."""

_BUDGET = ["--dataset", "synthetic", "--max-train", "64", "--max-val", "32", "--batch-size", "32",
           "--epochs", "1", "--latency-repeats", "5", "--heartbeat-interval", "1", "--no-report",
           "--no-remeasure-front"]  # the faults are about trials; the end-of-study re-measurement is tested elsewhere


@dataclass
class FaultReport:
    """Outcome of :func:`run_faults`.

    Attributes:
        injected: faults injected.
        survived: faults after which the study (or the CLI) behaved as promised.
        lost: COMPLETE trials lost or changed by a fault, plus COMPLETE trials missing at the end.
        details: one line per fault.
    """

    injected: int = 0
    survived: int = 0
    lost: int = 0
    details: list[str] = field(default_factory=list)

    def record(self, name: str, ok: bool, detail: str) -> None:
        """Count one injected fault."""
        self.injected += 1
        self.survived += int(ok)
        self.details.append(f"{'survived' if ok else 'NOT SURVIVED'}: {name}: {detail}")

    @property
    def line(self) -> str:
        """The closing line."""
        return f"faults injected {self.injected}, survived {self.survived}, trials lost {self.lost}"


def _explore(args: list[str], cwd: Path, faults: str = "", timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", EXPLORE_INJECT_FAULTS=faults)
    env.pop("EXPLORE_STORAGE", None)
    return subprocess.run([sys.executable, "-m", "explore.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _frame(run_dir: Path):  # noqa: ANN202 - DataFrame
    from explore.search import open_study, trials_frame

    return trials_frame(open_study(str(run_dir)))


def _complete(frame) -> dict[int, tuple[float, float]]:  # noqa: ANN001 - DataFrame
    done = frame[frame["state"] == "COMPLETE"]
    return {int(r.number): (float(r.top1), float(r.latency_first_ms)) for r in done.itertuples()}


def _reason(frame, number: int, column: str) -> str:  # noqa: ANN001 - DataFrame
    rows = frame[frame["number"] == number]
    if rows.empty or column not in rows:
        return ""
    value = rows.iloc[0][column]
    return value if isinstance(value, str) else ""


def _state(frame, number: int) -> str:  # noqa: ANN001 - DataFrame
    rows = frame[frame["number"] == number]
    return "" if rows.empty else str(rows.iloc[0]["state"])


def _trial_faults_and_kill(work: Path, report: FaultReport) -> None:
    """Faults 1-4 on one single-worker SQLite study of 5 trials."""
    trials = 5
    command = ["study", "--space", "space.toml", "--study-name", "single", "--trials", str(trials), *_BUDGET]
    faults = "oom@1,nan@2,error@3,kill@5"
    first = _explore(command, work, faults)
    frame = _frame(work / "runs" / "single")
    later_complete = bool((frame[frame["number"] > 1]["state"] == "COMPLETE").any())
    report.record("out of memory in trial 1", _state(frame, 1) == "PRUNED" and later_complete
                  and _reason(frame, 1, "pruned_reason").startswith("out of memory"),
                  f"trial 1 {_state(frame, 1)} ({_reason(frame, 1, 'pruned_reason')[:40]}...)")
    report.record("NaN loss in trial 2", _state(frame, 2) == "PRUNED"
                  and _reason(frame, 2, "pruned_reason").startswith("non-finite loss"),
                  f"trial 2 {_state(frame, 2)} ({_reason(frame, 2, 'pruned_reason')})")
    report.record("exception in trial 3", _state(frame, 3) == "FAIL"
                  and "RuntimeError" in _reason(frame, 3, "fail_reason"),
                  f"trial 3 {_state(frame, 3)} ({_reason(frame, 3, 'fail_reason')})")
    before = _complete(frame)
    killed = first.returncode == -signal.SIGKILL and _state(frame, 5) == "RUNNING"

    second = _explore(command, work, faults)  # the same command again
    frame = _frame(work / "runs" / "single")
    after = _complete(frame)
    lost = sum(1 for number, values in before.items() if after.get(number) != values)
    report.lost += lost + max(0, trials - len(after))
    retried = frame[frame["retry_of"] == 5] if "retry_of" in frame else frame.iloc[0:0]
    ok = (killed and second.returncode == 0 and len(after) == trials and lost == 0
          and _state(frame, 5) == "FAIL" and not retried.empty and not frame["number"].duplicated().any()
          and not (frame["state"] == "RUNNING").any())
    retry_text = f"#{int(retried.iloc[0]['number'])} {retried.iloc[0]['state']}" if not retried.empty else "none"
    report.record("kill -9 mid-trial, then the same command", ok,
                  f"first run exit {first.returncode} with trial 5 RUNNING; {len(before)} complete before, "
                  f"{len(after)} after (target {trials}), {lost} lost; trial 5 {_state(frame, 5)}, retry {retry_text}")


def _corrupt_space(work: Path, report: FaultReport) -> None:
    """Fault 5: a space file cut in the middle with binary garbage appended."""
    text = TINY_SPACE.encode()
    (work / "corrupt.toml").write_bytes(text[: len(text) // 2] + b"\x00\xff[[stage.width = {")
    out = work / "runs-corrupt"
    result = _explore(["study", "--space", "corrupt.toml", "--out", str(out), *_BUDGET], work)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    ok = result.returncode == 1 and len(errors) == 1 and "corrupt.toml" in errors[0] and not out.exists() \
        and "Traceback" not in result.stderr
    report.record("corrupt space file", ok, f"exit {result.returncode}, {errors[0][:90] if errors else 'no error line'}"
                                            f"; run folder {'written' if out.exists() else 'not written'}")


def _concurrent_writers(work: Path, report: FaultReport) -> None:
    """Faults 6-7: three workers on one journal file, one of them killed in the middle of a trial."""
    trials = 6
    result = _explore(["study", "--space", "space.toml", "--study-name", "workers", "--trials", str(trials),
                       "--workers", "3", *_BUDGET], work, "kill@2")
    frame = _frame(work / "runs" / "workers")
    complete = _complete(frame)
    report.lost += max(0, trials - len(complete))
    duplicates = int(frame["number"].duplicated().sum())
    writers = frame["worker"].dropna().nunique() if "worker" in frame else 0
    report.record("3 concurrent writers on one journal file", result.returncode == 0 and len(complete) == trials
                  and duplicates == 0 and writers >= 2,
                  f"{len(complete)} complete (target {trials}, exactly), {duplicates} duplicated trial numbers, "
                  f"{writers} processes wrote trials")
    retried = frame[frame["retry_of"] == 2] if "retry_of" in frame else frame.iloc[0:0]
    report.record("kill -9 of one worker mid-trial", _state(frame, 2) == "FAIL" and not retried.empty
                  and not (frame["state"] == "RUNNING").any(),
                  f"trial 2 {_state(frame, 2)}, retried as "
                  f"{', '.join('#' + str(int(n)) for n in retried['number']) or 'nothing'}")


def run_faults(workdir: Path, *, log: Callable[[str], None] = print) -> FaultReport:
    """Inject every fault into studies under ``workdir`` and check what survives.

    Args:
        workdir: an empty or new folder (run folders and space files are written there).
        log: called with each detail line.

    Returns:
        The :class:`FaultReport`.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "space.toml").write_text(TINY_SPACE, encoding="utf-8")
    report = FaultReport()
    for scenario in (_trial_faults_and_kill, _corrupt_space, _concurrent_writers):
        start = len(report.details)
        scenario(workdir, report)
        for line in report.details[start:]:
            log(line)
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python tests/tools/faults.py [--workdir DIR]``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python tests/tools/faults.py", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", help="folder for the studies (default: a new temporary folder)")
    args = parser.parse_args(argv)
    if args.workdir:
        report = run_faults(Path(args.workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="explore-faults-") as tmp:
            report = run_faults(Path(tmp))
    print(report.line, flush=True)
    return 0 if report.survived == report.injected and report.lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
