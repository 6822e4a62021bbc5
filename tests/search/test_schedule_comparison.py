"""explore compare-schedules: budget split, hypervolume curves, budget ratio, the tiny end-to-end run
(resumable), bad input."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest
from typer.testing import CliRunner

from explore.cli import app
from explore.errors import ExploreError
from explore.search import open_study
from explore.search.schedule_comparison import CompareSettings, architectures_for, budget_ratio, hv_curve
from tests.rerender_helpers import assert_rerender_is_one_error_line
from tests.study_helpers import explore_command, subprocess_env, write_space

runner = CliRunner()


def test_the_budget_buys_more_architectures_under_a_schedule():
    settings = CompareSettings(budget=16, epochs=2, rungs=(0.5, 1, 2), eta=2)
    assert architectures_for(settings, "full") == 8
    assert architectures_for(settings, "sha") == 16  # 0.5 + 0.5/2 + 1/4 = 1 epoch per architecture
    assert architectures_for(settings, "hyperband") < 16


def test_hv_curve_counts_only_top_rung_jobs_and_the_ratio_reads_the_mean_curve():
    jobs = pd.DataFrame({"number": [0, 1, 2, 3], "rung": [0, 0, 1, 1], "top1": [50, 60, 70, 80],
                         "latency_ms": [1.0, 0.5, 1.0, 0.5], "images": [100, 100, 100, 100]})
    curve = hv_curve(jobs, top_rung=1, n_train=100, ref_top1=10, ref_latency=2)
    assert curve["spent_epochs"].tolist() == [1, 2, 3, 4]
    assert curve["hv"].tolist() == [0, 0, 60 * 1.0, 70 * 1.5]  # rung-0 jobs add nothing; 80 % @ 0.5 dominates
    other = curve.assign(hv=[0, 95, 95, 95])
    # mean of the two runs: 0, 47.5, 77.5, 100 -> reaches 77.5 at 3 epochs spent, of a full budget of 6
    assert budget_ratio([curve, other], 77.5, 6.0) == pytest.approx(0.5)
    assert budget_ratio([curve, other], 100.5, 6.0) is None


def test_bad_comparisons_are_refused_before_anything_is_written(tmp_path):
    for change, option in [({"schedules": ("sha",)}, "--schedules"), ({"schedules": ("full", "x")}, "--schedules"),
                           ({"seeds": (1, 1)}, "--seeds"), ({"budget": 1.0}, "--budget"),
                           ({"long_epochs": 0}, "--long-epochs"), ({"rungs": (1.0, 0.5, 2.0)}, "--rungs")]:
        with pytest.raises(ExploreError, match=option):
            CompareSettings(out=str(tmp_path / "c"), **change).validate()
    space = write_space(tmp_path)
    result = subprocess.run(explore_command("compare-schedules", "--space", str(space), "--schedules", "full",
                                            "--out", str(tmp_path / "c")), capture_output=True, text=True,
                            timeout=120, env=subprocess_env(), check=False)
    assert result.returncode == 1 and result.stderr.count("error:") == 1 and "--schedules" in result.stderr
    assert not (tmp_path / "c").exists()


def test_tiny_comparison_end_to_end_and_resumed(tmp_path):
    space = write_space(tmp_path)
    command = explore_command(
        "compare-schedules", "--space", "space.toml", "--schedules", "full,sha", "--seeds", "0,1", "--budget", "4",
        "--epochs", "2", "--rungs", "0.5,1,2", "--eta", "2", "--long-epochs", "1", "--dataset", "synthetic",
        "--max-train", "64", "--max-val", "32", "--batch-size", "32", "--train-threads", "1", "--out", "cmp")
    first = subprocess.run(command, capture_output=True, text=True, timeout=400, cwd=space.parent,
                           env=subprocess_env(), check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    out = tmp_path / "cmp"
    for name in ("summary.md", "hv_vs_budget.png", "runs.csv", "curves.csv", "fronts.csv", "long_runs.json",
                 "front_latency.json", "rung_pairs.csv", "comparison.json"):
        assert (out / name).is_file(), name
    pairs = pd.read_csv(out / "rung_pairs.csv")  # every sha promotion with its top-1 at both rungs
    assert len(pairs) and set(pairs["schedule"]) == {"sha"} and (pairs["to (epochs)"] > pairs["from (epochs)"]).all()
    # the summary, its τ table included, is written again from the stored files alone (issue 28)
    again = runner.invoke(app, ["rerender", str(out), "--out", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    for name in ("summary.md", "runs.csv", "curves.csv", "fronts.csv", "rung_pairs.csv", "comparison.json"):
        assert (tmp_path / "again" / name).read_text() == (out / name).read_text(), name
    stored = json.loads((out / "comparison.json").read_text())
    del stored["reference"]
    (tmp_path / "again" / "comparison.json").write_text(json.dumps(stored))
    assert_rerender_is_one_error_line(tmp_path / "again", tmp_path / "bad", "comparison.json: reference")
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(zip(runs["schedule"], runs["seed"])) == [("full", 0), ("full", 1), ("sha", 0), ("sha", 1)]
    assert runs.set_index("schedule").loc["full", "architectures"].tolist() == [2, 2]
    assert runs.set_index("schedule").loc["sha", "architectures"].tolist() == [4, 4]
    assert (runs["spent_epochs"] <= 4 + 1e-9).all() and (runs["long_hv"] >= 0).all()
    fronts = pd.read_csv(out / "fronts.csv")
    long_runs = json.loads((out / "long_runs.json").read_text())
    (stored,) = long_runs.values()
    assert set(fronts["config_hash"]) == set(stored)  # every front architecture re-trained once
    text = (out / "summary.md").read_text()
    assert "Made by: `explore compare-schedules --space space.toml --schedules full,sha --seeds 0,1" in text
    assert "budget to reach full's final HV" in text and str(tmp_path) not in text
    # the same command again trains nothing new
    jobs = {run: len(open_study(str(out / "runs" / run)).trials) for run in ("full-seed0", "sha-seed1")}
    second = subprocess.run(command, capture_output=True, text=True, timeout=400, cwd=space.parent,
                            env=subprocess_env(), check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "long budget 1/" not in second.stdout and "measuring the latency" not in second.stdout
    assert {run: len(open_study(str(out / "runs" / run)).trials) for run in jobs} == jobs
    assert json.loads((out / "long_runs.json").read_text()) == long_runs
    assert not (out / "runs" / "sha-seed0" / "checkpoints").exists()  # final runs keep no training states
