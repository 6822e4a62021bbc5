"""Building a latency table on a tiny space, resuming it, evaluating it; the CLI (issue 16)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

import explore.measure.latency_table_jobs as lt
from explore.measure.latency_table_jobs import build_table, evaluate_table
from explore.cli import app
from explore.errors import ExploreError
from explore.measure import get_protocol
from explore.measure.protocols import CONTENTION_ATTEMPTS
from explore.measure.latency_table import LatencyTable, fit_predictor
from tests.study_helpers import one_thread, write_space  # noqa: F401 - fixture

runner = CliRunner()
PROTOCOL = get_protocol("cpu-latency", repeats=2, warmup=1)


@pytest.fixture(scope="module")
def built_table(tmp_path_factory):
    """One table of the tiny space, built once for the module (the build is the slow part: every
    unit and calibration model timed in 2 rounds); tests get their own copies (``table_path``)."""
    folder = tmp_path_factory.mktemp("table")
    space = write_space(folder)
    path = folder / "table.json"
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        build_table(str(space), PROTOCOL, path, archs=4, calibration=3, in_chans=3, num_classes=10, rounds=2)
    finally:
        torch.set_num_threads(old)
    return space, path


@pytest.fixture
def table_path(built_table, tmp_path, one_thread):  # noqa: F811
    """A copy of the module's table (and its space) in this test's folder: tests may change it."""
    space, path = built_table
    mine = tmp_path / "space.toml", tmp_path / "table.json"
    shutil.copyfile(space, mine[0])
    shutil.copyfile(path, mine[1])
    return mine


def test_the_table_holds_every_unit_and_calibration_model_with_raw_timings(table_path):
    _, path = table_path
    table = LatencyTable.load(path)
    assert table.device_name and table.versions["torch"] and table.protocol["name"] == "cpu-latency"
    assert table.sampling["archs"] == 4 and table.sampling["rounds"] == 2 and table.in_chans == 3
    assert len(table.models) == 3
    kinds = {u["kind"] for u in table.units.values()}
    assert {"stem:PatchEmbed", "downsample:PatchMergingDownsample", "block:SandwichBlock/cga",
            "head:NormLinear"} <= kinds
    for entry in list(table.units.values()) + table.models:
        # every round keeps its raw timings: the 2 repeats, less any the protocol left out as preempted;
        # a round the protocol found contended pools the clean repeats of all its attempts
        # (explore.measure.protocols.time_cpu: a busy machine is waited out and measured again)
        assert len(entry["rounds"]) == 2
        for r in entry["rounds"]:
            most = 2 * (CONTENTION_ATTEMPTS if r["contended"] else 1)
            assert 1 <= len(r["times_ms"]) <= most, r
        assert entry["median_ms"] == min(r["median_ms"] for r in entry["rounds"])  # the fastest round counts
    assert all(k in table.units for m in table.models for k in m["units"])
    assert fit_predictor(table).predict_units([]) >= 0.0


def test_a_stopped_build_resumes_and_measures_only_what_is_missing(table_path, monkeypatch):
    space, path = table_path
    raw = json.loads(path.read_text())
    first = next(iter(raw["units"]))
    raw["units"][first]["rounds"] = raw["units"][first]["rounds"][:1]  # as if stopped in round 2
    path.write_text(json.dumps(raw))
    calls = []
    real = lt.measure_unit
    monkeypatch.setattr(lt, "measure_unit", lambda unit, protocol: calls.append(unit.kind) or real(unit, protocol))
    build_table(str(space), PROTOCOL, path, archs=4, calibration=3, in_chans=3, num_classes=10, rounds=2)
    assert len(calls) == 1
    assert len(LatencyTable.load(path).units[first]["rounds"]) == 2


def test_a_table_of_other_settings_is_not_overwritten(table_path):
    space, path = table_path
    before = path.read_bytes()
    with pytest.raises(ExploreError, match="differs: protocol batch_size") as info:
        build_table(str(space), get_protocol("cpu-latency", repeats=2, warmup=1, batch_size=4), path, archs=4,
                    calibration=3, in_chans=3, num_classes=10, rounds=2)
    assert info.value.field == "--out"
    with pytest.raises(ExploreError, match="sampling"):
        build_table(str(space), PROTOCOL, path, archs=5, calibration=3, in_chans=3, num_classes=10, rounds=2)
    assert path.read_bytes() == before
    with pytest.raises(ExploreError, match="--calibration"):
        build_table(str(space), PROTOCOL, path, archs=2, calibration=3)


def test_evaluation_compares_held_out_architectures_with_the_predictor(table_path):
    _, path = table_path
    result = evaluate_table(path, 3, rounds=1)
    assert len(result.rows) == 3
    assert not set(result.rows["config"]) & {m["config"] for m in LatencyTable.load(path).models}
    for name in ("predictor", "macs", "drift"):
        assert {"mape", "within_10", "kendall_tau", "max_error"} <= set(result.stats[name])
    assert (result.rows["predicted (ms/img)"] > 0).all() and (result.rows["measured (ms/img)"] > 0).all()
    assert result.differences == []


def test_cli_builds_evaluates_and_rejects_bad_input(tmp_path, one_thread):  # noqa: F811
    space = write_space(tmp_path)
    out = tmp_path / "t.json"
    args = ["latency-table", "--space", str(space), "--archs", "3", "--calibration", "3", "--in-chans", "3",
            "--repeats", "2", "--rounds", "1", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "3 calibration models" in result.output
    report = tmp_path / "rep"
    result = runner.invoke(app, ["latency-table", "--evaluate", str(out), "--archs", "3", "--rounds", "1",
                                 "--out", str(report)])
    assert result.exit_code == 0, result.output
    summary = (report / "summary.md").read_text()
    assert "## Accuracy of the prediction" in summary and "MACs (linear fit)" in summary and "Noise floor" in summary
    assert (report / "predicted_vs_measured.png").stat().st_size > 0 and (report / "predictions.csv").is_file()
    bad = runner.invoke(app, ["latency-table", "--space", str(space), "--out", str(tmp_path / "t.txt")])
    assert bad.exit_code == 1 and "--out" in bad.output and not (tmp_path / "t.txt").exists()
    bad = runner.invoke(app, ["latency-table", "--space", str(space), "--protocol", "nope", "--out",
                              str(tmp_path / "n.json")])
    assert bad.exit_code == 1 and "--protocol" in bad.output and not (tmp_path / "n.json").exists()
