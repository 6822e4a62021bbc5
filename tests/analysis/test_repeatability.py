"""`explore bench repeatability`'s load kinds and its raw vs normalised comparison (issue 30.4),
with made-up trial frames (no study is run, nothing is timed); its report re-rendered from the stored files."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from explore.analysis.bench.repeatability import LOAD_KINDS, Repeatability, compare, load_command, run_repeatability
from explore.cli import app
from explore.errors import ExploreError
from explore.records import CONFIG_HASH
from explore.report.bench import render_repeatability, write_repeatability
from tests.rerender_helpers import assert_rerender_is_one_error_line


def test_the_load_kinds_select_their_programs():
    assert set(LOAD_KINDS) == {"compute", "bandwidth"}
    compute = load_command("compute", 2)
    assert compute[0] == sys.executable and compute[-1] == "2" and "a @ a" in compute[2]
    bandwidth = load_command("bandwidth", 2)
    assert "np.copyto" in bandwidth[2] and "32 * 2**20" in bandwidth[2]  # 256 MB of float64, one thread
    with pytest.raises(ExploreError, match="--loads"):
        load_command("disk", 1)


def test_an_unknown_load_fails_before_any_study_runs(tmp_path):
    with pytest.raises(ExploreError, match="--loads"):
        run_repeatability([], work=str(tmp_path / "w"), loads=("compute", "gpu"))
    assert not (tmp_path / "w").exists()


def _frame(norm_first, norm_again, raw_first, raw_again, top1=(80.0, 81.0)) -> pd.DataFrame:
    return pd.DataFrame({
        "state": ["COMPLETE", "COMPLETE"], CONFIG_HASH: ["a", "b"], "summary": ["A", "B"], "top1": list(top1),
        "pareto": [True, False], "latency_figure": ["normalised"] * 2,
        "latency_ms": [min(x, y) for x, y in zip(norm_first, norm_again)], "latency_first_ms": list(norm_first),
        "latency_remeasured_ms": list(norm_again), "latency_raw_ms_per_img": list(raw_first),
        "latency_remeasured_raw_ms": list(raw_again), "latency_contended": [False, True],
        "latency_reference_slowdown": [1.0, 1.5]})


def test_the_comparison_reports_raw_and_normalised_idle_vs_loaded_and_first_vs_again():
    quiet = _frame([1.0, 2.0], [1.02, 2.0], [1.0, 2.0], [1.3, 2.0])
    loaded = _frame([1.01, 2.02], [1.0, 2.0], [1.5, 3.0], [1.5, 2.9])
    table = compare(quiet, loaded)
    assert table["ratio normalised first"].tolist() == pytest.approx([1.01, 1.01])
    assert table["ratio raw first"].tolist() == pytest.approx([1.5, 1.5])
    assert table["within raw quiet"].tolist() == pytest.approx([1.3, 1.0])
    assert table["within norm quiet"].tolist() == pytest.approx([1.02, 1.0])
    text = render_repeatability(Repeatability({"bandwidth": table}, 10.0, {"bandwidth": 12.0}, 2), "explore bench")
    assert "| normalised first: idle vs bandwidth | 100 % | 0 of 2 | 1.0 % | met |" in text
    assert "| raw first: idle vs bandwidth | 0 % | 2 of 2 | 50.0 % | missed |" in text
    assert "| raw: first vs re-measured, idle run | 50 % | 1 of 2 | 30.0 % | missed |" in text
    assert "1 loaded measurements flagged `contended`" in text and "top-1 identical" in text


def test_a_written_repeatability_report_rerenders_from_its_csv_and_json(tmp_path):
    quiet = _frame([1.0, 2.0], [1.02, 2.0], [1.0, 2.0], [1.3, 2.0])
    loaded = _frame([1.01, 2.02], [1.0, 2.0], [1.5, 3.0], [1.5, 2.9])
    raw_only = loaded.assign(latency_figure=["normalised", "raw"])  # a raw trial: its normalised cells are empty
    run = Repeatability({"compute": compare(quiet, raw_only), "bandwidth": compare(quiet, loaded)}, 10.5,
                        {"compute": 12.25, "bandwidth": 11.0}, 2)
    write_repeatability(render_repeatability(run, "explore bench repeatability"), run, tmp_path / "run",
                        "explore bench repeatability")
    again = CliRunner().invoke(app, ["rerender", str(tmp_path / "run"), "--out", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    for name in ("latency_repeatability.md", "latency_repeatability.csv", "latency_repeatability.json"):
        assert (tmp_path / "again" / name).read_text() == (tmp_path / "run" / name).read_text(), name
    assert "## Idle vs compute" in (tmp_path / "again" / "latency_repeatability.md").read_text()
    stored = json.loads((tmp_path / "run" / "latency_repeatability.json").read_text())
    (tmp_path / "run" / "latency_repeatability.json").write_text(json.dumps({**stored, "loads": ["bandwidth"]}))
    assert_rerender_is_one_error_line(tmp_path / "run", tmp_path / "bad", "latency_repeatability.csv")
