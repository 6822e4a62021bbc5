"""``explore bench attention`` and ``explore bench proxy`` reports re-render from the folder alone (issue 28).

Each command stores what its report shows beside it (attention: the latencies in the CSV, the
settings, command and ``--note`` in ``attention_scaling_<device>.json``; proxy: both loops' img/s
unrounded, the settings, command and note in ``proxy_throughput_<device>.json``); ``explore rerender``
reads them back, with no timing, and must write the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from explore.cli import app
from explore.cli.rerender import RENDERERS, report_kind
from tests.conftest import needs_fashion_mnist
from tests.rerender_helpers import assert_rerender_is_one_error_line

runner = CliRunner()

NOTE = "Run on a shared 2-core machine (load average 1.7 at the start): absolute times read high."


def _same_files(made: Path, again: Path) -> list[str]:
    """The names of ``made``'s files, after checking that ``again`` holds the same files with the same bytes."""
    names = sorted(p.name for p in made.iterdir())
    assert sorted(p.name for p in again.iterdir()) == names
    for name in names:
        assert (again / name).read_bytes() == (made / name).read_bytes(), name
    return names


def _stand_in_timing(monkeypatch, medians) -> None:
    """``explore bench attention`` timed by a stand-in that returns ``medians`` (ms) in turn: the real
    timing costs a minute on a busy 2-core machine and is tested in tests/analysis/test_bench_attention.py."""
    import types

    import explore.analysis.bench.attention as attention

    medians = iter(medians)
    monkeypatch.setattr(attention, "time_model", lambda model, protocol: types.SimpleNamespace(median_ms=next(medians)))


@pytest.fixture(scope="module")
def attention_report(tmp_path_factory):
    """A tiny ``explore bench attention`` report (three sides, two repeats) with a note; its latencies drawn
    at random with all their digits (the stand-in timer)."""
    import random

    draw = random.Random(0)
    folder = tmp_path_factory.mktemp("attention")
    monkeypatch = pytest.MonkeyPatch()
    _stand_in_timing(monkeypatch, [draw.uniform(0.01, 900.0) for _ in range(15)])
    try:
        done = runner.invoke(app, ["bench", "attention", "--sides", "4,6,8", "--channels", "16", "--repeats", "2",
                                   "--note", NOTE, "--out", str(folder)])
    finally:
        monkeypatch.undo()
    assert done.exit_code == 0, done.output
    return folder


def test_an_attention_report_rerenders_byte_for_byte(attention_report, tmp_path):
    assert report_kind(attention_report) == "bench attention"
    done = runner.invoke(app, ["rerender", str(attention_report), "--out", str(tmp_path)])
    assert done.exit_code == 0, done.output
    names = _same_files(attention_report, tmp_path)
    assert names == ["attention_scaling_cpu.csv", "attention_scaling_cpu.json", "attention_scaling_cpu.md"]
    text = (tmp_path / "attention_scaling_cpu.md").read_text(encoding="utf-8")
    assert text.endswith("\n\n" + NOTE + "\n") and "--note" not in text  # the note closes it, not on the Command line
    stored = json.loads((tmp_path / "attention_scaling_cpu.json").read_text(encoding="utf-8"))
    assert stored["note"] == NOTE and stored["settings"]["channels"] == 16 and stored["settings"]["repeats"] == 2
    assert stored["command"].startswith("explore bench attention --device cpu --sides 4,6,8 --channels 16")


def test_an_attention_report_shows_the_figures_its_csv_stores(attention_report):
    text = (attention_report / "attention_scaling_cpu.md").read_text(encoding="utf-8")
    rows = (attention_report / "attention_scaling_cpu.csv").read_text(encoding="utf-8").splitlines()[1:]
    first = rows[0].rsplit(",", 2)  # '"softmax (SDPA, global)"', '16', '123.456789'
    assert f"| {first[0].strip(chr(34))} | {float(first[2]):.3f} |" in text


def test_an_attention_report_without_a_note_has_no_closing_paragraph(tmp_path, monkeypatch):
    # latencies whose 3-decimal text differs when rounded from 6 decimals first (3.0625004 -> 3.062500 ->
    # 3.062, not 3.063): the report shows the figures its CSV stores
    _stand_in_timing(monkeypatch, [3.0625004, 2.0004996] * 5)
    made = tmp_path / "made"
    done = runner.invoke(app, ["bench", "attention", "--sides", "4,6", "--channels", "16", "--repeats", "2",
                               "--out", str(made)])
    assert done.exit_code == 0, done.output
    assert json.loads((made / "attention_scaling_cpu.json").read_text(encoding="utf-8"))["note"] is None
    text = (made / "attention_scaling_cpu.md").read_text(encoding="utf-8")
    assert text.endswith(" |\n")
    stored = (made / "attention_scaling_cpu.csv").read_text(encoding="utf-8")
    assert '"ReLU linear",16,3.062500\n"ReLU linear",36,2.000500\n' in stored
    assert "| ReLU linear | 3.062 | 2.001 |" in text and "3.063" not in text and "2.000 " not in text
    done = runner.invoke(app, ["rerender", str(made), "--out", str(tmp_path / "again")])
    assert done.exit_code == 0, done.output
    _same_files(made, tmp_path / "again")


def _copy(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


@pytest.mark.parametrize("edit, field", [
    (lambda csv, js: js.write_text("{not json", encoding="utf-8"), "attention_scaling_cpu.json"),
    (lambda csv, js: js.write_text(json.dumps({"command": "x", "settings": {}, "note": None}), encoding="utf-8"),
     "attention_scaling_cpu.json: settings"),
    (lambda csv, js: js.write_text(json.dumps({"settings": {}, "note": None}), encoding="utf-8"),
     "attention_scaling_cpu.json: command"),
    (lambda csv, js: csv.write_text(csv.read_text(encoding="utf-8").replace(",16,", ",sixteen,", 1), encoding="utf-8"),
     "attention_scaling_cpu.csv line 2"),
    (lambda csv, js: csv.write_text("\n".join(csv.read_text(encoding="utf-8").splitlines()[:-1]) + "\n",
                                    encoding="utf-8"), "attention_scaling_cpu.csv: tokens of"),
])
def test_bad_stored_attention_data_is_one_error_line(attention_report, tmp_path, edit, field):
    folder = _copy(attention_report, tmp_path / "report")
    edit(folder / "attention_scaling_cpu.csv", folder / "attention_scaling_cpu.json")
    assert_rerender_is_one_error_line(folder, tmp_path / "out", field)


@needs_fashion_mnist
def test_a_proxy_throughput_report_rerenders_byte_for_byte(tmp_path):
    made = tmp_path / "made"
    done = runner.invoke(app, ["bench", "proxy", "--images", "64", "--batch-size", "32", "--img-size", "32",
                               "--workers", "0", "--warmup-steps", "1", "--note", NOTE, "--out", str(made)])
    assert done.exit_code == 0, done.output
    assert report_kind(made) == "bench proxy"
    stored = json.loads((made / "proxy_throughput_cpu.json").read_text(encoding="utf-8"))
    assert stored["note"] == NOTE and stored["run"]["images"] == 64 and stored["run"]["plain_img_s"] > 0
    text = (made / "proxy_throughput_cpu.md").read_text(encoding="utf-8")
    assert text.endswith("\n\n" + NOTE + "\n") and f"| {stored['run']['plain_img_s']:.1f} |" in text
    done = runner.invoke(app, ["rerender", str(made), "--out", str(tmp_path / "again")])
    assert done.exit_code == 0, done.output
    assert _same_files(made, tmp_path / "again") == ["proxy_throughput_cpu.json", "proxy_throughput_cpu.md"]


def _proxy_folder(tmp_path: Path, run: dict, note: object = None) -> Path:
    """A proxy-throughput folder written by hand: ``run`` the stored fields (img/s as given)."""
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "proxy_throughput_cpu.md").write_text("stale\n", encoding="utf-8")
    (folder / "proxy_throughput_cpu.json").write_text(
        json.dumps({"command": "explore bench proxy --out report", "run": run, "note": note}), encoding="utf-8")
    return folder


RUN = {"plain_img_s": 338.5, "proxy_img_s": 541.7, "model": "efficientvit_m0", "img_size": 64, "batch_size": 256,
       "images": 5000, "epochs": 1.0, "workers": 2, "warmup_steps": 0, "device_type": "cpu",
       "device_name": "AMD EPYC, 2 threads", "precision": "fp32", "torch_version": "2.14.1"}


def test_a_stored_proxy_run_renders_its_figures_and_note(tmp_path):
    folder = _proxy_folder(tmp_path, RUN, "A note.")
    done = runner.invoke(app, ["rerender", str(folder)])  # into the folder: the stale .md is replaced
    assert done.exit_code == 0, done.output
    text = (folder / "proxy_throughput_cpu.md").read_text(encoding="utf-8")
    assert "| 338.5 |" in text and "| 541.7 |" in text and "| ratio proxy / plain | 1.60 |" in text
    assert "No warm-up (--warmup-steps 0)" in text and text.endswith("\n\nA note.\n")


@pytest.mark.parametrize("run, note, field", [
    ({k: v for k, v in RUN.items() if k != "model"}, None, "proxy_throughput_cpu.json: run"),
    ({**RUN, "extra": 1}, None, "proxy_throughput_cpu.json: run"),
    ({**RUN, "plain_img_s": 0}, None, "proxy_throughput_cpu.json: run"),
    ({**RUN, "proxy_img_s": "fast"}, None, "proxy_throughput_cpu.json: run"),
    (RUN, 3, "proxy_throughput_cpu.json: note"),
])
def test_bad_stored_proxy_data_is_one_error_line(tmp_path, run, note, field):
    folder = _proxy_folder(tmp_path, run, note)
    assert_rerender_is_one_error_line(folder, tmp_path / "out", field)


def test_the_bench_kinds_claim_only_their_own_folders(attention_report, tmp_path):
    proxy = _proxy_folder(tmp_path, RUN)
    for folder, kind in ((attention_report, "bench attention"), (proxy, "bench proxy")):
        assert [k for k, (holds, _) in RENDERERS.items() if holds(folder)] == [kind]
    lone = tmp_path / "lone"  # a report without its stored file: not claimed (re-run its command instead)
    lone.mkdir()
    (lone / "attention_scaling_cpu.md").write_text("x\n", encoding="utf-8")
    (lone / "attention_scaling_cpu.csv").write_text("kind,tokens,latency_ms\n", encoding="utf-8")
    (lone / "proxy_throughput_cpu.md").write_text("x\n", encoding="utf-8")
    assert report_kind(lone) is None
