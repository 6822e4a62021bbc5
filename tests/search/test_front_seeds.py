"""The study front re-trained with common seeds: which members are distinguishable (issue 19, item 3)."""

from __future__ import annotations

import math
import random

import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

from explore.cli import app
from explore.errors import ExploreError
from explore.search import open_study, run_study, trials_frame
from explore.report import write_report
from explore.search.front_seeds import (FRONT_RUNS_COLUMNS, FRONT_SEED_OFFSET, FRONT_SEED_PREFIX, front_runs,
                                        front_runs_table, front_table, retrain_front, runs_of_table)
from tests.study_helpers import one_thread, tiny_settings  # noqa: F401 - fixture

runner = CliRunner()


def _frame(members: list[tuple[int, float, float]]) -> pd.DataFrame:
    """A trials frame whose COMPLETE trials are all on the front: (number, latency ms, top-1 %)."""
    return pd.DataFrame({
        "number": [m[0] for m in members], "state": "COMPLETE", "pareto": True,
        "latency_ms": [m[1] for m in members], "top1": [m[2] for m in members],
        "summary": [f"arch{m[0]}" for m in members], "config": "{}",
    })


def _seeded(means: dict[int, float], shared_sd: float, own_sd: float, seeds: int, rng: random.Random
            ) -> dict[int, dict[int, float]]:
    """Per-seed top-1 with a swing every member shares (the seed's data order) plus its own noise."""
    swing = {s: rng.gauss(0, shared_sd) for s in range(seeds)}
    return {n: {s: m + swing[s] + rng.gauss(0, own_sd) for s in range(seeds)} for n, m in means.items()}


def test_front_table_marks_a_member_whose_gain_beats_the_seed_noise():
    rng = random.Random(0)
    # 3: clearly better than 1; 5: as accurate as 3 (slower for nothing); 7: less accurate than 3
    runs = _seeded({1: 80.0, 3: 81.5, 5: 81.5, 7: 79.0}, shared_sd=1.0, own_sd=0.03, seeds=4, rng=rng)
    table = front_table(_frame([(1, 1.0, 79.0), (3, 1.5, 80.0), (5, 2.0, 81.0), (7, 3.0, 82.0)]), runs)
    assert table["trial"].tolist() == [1, 3, 5, 7]
    assert table["seeds"].tolist() == [4, 4, 4, 4]
    verdicts = dict(zip(table["trial"], table["verdict"]))
    assert verdicts[1] == "fastest"
    assert verdicts[3] == "more accurate than #1"
    assert verdicts[5].startswith("as accurate as #3")
    best = max((3, 5), key=lambda n: sum(runs[n].values()))  # the faster member of highest mean
    assert verdicts[7].startswith(f"less accurate than #{best}")
    assert table["distinguishable"].tolist() == [True, True, False, False]
    row = table.set_index("trial").loc[3]
    assert row["vs"] == 1 and row["Δ low"] > 0 and abs(row["Δ top-1"] - 1.5) < 0.1
    # the shared swing (std 1) would hide a 1.5-point gain unpaired; paired it cancels
    assert row["CI high"] - row["CI low"] > row["Δ high"] - row["Δ low"]


def test_front_table_says_open_with_noisy_seeds_and_not_retrained_members():
    rng = random.Random(1)
    runs = _seeded({1: 80.0, 3: 80.3}, shared_sd=0.5, own_sd=1.0, seeds=2, rng=rng)
    table = front_table(_frame([(1, 1.0, 79.0), (3, 1.5, 80.0), (4, 2.0, 81.0)]), runs)
    verdicts = dict(zip(table["trial"], table["verdict"]))
    assert verdicts[3] == "not distinguishable from #1 at 2 seeds"
    assert verdicts[4] == "not re-trained"
    assert table["distinguishable"].tolist() == [True, False, False]
    assert front_table(_frame([(1, 1.0, 79.0)]), {}).empty


def test_front_runs_table_holds_every_stored_run_by_trial_then_seed():
    study = optuna.create_study(directions=["maximize", "minimize"])
    # stored out of order, one run without its training seconds, one trained with torch's threads (None)
    study.set_user_attr(f"{FRONT_SEED_PREFIX}7", {"10001": {"top1": 81.25, "train_s": 3.0, "threads": 2},
                                                   "10000": {"top1": 80.5, "threads": None}})
    study.set_user_attr(f"{FRONT_SEED_PREFIX}2", {"10000": {"top1": 70, "train_s": 1.5, "threads": 2, "at": 1.0}})
    study.set_user_attr("settings", {"seed": 0})
    table = front_runs_table(study)
    assert list(table.columns) == list(FRONT_RUNS_COLUMNS)
    assert table[["trial", "seed", "top-1 (%)"]].values.tolist() == [[2, 10000, 70.0], [7, 10000, 80.5],
                                                                     [7, 10001, 81.25]]
    assert table["threads"].tolist() == [2, None, 2]
    assert table["train (s)"].iloc[0] == 1.5 and math.isnan(table["train (s)"].iloc[1])
    runs = runs_of_table(table)
    assert runs == front_runs(study) == {2: {10000: 70.0}, 7: {10000: 80.5, 10001: 81.25}}
    assert [list(r) for r in runs.values()] == [[10000], [10000, 10001]]  # the order the table sums them in
    assert front_runs_table(optuna.create_study(directions=["maximize", "minimize"])).empty


@pytest.mark.parametrize("rows, needle", [
    ({"trial": [1, 1], "seed": [5, 5], "top-1 (%)": [80.0, 81.0]}, "one row per (trial, seed)"),
    ({"trial": [1], "seed": [5]}, "missing: top-1 (%)"),
    ({"trial": [1], "seed": [5], "top-1 (%)": [180.0]}, "in [0, 100]"),
    ({"trial": [1.5], "seed": [5], "top-1 (%)": [80.0]}, "integer trial and seed"),
], ids=["twice", "no-top-1", "over-100", "fractional-trial"])
def test_runs_of_table_rejects_a_table_that_is_no_set_of_runs(rows, needle):
    with pytest.raises(ExploreError, match="front_seed_runs.csv") as info:
        runs_of_table(pd.DataFrame(rows))
    assert needle in str(info.value)


def test_write_report_refuses_a_front_without_its_runs(tmp_path):
    frame = _frame([(1, 1.0, 79.0), (3, 1.5, 80.0)])
    front = front_table(frame, {1: {0: 79.0, 1: 80.0}, 3: {0: 80.5, 1: 81.0}})
    with pytest.raises(ValueError, match="front_seed_runs"):
        write_report(frame, tmp_path / "r", {"study_name": "s", "settings": {}}, "explore report runs/s", front)
    assert not (tmp_path / "r").exists()


def test_retrain_front_trains_common_seeds_once_and_resumes(tmp_path, one_thread):  # noqa: F811
    summary = run_study(tiny_settings(tmp_path, trials=3))
    assert summary.complete == 3
    study = open_study(str(tmp_path / "runs" / "t"))
    front = trials_frame(study)
    members = sorted(front.loc[front["pareto"].astype(bool), "number"].astype(int))
    seen: list[tuple[int, int]] = []
    assert retrain_front(study, 2, on_run=lambda n, i, top1, s: seen.append((n, i))) == 2 * len(members)
    assert [i for _, i in seen] == [0] * len(members) + [1] * len(members)  # seed-major
    runs = front_runs(open_study(str(tmp_path / "runs" / "t")))
    assert sorted(runs) == members
    assert all(sorted(r) == [FRONT_SEED_OFFSET, FRONT_SEED_OFFSET + 1] for r in runs.values())
    assert all(0.0 <= v <= 100.0 for r in runs.values() for v in r.values())
    assert retrain_front(study, 2) == 0  # stored runs count
    assert retrain_front(study, 3) == len(members)  # one more seed each
    table = front_table(trials_frame(study), front_runs(study))
    assert table["seeds"].tolist() == [3] * len(members)


def test_retrain_front_rejects_fewer_than_two_seeds(tmp_path, one_thread):  # noqa: F811
    run_study(tiny_settings(tmp_path, trials=1))
    study = open_study(str(tmp_path / "runs" / "t"))
    with pytest.raises(ExploreError, match="front-seeds"):
        retrain_front(study, 1)
    assert front_runs(study) == {}


def test_report_front_seeds_writes_the_section_and_its_files(tmp_path, one_thread):  # noqa: F811
    run_study(tiny_settings(tmp_path, trials=2))
    run_dir, out = str(tmp_path / "runs" / "t"), tmp_path / "rep"
    bad = runner.invoke(app, ["report", run_dir, "--front-seeds", "1", "--out", str(out)])
    assert bad.exit_code == 1 and "--front-seeds" in bad.output and not out.exists()
    result = runner.invoke(app, ["report", run_dir, "--front-seeds", "2", "--out", str(out), "--train-threads", "1"])
    assert result.exit_code == 0, result.output
    summary = (out / "summary.md").read_text()
    assert "## Front re-trained with common seeds (2 per member)" in summary
    assert "--front-seeds 2" in summary
    table = pd.read_csv(out / "front_seeds.csv")
    assert (table["seeds"] == 2).all() and (out / "front_seeds.png").stat().st_size > 0
    assert "`front_seed_runs.csv` (every run it is computed from" in summary
    assert f"wrote {out / 'front_seed_runs.csv'}" in result.output
    # the runs beside the table: exactly the stored ones, and the table follows from them
    runs = pd.read_csv(out / "front_seed_runs.csv")
    stored = front_runs(open_study(run_dir))
    assert [(int(t), int(s), float(v)) for t, s, v in zip(runs["trial"], runs["seed"], runs["top-1 (%)"])] == \
        [(t, s, v) for t, seeds in stored.items() for s, v in seeds.items()]
    assert len(runs) == 2 * len(table) and (runs["train (s)"] > 0).all() and (runs["threads"] == 1).all()
    assert runs.groupby("trial")["top-1 (%)"].mean().tolist() == pytest.approx(table["mean top-1 (%)"].tolist())
    # a later plain report still shows the stored runs
    again = runner.invoke(app, ["report", run_dir, "--out", str(tmp_path / "rep2")])
    assert again.exit_code == 0 and (tmp_path / "rep2" / "front_seeds.csv").is_file()
