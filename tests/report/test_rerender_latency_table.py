"""A latency-table evaluation report re-renders from the files stored beside it (issue 28, item 3).

``explore latency-table --evaluate`` writes ``evaluation.json`` beside ``summary.md`` and
``predictions.csv``: the settings, the calibration models as re-timed in the session (the noise
floor and the re-calibration come from them) and the fitted corrections. ``explore rerender``
writes the summary and the table again from these, byte for byte, without timing anything and
without the table file.
"""

from __future__ import annotations

import json
import os
import shutil

import optuna
import pytest
import torch
from typer.testing import CliRunner

import explore.measure.latency_table_jobs as jobs
import explore.measure.timing as timing
from explore.cli import app
from explore.cli.rerender import RENDERERS, report_kind
from explore.measure.latency_table import LatencyTable
from explore.space import sample_architectures
from tests.measure.test_latency_table_jobs import built_table, table_path  # noqa: F401 - fixtures
from tests.study_helpers import one_thread  # noqa: F401 - fixture

runner = CliRunner()


def _no_timing(*args, **kwargs):
    raise AssertionError("explore rerender must not time anything")


def _evaluate(folder, *args):
    """``explore latency-table --evaluate table.json ARGS --rounds 2 --out rep`` run in ``folder`` (the table's
    path given relative, as the committed reports give it); returns the report folder."""
    result = runner.invoke(app, ["latency-table", "--evaluate", "table.json", *args, "--rounds", "2", "--out", "rep"])
    assert result.exit_code == 0, result.output
    return folder / "rep"


def _rerender_without_table(folder, report, monkeypatch):
    """Re-render ``report`` into ``folder/again`` with the table file gone and timing forbidden."""
    (folder / "table.json").rename(folder / "table.json.away")
    monkeypatch.setattr(timing, "time_model", _no_timing)
    monkeypatch.setattr(jobs, "time_rounds", _no_timing)
    result = runner.invoke(app, ["rerender", str(report), "--out", str(folder / "again")])
    (folder / "table.json.away").rename(folder / "table.json")
    assert result.exit_code == 0, result.output
    assert "latency-table evaluation report" in result.output
    return folder / "again"


def test_a_sampled_evaluation_stores_its_session_and_rerenders_byte_for_byte(table_path, monkeypatch):
    folder = table_path[1].parent
    monkeypatch.chdir(folder)
    report = _evaluate(folder, "--archs", "3", "--seed", "7")
    stored = json.loads((report / "evaluation.json").read_text(encoding="utf-8"))
    summary = (report / "summary.md").read_text(encoding="utf-8")
    table = LatencyTable.load(folder / "table.json")
    assert f"Made by: `{stored['command']}`" in summary
    assert stored["command"] == "explore latency-table --archs 3 --seed 7 --out rep --evaluate table.json --rounds 2"
    meta = stored["meta"]
    assert meta["table_path"] == "table.json" and meta["seed"] == 7 and meta["archs"] == 3
    assert meta["settings"] == {"archs": 3, "seed": 7, "regressor": None, "rounds": 2, "architectures": "sampled"}
    assert meta["session_versions"]["torch"] and meta["versions"] == table.versions
    assert meta["protocol"] == table.protocol and meta["device"] and meta["table_device"] == table.device_name
    assert stored["regressor"] in stored["choice"] or not stored["choice"]
    # the calibration models as re-timed here: the table's figure, this session's (the fastest of the rounds)
    assert len(stored["calibration"]) == len(table.models) == 3
    for i, (row, model) in enumerate(zip(stored["calibration"], table.models)):
        assert row["model"] == i and row["table (ms/img)"] == float(model["latency_ms_per_img"])
        assert len(row["rounds"]) == 2
        fastest = min(row["rounds"], key=lambda r: r["median_ms"])
        assert row["session (ms/img)"] == fastest["latency_ms_per_img"] > 0
        assert row["session median (ms)"] == fastest["median_ms"]
    for name in ("table", "session"):
        assert set(stored["correction"][name]) == {"weights", "default_weight", "offset"}
    assert set(stored["correction"]["macs_fit"]) == {"a", "b"}
    assert "`evaluation.json`" in summary.rsplit("\n\n", 1)[-1] and "**Noise floor.**" in summary

    assert report_kind(report) == "latency-table evaluation"
    assert [kind for kind, (holds, _) in RENDERERS.items() if holds(report)] == ["latency-table evaluation"]
    again = _rerender_without_table(folder, report, monkeypatch)
    for name in ("summary.md", "predictions.csv", "evaluation.json"):
        assert (again / name).read_bytes() == (report / name).read_bytes(), name
    assert (again / "predicted_vs_measured.png").stat().st_size > 0


def test_the_noise_floor_is_computed_again_from_the_stored_re_timing(table_path, monkeypatch):
    folder = table_path[1].parent
    monkeypatch.chdir(folder)
    report = _evaluate(folder, "--archs", "3")
    stored = json.loads((report / "evaluation.json").read_text(encoding="utf-8"))
    for row in stored["calibration"]:  # as if this session had timed every calibration model at half the table's figure
        row["session (ms/img)"] = row["table (ms/img)"] / 2
    (report / "evaluation.json").write_text(json.dumps(stored), encoding="utf-8")
    again = _rerender_without_table(folder, report, monkeypatch)
    text = (again / "summary.md").read_text(encoding="utf-8")
    assert "the table's figures are +100.0 % off this session's on average (MAPE 100.00 %, 0.0 % within ±10 %" in text
    assert (again / "predictions.csv").read_bytes() == (report / "predictions.csv").read_bytes()


def test_a_study_evaluation_stores_its_trial_numbers_and_rerenders_byte_for_byte(table_path, monkeypatch):
    space, path = table_path
    folder = path.parent
    monkeypatch.chdir(folder)
    configs = sample_architectures(str(space), 3, in_chans=3, num_classes=10, seed=11)
    (folder / "runs" / "t").mkdir(parents=True)
    study = optuna.create_study(study_name="t", storage=f"sqlite:///{folder / 'runs' / 't' / 'study.db'}",
                                directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))  # trial 0: not measured
    for i, config in enumerate(configs):
        study.add_trial(optuna.trial.create_trial(values=[80.0 + i, 1.0], user_attrs={
            "config": config.to_json(sort_keys=True)}))
    report = _evaluate(folder, "--study", "runs/t", "--note", "the second evaluation; the first gave 9 %")
    stored = json.loads((report / "evaluation.json").read_text(encoding="utf-8"))
    assert stored["meta"]["study"] == "runs/t" and stored["meta"]["trials"] == [1, 2, 3]
    assert stored["meta"]["note"] == "the second evaluation; the first gave 9 %"  # shown under the command
    assert "Note: the second evaluation; the first gave 9 %" in (report / "summary.md").read_text(encoding="utf-8")
    assert stored["meta"]["seed"] is None and stored["meta"]["settings"]["study"] == "runs/t"
    assert "(arch i = trial #1, #2, #3 in order)" in (report / "summary.md").read_text(encoding="utf-8")
    again = _rerender_without_table(folder, report, monkeypatch)
    for name in ("summary.md", "predictions.csv", "evaluation.json"):
        assert (again / name).read_bytes() == (report / name).read_bytes(), name


@pytest.fixture(scope="module")
def evaluated(built_table, tmp_path_factory):  # noqa: F811
    """A sampled evaluation report of the module's table (3 architectures, 2 rounds, one thread), made
    once for the module: the tests below copy it before they edit it."""
    folder = tmp_path_factory.mktemp("evaluated")
    shutil.copyfile(built_table[1], folder / "table.json")
    threads, cwd = torch.get_num_threads(), os.getcwd()
    torch.set_num_threads(1)
    os.chdir(folder)
    try:
        return _evaluate(folder, "--archs", "3")
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)


def _edit_json(change):
    def edit(folder):
        stored = json.loads((folder / "evaluation.json").read_text(encoding="utf-8"))
        change(stored)
        (folder / "evaluation.json").write_text(json.dumps(stored), encoding="utf-8")
    return edit


def _write(name, text):
    return lambda folder: (folder / name).write_text(text, encoding="utf-8")


def _drop_last_row(folder):
    lines = (folder / "predictions.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "predictions.csv").write_text("".join(lines[:-1]), encoding="utf-8")


def _edit_first_row(column, text):
    def edit(folder):
        lines = (folder / "predictions.csv").read_text(encoding="utf-8").split("\n")
        cells = lines[1].split(",")  # the columns before config hold no comma
        cells[column] = text
        lines[1] = ",".join(cells)
        (folder / "predictions.csv").write_text("\n".join(lines), encoding="utf-8")
    return edit


@pytest.mark.parametrize("edit, needle", [
    (_write("evaluation.json", "{not json"), "a JSON file"),
    (_write("evaluation.json", "[1, 2]"), "a JSON object"),
    (_edit_json(lambda s: s.pop("command")), "'command' of type str"),
    (_edit_json(lambda s: s.update(command="explore report runs/t")), "an 'explore latency-table ...' command line"),
    (_edit_json(lambda s: s["meta"].pop("table_models")), "meta 'table_models'"),
    (_edit_json(lambda s: s["calibration"].pop()), "one calibration row per calibration model"),
    (_edit_json(lambda s: s["calibration"][1].update({"session (ms/img)": "fast"})), "calibration row 1"),
    (_edit_json(lambda s: s.update(choice={"linear": "low"})), "'choice'"),
    (_drop_last_row, "one row per held-out architecture (3"),
    (_edit_first_row(0, '"0"'), "reads back as explore report wrote it"),  # quoted by hand
    (_edit_first_row(4, "0.50000"), "rows that render with evaluation.json"),  # a measured figure as text
    (_write("predictions.csv", "arch,summary\n0,a\n1,b\n2,c\n"), "missing: params"),
], ids=["not-json", "not-an-object", "no-command", "other-command", "no-table-models", "calibration-row-missing",
        "calibration-figure-text", "choice-text", "row-missing", "edited-by-hand", "figure-as-text",
        "columns-missing"])
def test_a_malformed_stored_file_is_one_error_line_and_writes_nothing(evaluated, tmp_path, edit, needle):
    folder = tmp_path / "bad"
    shutil.copytree(evaluated, folder)
    edit(folder)
    assert report_kind(folder) == "latency-table evaluation"
    out = tmp_path / "out"
    result = runner.invoke(app, ["rerender", str(folder), "--out", str(out)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_an_evaluation_folder_without_evaluation_json_has_no_renderer(evaluated, tmp_path):
    # the committed evaluations, written before evaluation.json existed: re-run their Made-by command
    folder = tmp_path / "old"
    shutil.copytree(evaluated, folder)
    (folder / "evaluation.json").unlink()
    assert report_kind(folder) is None
    result = runner.invoke(app, ["rerender", str(folder), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "no renderer knows this kind of report yet" in result.output
    assert not (tmp_path / "out").exists()
