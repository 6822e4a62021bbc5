"""Real processes: the fault-injection script (kill -9 and resume, workers on a journal file) and
four concurrent workers on a real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys
import time

import optuna

from explore.study import open_study, trials_frame
from tests.study_helpers import (  # noqa: F401 - postgres_url is a fixture
    FIXED_SPACE,
    TINY_ARGS,
    explore_command,
    postgres_url,
    subprocess_env,
    unique_name,
    write_space,
)


def test_fault_injection_script_survives_everything(tmp_path):
    result = subprocess.run([sys.executable, "-m", "explore.faults", "--workdir", str(tmp_path)], capture_output=True,
                            text=True, timeout=420, env=subprocess_env(), check=False)
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines[-1] == "faults injected 7, survived 7, trials lost 0", result.stdout
    details = lines[:-1]
    assert len(details) == 7 and all(line.startswith("survived: ") for line in details), result.stdout
    kill = next(line for line in details if "kill -9 mid-trial, then the same command" in line)
    assert "first run exit -9 with trial 5 RUNNING" in kill and "trial 5 FAIL, retry #" in kill
    assert "0 duplicated trial numbers" in result.stdout


def test_four_workers_on_postgresql_share_one_study_and_its_latency_cache(tmp_path, postgres_url):  # noqa: F811
    space = write_space(tmp_path, FIXED_SPACE, "fixed.toml")
    name = unique_name("pg4")
    common = ["study", "--space", str(space), "--study-name", name, "--storage", postgres_url, "--out",
              str(tmp_path / "runs"), *TINY_ARGS, "--heartbeat-interval", "2", "--no-report"]
    # one process measures the only architecture of the space first ...
    first = subprocess.run(explore_command(*common, "--trials", "1"), capture_output=True, text=True, timeout=240,
                           env=subprocess_env(), cwd=tmp_path, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    # ... then four processes (as on four machines) bring the study to 9 complete trials together
    start = time.perf_counter()  # (--epochs 4: trials long enough for the four to overlap; the last --epochs wins)
    procs = [subprocess.Popen(explore_command(*common, "--epochs", "4", "--trials", "9", "--seed", str(i)),
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=subprocess_env(), cwd=tmp_path)
             for i in range(4)]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    wall = time.perf_counter() - start
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output
        assert postgres_url.split(":")[2].split("@")[0] not in output  # the password is never printed

    frame = trials_frame(open_study(name, postgres_url))
    complete = frame[frame["state"] == "COMPLETE"]
    assert len(complete) == 9  # exactly --trials
    assert not frame["number"].duplicated().any()
    assert sorted(frame["number"]) == list(range(len(frame)))
    assert not (frame["state"] == "RUNNING").any()
    concurrent = complete[complete["number"] > 0]
    assert concurrent["worker"].nunique() >= 2, concurrent["worker"].tolist()
    # the latency cache is shared: every later trial reused trial 0's measurement, from another process
    assert concurrent["latency_cached"].all()
    assert (concurrent["latency_measured_by_trial"] == 0).all()
    assert (concurrent["latency_ms"] == complete.iloc[0]["latency_ms"]).all()
    assert (concurrent["worker"] != complete.iloc[0]["worker"]).all()
    study = optuna.load_study(study_name=name, storage=open_study(name, postgres_url)._storage)
    assert sum(key.startswith("latency_cache:") for key in study.user_attrs) == 1
    print(f"4 workers on PostgreSQL: {len(complete) - 1} trials in {wall:.1f} s wall, "
          f"{frame['number'].duplicated().sum()} duplicated numbers, {len(frame) - len(complete)} not complete, "
          f"trials per worker {concurrent['worker'].value_counts().tolist()}")
