"""Studies on a latency table's predictions, and latency-constrained studies (issue 16, item 3)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

import explore.evaluate as evaluate_module
from explore.measure.latency_table_jobs import build_table
from explore.cli import app
from explore.errors import ExploreError
from explore.measure import get_protocol
from explore.search import open_study, run_study, trials_frame
from explore.records import LATENCY_EXCESS
from tests.study_helpers import FIXED_SPACE, TINY_ARGS, one_thread, tiny_settings, write_space  # noqa: F401 - fixture

runner = CliRunner()


@pytest.fixture(scope="module")
def built_table(tmp_path_factory):
    """A table of the tiny space, for synthetic data's 3 channels and 10 classes, built once per module
    (on one thread) and copied for each test by :func:`table`."""
    folder = tmp_path_factory.mktemp("table")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        build_table(str(write_space(folder, name="table_space.toml")), get_protocol("cpu-latency", repeats=2, warmup=1),
                    folder / "table.json", archs=4, calibration=4, in_chans=3, num_classes=10, rounds=1)
    finally:
        torch.set_num_threads(old)
    return folder


@pytest.fixture
def table(tmp_path, built_table, one_thread):  # noqa: F811
    """The module's table, copied into this test's folder (as ``table.json``, its space beside it)."""
    for name in ("table.json", "table_space.toml"):
        shutil.copyfile(built_table / name, tmp_path / name)
    return tmp_path / "table.json"


def test_a_study_optimises_the_predicted_latency_and_times_nothing(tmp_path, table, monkeypatch):
    def no_timing(*args, **kwargs):
        raise AssertionError("a study with a latency table must not time models")

    monkeypatch.setattr(evaluate_module, "time_model", no_timing)
    from explore.measure.latency_table import REGRESSORS, LatencyTable

    assert LatencyTable.load(table).predictor["regressor"] in REGRESSORS  # chosen once, at build time
    summary = run_study(tiny_settings(tmp_path, trials=2, latency_table=str(table)))
    assert summary.complete == 2
    study = open_study(str(tmp_path / "runs" / "t"))
    for trial in study.get_trials():
        assert trial.user_attrs["latency_source"] == "table"
        assert trial.values[1] == trial.user_attrs["latency_predicted_ms"] > 0
        assert trial.user_attrs["latency_protocol_name"] == "cpu-latency"
        assert trial.user_attrs["latency_table_file"] == "table.json"
    frame = trials_frame(study)
    assert "latency_remeasured_ms" not in frame  # predicted latencies are not re-measured
    result = runner.invoke(app, ["report", str(tmp_path / "runs" / "t"), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert "predicted by the latency table `table.json`" in (tmp_path / "rep" / "summary.md").read_text()
    # on the target: how right were the predictions the study optimised?
    monkeypatch.undo()
    result = runner.invoke(app, ["latency-table", "--evaluate", str(table), "--study", str(tmp_path / "runs" / "t"),
                                 "--rounds", "1", "--out", str(tmp_path / "check")])
    assert result.exit_code == 0, result.output
    check = (tmp_path / "check" / "summary.md").read_text()
    assert "the 2 architectures of study" in check and "--study" in check
    predicted = sorted(t.values[1] for t in study.get_trials())
    import pandas as pd
    assert sorted(pd.read_csv(tmp_path / "check" / "predictions.csv")["predicted (ms/img)"]) == pytest.approx(predicted)


def test_a_budget_prunes_predicted_latencies_before_training_and_stores_the_constraint(tmp_path, table, monkeypatch):
    trained = []
    real = evaluate_module.train_model
    monkeypatch.setattr(evaluate_module, "train_model", lambda *a, **k: trained.append(1) or real(*a, **k))
    summary = run_study(tiny_settings(tmp_path, trials=1, latency_table=str(table), max_latency_ms=1e-6))
    assert summary.complete == 0 and not trained
    study = open_study(str(tmp_path / "runs" / "t"))
    over = [t for t in study.get_trials() if t.user_attrs.get("pruned_reason", "").startswith("over the latency")]
    assert over and all(t.user_attrs[LATENCY_EXCESS] > 0 for t in over)
    assert all("predicted > --max-latency-ms 1e-06" in t.user_attrs["pruned_reason"] for t in over)
    assert all(t.constraints == {LATENCY_EXCESS: t.user_attrs[LATENCY_EXCESS]} for t in over)  # stored as the constraint


def test_a_budget_on_measured_latency_prunes_after_timing_and_before_training(tmp_path, one_thread, monkeypatch):  # noqa: F811
    trained = []
    real = evaluate_module.train_model
    monkeypatch.setattr(evaluate_module, "train_model", lambda *a, **k: trained.append(1) or real(*a, **k))
    # one architecture: after the first trial its latency comes from the study's cache
    space = write_space(tmp_path, FIXED_SPACE, name="fixed.toml")
    run_study(tiny_settings(tmp_path, trials=1, max_latency_ms=1e-6, sampler="random", space=str(space)))
    study = open_study(str(tmp_path / "runs" / "t"))
    first = study.get_trials()[0]
    assert first.user_attrs["pruned_reason"].startswith("over the latency budget")
    assert "measured" in first.user_attrs["pruned_reason"] and first.user_attrs["latency_ms_per_img"] > 0
    assert not trained


def test_a_loose_budget_keeps_feasible_trials(tmp_path, table):
    summary = run_study(tiny_settings(tmp_path, trials=2, latency_table=str(table), max_latency_ms=1e6))
    assert summary.complete == 2
    trials = open_study(str(tmp_path / "runs" / "t")).get_trials()
    assert all(t.user_attrs[LATENCY_EXCESS] < 0 for t in trials)


def test_bad_tables_and_budgets_get_one_error_and_write_nothing(tmp_path, table):
    space = write_space(tmp_path)
    out = tmp_path / "runs"
    (tmp_path / "corrupt.json").write_text("{\"format\": \"explore-latency-table\", \"version\": 1}")
    for extra, field in ((["--latency-table", str(tmp_path / "corrupt.json")], "--latency-table"),
                         (["--latency-table", str(tmp_path / "none.json")], "--latency-table"),
                         (["--max-latency-ms", "-1"], "--max-latency-ms")):
        result = runner.invoke(app, ["study", "--space", str(space), "--out", str(out), *TINY_ARGS, *extra])
        assert result.exit_code == 1, result.output
        assert f"error: {field}" in result.output and not out.exists()
    with pytest.raises(ExploreError, match="--latency-table"):
        tiny_settings(tmp_path, latency_table=str(tmp_path / "none.json")).validate()


def test_a_table_from_elsewhere_is_accepted_with_a_warning(tmp_path, table):
    raw = json.loads(table.read_text())
    raw["device_name"], raw["versions"]["torch"] = "Some Phone CPU", "2.0.0"
    other = tmp_path / "phone.json"
    other.write_text(json.dumps(raw))
    space = write_space(tmp_path)
    result = runner.invoke(app, ["study", "--space", str(space), "--out", str(tmp_path / "runs"), "--trials", "1",
                                 "--no-report", "--latency-table", str(other), *TINY_ARGS])
    assert result.exit_code == 0, result.output
    assert "warning: the latency table was measured elsewhere: device 'Some Phone CPU'" in result.output
    assert "torch 2.0.0 in the table" in result.output
