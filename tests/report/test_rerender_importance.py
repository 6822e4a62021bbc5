"""An ``explore importance`` report re-renders from the folder alone (issue 28).

``explore importance`` writes ``importance.json`` beside ``summary.md`` (the settings, the plan's totals,
the trend, the surgery back-ends, the device, the phase times, the command and ``--note``); with the
CSVs and ``suggested_config.json`` that is everything the summary shows, and ``explore rerender``
writes ``summary.md`` (and ``retained.png``) again from them, byte for byte, with no training and no timing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from explore.cli import app
from explore.cli.rerender import RENDERERS, report_kind
from tests.conftest import needs_fashion_mnist, tiny_config
from tests.rerender_helpers import assert_rerender_is_one_error_line

runner = CliRunner()

NOTE = "Run on a shared 2-core machine (load average 1.7 at the start): the latencies read high."

COMPARED = (".md", ".csv", ".json")


@pytest.fixture(scope="module")
def importance_report(tmp_path_factory):
    """A tiny ``explore importance`` run (a 3-stage config at 32x32, 256 Fashion-MNIST images, half an epoch,
    the suggested model not retrained; latencies from a stand-in timer) with a note. Returns its folder."""
    import itertools
    import types

    import explore.analysis.importance.command as command
    import explore.evaluate as evaluate

    # timed by a stand-in (the timing is not what is re-rendered, and costs a minute on a busy machine)
    medians = itertools.count(1.2345678, 0.25)
    timer = lambda model, protocol: types.SimpleNamespace(median_ms=next(medians), iqr_ms=0.0123456)  # noqa: E731
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(command, "time_model", timer)
    monkeypatch.setattr(evaluate, "time_model", timer)
    tmp = tmp_path_factory.mktemp("importance")
    model = tmp / "tiny.json"
    model.write_text(tiny_config(img_size=32).to_json(), encoding="utf-8")
    out = tmp / "report"
    try:
        done = runner.invoke(app, ["importance", "--model", str(model), "--max-train", "256", "--max-val", "64",
                                   "--batch-size", "64", "--epochs", "0.5", "--score-batches", "2",
                                   "--latency-repeats", "2", "--no-retrain", "--note", NOTE, "--out", str(out)])
    finally:
        monkeypatch.undo()
    assert done.exit_code == 0, done.output
    return out


def _compare(made: Path, again: Path) -> list[str]:
    names = sorted(p.name for p in made.iterdir() if p.suffix in COMPARED)
    assert sorted(p.name for p in again.iterdir() if p.suffix in COMPARED) == names
    for name in names:
        assert (again / name).read_text(encoding="utf-8") == (made / name).read_text(encoding="utf-8"), name
    return names


@needs_fashion_mnist
def test_an_importance_report_rerenders_byte_for_byte(importance_report, tmp_path):
    assert report_kind(importance_report) == "importance"
    assert [k for k, (holds, _) in RENDERERS.items() if holds(importance_report)] == ["importance"]
    stored = json.loads((importance_report / "importance.json").read_text(encoding="utf-8"))
    assert stored["note"] == NOTE and stored["settings"]["max_train"] == 256 and stored["plan"]["removed_params"] > 0
    text = (importance_report / "summary.md").read_text(encoding="utf-8")
    assert text.endswith("\n\n" + NOTE + "\n") and f"time: train {stored['seconds']['train']:.0f} s" in text
    done = runner.invoke(app, ["rerender", str(importance_report), "--out", str(tmp_path)])
    assert done.exit_code == 0, done.output
    names = _compare(importance_report, tmp_path)
    assert {"summary.md", "importance.json", "comparison.csv", "retained.csv", "sensitivity.csv"} <= set(names)
    assert (tmp_path / "retained.png").read_bytes()[:4] == b"\x89PNG"


def _copy(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def _edit_json(key: str, value: object):
    def edit(folder: Path) -> None:
        stored = json.loads((folder / "importance.json").read_text(encoding="utf-8"))
        if value is KeyError:
            del stored[key]
        else:
            stored[key] = value
        (folder / "importance.json").write_text(json.dumps(stored), encoding="utf-8")
    return edit


@needs_fashion_mnist
@pytest.mark.parametrize("edit, field", [
    (lambda folder: (folder / "importance.json").write_text("[1, 2", encoding="utf-8"), "importance.json"),
    (_edit_json("plan", {"rank": "per-cost"}), "importance.json: plan"),
    (_edit_json("settings", {}), "importance.json: settings"),
    (_edit_json("seconds", KeyError), "importance.json: seconds"),
    (_edit_json("note", 3), "importance.json: note"),
    (_edit_json("trend", {}), "importance.json"),  # no verdict: what the summary shows is missing
    (_edit_json("config", {"stages": "three"}), "importance.json: config.stages"),
    (lambda folder: (folder / "retained.csv").write_text("label\n\"s0.b0\"\n", encoding="utf-8"), "retained.csv"),
    (lambda folder: (folder / "sensitivity.csv").unlink(), "sensitivity.csv"),
])
def test_bad_stored_importance_data_is_one_error_line(importance_report, tmp_path, edit, field):
    folder = _copy(importance_report, tmp_path / "report")
    edit(folder)
    assert_rerender_is_one_error_line(folder, tmp_path / "out", field)


def test_an_importance_report_without_importance_json_has_no_renderer(tmp_path):
    committed = Path(__file__).resolve().parents[2] / "reports" / "importance_fashion_mnist_cpu" / "m0_cga"
    assert report_kind(committed) == "importance"
    folder = _copy(committed, tmp_path / "old")
    (folder / "importance.json").unlink()  # as written before importance.json existed
    assert (folder / "summary.md").exists() and report_kind(folder) is None
    runs = tmp_path / "runs"  # a folder of runs is one only while every sub-folder is an importance report
    _copy(committed, runs / "m0_cga")
    (runs / "README.md").write_text("index\n")
    assert report_kind(runs) == "importance runs"
    (runs / "notes").mkdir()
    assert report_kind(runs) is None
