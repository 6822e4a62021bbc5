"""Real processes: the fault-injection script (kill -9 and resume, workers on a journal file) and
four concurrent workers on a real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import optuna

from explore.search import FAULTS_ENV, open_study, trials_frame
from tests.study_helpers import (  # noqa: F401 - postgres_url is a fixture
    FIXED_SPACE,
    TINY_ARGS,
    explore_command,
    postgres_url,
    subprocess_env,
    unique_name,
    write_space,
)

FAULTS_SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "faults.py"


def test_fault_injection_script_survives_everything(tmp_path):
    result = subprocess.run([sys.executable, str(FAULTS_SCRIPT), "--workdir", str(tmp_path)], capture_output=True,
                            text=True, timeout=420, env=subprocess_env(), check=False)
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines[-1] == "faults injected 7, survived 7, trials lost 0", result.stdout
    details = lines[:-1]
    assert len(details) == 7 and all(line.startswith("survived: ") for line in details), result.stdout
    kill = next(line for line in details if "kill -9 mid-trial, then the same command" in line)
    assert "first run exit -9 with trial 5 RUNNING" in kill and "trial 5 FAIL, retry #" in kill
    assert "0 duplicated trial numbers" in result.stdout


def test_two_processes_with_the_same_seed_on_one_journal_run_distinct_architectures(tmp_path):
    space = write_space(tmp_path)  # 64 architectures
    journal = tmp_path / "shared.log"
    command = explore_command("study", "--space", str(space), "--study-name", "same-seed", "--storage", str(journal),
                              "--out", str(tmp_path / "runs"), *TINY_ARGS, "--epochs", "2", "--trials", "6",
                              "--seed", "0", "--heartbeat-interval", "2", "--no-report", "--no-remeasure-front")
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=subprocess_env(), cwd=tmp_path) for _ in range(2)]
    outputs = [proc.communicate(timeout=240)[0] for proc in procs]
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output

    frame = trials_frame(open_study("same-seed", str(journal)))
    complete = frame[frame["state"] == "COMPLETE"]
    assert len(complete) == 6
    assert complete["config_hash"].nunique() == 6  # same seed, yet no architecture twice
    assert not frame["number"].duplicated().any()
    assert frame["worker"].nunique() == 2  # both processes drew trials


def test_four_workers_on_postgresql_share_one_study_and_its_latency_cache(tmp_path, postgres_url):  # noqa: F811
    space = write_space(tmp_path)  # 64 architectures
    name = unique_name("pg4")
    common = ["study", "--space", str(space), "--study-name", name, "--storage", postgres_url, "--out",
              str(tmp_path / "runs"), *TINY_ARGS, "--heartbeat-interval", "2", "--no-report", "--no-remeasure-front"]
    # (without the end-of-study re-measurement, which is not what this test checks: each of the four
    # workers would re-measure every complete trial, 3 rounds each, one after another under the CPU lock)
    # one process measures trial 0's architecture, whose training then diverges (PRUNED), and
    # completes trial 1 ...
    first = subprocess.run(explore_command(*common, "--trials", "1"), capture_output=True, text=True, timeout=240,
                           env={**subprocess_env(), FAULTS_ENV: "nan@0"}, cwd=tmp_path, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    study = open_study(name, postgres_url)
    measured = study.trials[0]
    assert measured.state == optuna.trial.TrialState.PRUNED
    study.enqueue_trial(measured.params)  # trial 2: that architecture again (it is not COMPLETE: it runs)
    # ... then four processes (as on four machines, all with the same seed) bring the study to 9
    # complete trials together
    start = time.perf_counter()  # (--epochs 4: trials long enough for the four to overlap; the last --epochs wins)
    procs = [subprocess.Popen(explore_command(*common, "--epochs", "4", "--trials", "9"), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=subprocess_env(), cwd=tmp_path)
             for _ in range(4)]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    wall = time.perf_counter() - start
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output
        assert postgres_url.split(":")[2].split("@")[0] not in output  # the password is never printed

    frame = trials_frame(open_study(name, postgres_url))
    complete = frame[frame["state"] == "COMPLETE"]
    assert len(complete) == 9  # exactly --trials
    assert complete["config_hash"].nunique() == 9  # no architecture twice
    assert not frame["number"].duplicated().any()
    assert sorted(frame["number"]) == list(range(len(frame)))
    assert not (frame["state"] == "RUNNING").any()
    concurrent = complete[complete["number"] > 1]
    assert concurrent["worker"].nunique() >= 2, concurrent["worker"].tolist()
    # the latency cache is shared: trial 2 reused trial 0's measurement, made by another process
    again = frame.set_index("number").loc[2]
    assert again["state"] == "COMPLETE" and again["config_hash"] == frame.loc[0, "config_hash"]
    assert again["latency_cached"] and again["latency_measured_by_trial"] == 0
    assert again["latency_first_ms"] == frame.loc[0, "latency_ms_per_img"]  # the trial's own figure: the cached one
    assert again["worker"] != frame.loc[0, "worker"]
    # ... and every architecture was measured once
    study = optuna.load_study(study_name=name, storage=open_study(name, postgres_url)._storage)
    measured_hashes = frame.loc[frame["latency_median_ms"].notna(), "config_hash"]
    assert sum(key.startswith("latency_cache:") for key in study.user_attrs) == measured_hashes.nunique()
    assert (frame["latency_cached"] == False).sum() == measured_hashes.nunique()  # noqa: E712 - a column
    print(f"4 workers on PostgreSQL: {len(complete) - 1} trials in {wall:.1f} s wall, "
          f"{frame['number'].duplicated().sum()} duplicated numbers, {len(frame) - len(complete)} not complete, "
          f"trials per worker {concurrent['worker'].value_counts().tolist()}")
