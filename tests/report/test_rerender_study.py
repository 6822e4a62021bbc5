"""A study report re-renders from the folder alone (issue 28): ``study.json`` beside ``summary.md``.

``explore report`` writes ``trials.csv``, ``summary.md`` and ``study.json`` (the study's settings and
the command); ``explore rerender`` reads them back, with no Optuna storage, and must write the same
bytes (plots are written but not compared: their bytes depend on matplotlib's version).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

from explore.cli import app
from explore.cli.rerender import RENDERERS, report_kind
from explore.cli.study import write_study_report
from explore.search import open_study, run_study
from explore.search.front_seeds import FRONT_SEED_PREFIX
from explore.search.inherited import SUPERNET_FRONT_PREFIX
from explore.search.results import REMEASURED_PREFIX
from tests.study_helpers import tiny_settings

runner = CliRunner()

COMPARED = (".md", ".csv", ".json")
"""The files compared byte for byte (not the PNGs)."""


@pytest.fixture(scope="module")
def real_study(tmp_path_factory):
    """A tiny real study on synthetic data (two complete trials, latencies measured again at the end)
    and its report as ``explore report`` writes it. Returns (run folder, report folder)."""
    tmp = tmp_path_factory.mktemp("real")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        settings = tiny_settings(tmp, trials=2)
        run_study(settings)
    finally:
        torch.set_num_threads(threads)
    report = tmp / "report"
    write_study_report(str(settings.run_dir), None, report)
    return settings.run_dir, report


def _rerender(folder: Path, out: Path) -> list[str]:
    result = runner.invoke(app, ["rerender", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{folder}: study report, wrote summary.md, trials.csv, pareto.png" in result.output
    return sorted(p.name for p in out.iterdir())


def _assert_same(folder: Path, out: Path, written: list[str]) -> None:
    assert sorted(p.name for p in folder.iterdir()) == written
    for name in written:
        if name.endswith(COMPARED):
            assert (out / name).read_bytes() == (folder / name).read_bytes(), name


def test_a_real_study_report_rerenders_byte_for_byte(real_study, tmp_path):
    run_dir, report = real_study
    stored = json.loads((report / "study.json").read_text(encoding="utf-8"))
    assert set(stored) == {"command", "meta"}
    assert stored["command"] == f"explore report {run_dir} --out {report}"
    assert stored["meta"]["study_name"] == "t" and stored["meta"]["settings"]["max_train"] == 64
    # --space and --out were given as absolute paths: study.json keeps their names only
    assert stored["meta"]["settings"]["space"] == "space.toml" and stored["meta"]["settings"]["out"] == "runs"
    text = (report / "study.json").read_text(encoding="utf-8")
    assert str(report.parent) not in text.replace(json.dumps(stored["command"])[1:-1], "")  # only the command has it
    summary = (report / "summary.md").read_text(encoding="utf-8")
    assert "were measured again at the end of the study" in summary  # the re-measured front's columns
    assert "`study.json` (the settings above and this command" in summary
    assert report_kind(report) == "study"
    written = _rerender(report, tmp_path / "again")
    assert {"summary.md", "trials.csv", "pareto.png", "study.json"} <= set(written)
    _assert_same(report, tmp_path / "again", written)


CRAFTED_RUNS = {0: (59.5, 60.5, 61.0), 1: (70.5, 71.0, 69.75), 2: (79.0, 81.5, 80.25)}
"""The crafted study's front runs: trial -> top-1 (%) of seeds 10000, 10001, 10002."""


def _crafted_study(real_run: Path, storage: str) -> None:
    """A study built from the real one's trials, with what a tiny study rarely has: a contended
    latency, a pruned and a failed trial, a re-measured latency, a front of three re-trained with
    common seeds, and a supernet front trained on its own (its Kendall τ over three members)."""
    real = open_study(str(real_run))
    template = next(t for t in real.trials if t.state.name == "COMPLETE")
    study = optuna.create_study(study_name="crafted", storage=storage, directions=["maximize", "minimize"])
    settings = dict(real.user_attrs["settings"], supernet="/elsewhere/supernets/tiny_supernet",
                    recalibration_images=48, max_latency_ms=9.5)
    study.set_user_attr("settings", settings)
    study.set_user_attr("space_name", real.user_attrs["space_name"])
    study.set_user_attr("space_file", "/elsewhere/search_spaces/tiny.toml")  # as studies of older versions stored it
    study.set_user_attr("dataset_info", real.user_attrs["dataset_info"])
    points = [(60.0, 1.0, True), (70.0, 2.0, False), (80.0, 3.0, None), (65.0, 2.5, False)]
    for top1, latency, contended in points:
        attrs = dict(template.user_attrs, latency_ms_per_img=latency, latency_median_ms=latency * 16,
                     proxy_top1=top1)
        if contended is None:
            attrs.pop("latency_contended", None)
        else:
            attrs["latency_contended"] = contended
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, values=[top1, latency],
                                                  params=template.params, distributions=template.distributions,
                                                  user_attrs=attrs))
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED, params=template.params, distributions=template.distributions,
        user_attrs={"pruned_reason": "latency 12.3 ms/img over the budget of 9.5 ms/img"}))
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, params=template.params, distributions=template.distributions,
        user_attrs={"fail_reason": "RuntimeError: out of memory"}))
    study.set_user_attr(f"{REMEASURED_PREFIX}1", {"ms_per_img": 1.75, "contended": False, "raw_ms_per_img": 1.8})
    for number, seeds in reversed(CRAFTED_RUNS.items()):  # stored out of order: the report sorts them
        study.set_user_attr(f"{FRONT_SEED_PREFIX}{number}", {
            str(10_000 + i): {"top1": top1, "train_s": 1.5, "threads": 1, "at": 0.0} for i, top1 in enumerate(seeds)})
    for number, alone in ((0, 58.25), (1, 72.5), (2, 79.0)):
        study.set_user_attr(f"{SUPERNET_FRONT_PREFIX}{number}", {"top1": alone, "inherited_top1": points[number][0],
                                                                  "train_s": 2.25, "seed": number, "threads": 1})


@pytest.fixture(scope="module")
def crafted(real_study, tmp_path_factory):
    """The crafted study (:func:`_crafted_study`) and its report. Returns (storage URL, report paths)."""
    tmp = tmp_path_factory.mktemp("crafted")
    storage = f"sqlite:///{tmp / 'crafted.db'}"
    _crafted_study(real_study[0], storage)
    return storage, write_study_report("crafted", storage, tmp / "report")


def test_a_study_with_contention_pruning_failures_and_fronts_rerenders_byte_for_byte(crafted, tmp_path):
    paths = crafted[1]
    report = paths.markdown.parent
    assert paths.front_csv is not None and paths.supernet_front_csv is not None
    assert paths.front_runs_csv == report / "front_seed_runs.csv"
    summary = paths.markdown.read_text(encoding="utf-8")
    for needle in ("Latency measured on a busy machine (flagged `contended`) for trials [0].",
                   "## Pruned trials", "latency 12.3 ms/img over the budget", "## Failed trials",
                   "RuntimeError: out of memory", "The latencies of 1 of the 4 complete trials were measured again",
                   "## Front re-trained with common seeds", "## Front: inherited and stand-alone top-1",
                   "inherited top-1 (%)", "latency budget 9.5 ms/img",
                   "(search_spaces/tiny.toml)", "the supernet `tiny_supernet`",
                   "Files: `front_seeds.csv` (the table's figures, unrounded), `front_seed_runs.csv` (every run"):
        assert needle in summary, needle
    tau = re.search(r"Kendall τ between the two top-1 columns over the 3 members: (\S+) ", summary)
    assert tau is not None and tau.group(1) != "nan", summary
    stored = json.loads(paths.study_json.read_text(encoding="utf-8"))
    assert stored["meta"]["space_file"] == "search_spaces/tiny.toml"
    assert stored["meta"]["settings"]["supernet"] == "tiny_supernet"
    written = _rerender(report, tmp_path / "again")
    assert {"front_seeds.csv", "front_seed_runs.csv", "front_seeds.png", "supernet_front.csv"} <= set(written)
    _assert_same(report, tmp_path / "again", written)
    # rendered into its own folder, it stays the same too
    folder = tmp_path / "own"
    shutil.copytree(report, folder)
    before = {name: (folder / name).read_bytes() for name in written if name.endswith(COMPARED)}
    result = runner.invoke(app, ["rerender", str(folder)])
    assert result.exit_code == 0, result.output
    assert {name: (folder / name).read_bytes() for name in before} == before


def test_front_seed_runs_csv_holds_exactly_the_stored_runs(crafted):
    storage, paths = crafted
    table = pd.read_csv(paths.front_runs_csv)
    assert list(table.columns) == ["trial", "seed", "top-1 (%)", "train (s)", "threads"]
    rows = [(int(r.trial), int(r.seed), float(r[2]), float(r[3]), int(r[4])) for r in table.itertuples(index=False)]
    study = open_study("crafted", storage)
    stored = sorted((number, int(seed), run["top1"], run["train_s"], run["threads"])
                    for key, value in study.user_attrs.items() if key.startswith(FRONT_SEED_PREFIX)
                    for number in [int(key[len(FRONT_SEED_PREFIX):])] for seed, run in value.items())
    assert rows == stored
    assert rows == [(n, 10_000 + i, top1, 1.5, 1) for n, seeds in CRAFTED_RUNS.items() for i, top1 in enumerate(seeds)]


def test_the_front_table_is_computed_again_from_the_runs_not_read_back(crafted, tmp_path):
    report = crafted[1].markdown.parent
    folder = tmp_path / "edited"
    shutil.copytree(report, folder)
    # a stored front table edited by hand is written again from the runs
    front = (folder / "front_seeds.csv").read_text(encoding="utf-8")
    (folder / "front_seeds.csv").write_text(front.replace("fastest", "fastest of all"), encoding="utf-8")
    out = tmp_path / "out"
    _rerender(folder, out)
    assert (out / "front_seeds.csv").read_bytes() == (report / "front_seeds.csv").read_bytes()
    # a run changed changes the table and the summary: trial 2's seed 10001 now below trial 1's
    runs = (folder / "front_seed_runs.csv").read_text(encoding="utf-8")
    assert runs.count("2,10001,81.5,") == 1
    (folder / "front_seed_runs.csv").write_text(runs.replace("2,10001,81.5,", "2,10001,60.5,"), encoding="utf-8")
    again = tmp_path / "again"
    _rerender(folder, again)
    changed = pd.read_csv(again / "front_seeds.csv").set_index("trial")
    assert changed.loc[2, "mean top-1 (%)"] == pytest.approx((79.0 + 60.5 + 80.25) / 3)
    assert (again / "summary.md").read_bytes() != (report / "summary.md").read_bytes()
    assert (again / "front_seed_runs.csv").read_text(encoding="utf-8") == runs.replace("2,10001,81.5,", "2,10001,60.5,")


@pytest.mark.parametrize("edit, needle", [
    (None, "front_seed_runs.csv = "),  # removed: an older report, whose intervals are not recomputable
    ("trial,seed,top-1 (%),train (s),threads\n0,10000,59.5,1.5,1\n0,10000,60.5,1.5,1\n", "one row per (trial, seed)"),
    ("trial,seed,threads\n0,10000,1\n", "missing: top-1 (%)"),
], ids=["runs-missing", "run-twice", "no-top-1-column"])
def test_front_seeds_without_readable_runs_are_one_error_line(crafted, tmp_path, edit, needle):
    folder = tmp_path / "old"
    shutil.copytree(crafted[1].markdown.parent, folder)
    if edit is None:
        (folder / "front_seed_runs.csv").unlink()
    else:
        (folder / "front_seed_runs.csv").write_text(edit, encoding="utf-8")
    assert report_kind(folder) == "study"
    out = tmp_path / "out"
    result = runner.invoke(app, ["rerender", str(folder), "--out", str(out)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in result.output, result.output
    if edit is None:
        assert "not recomputable" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_a_study_folder_without_study_json_has_no_renderer(real_study, tmp_path):
    # the study reports written before study.json existed (the committed ones): explore report makes them again
    folder = tmp_path / "old"
    shutil.copytree(real_study[1], folder)
    (folder / "study.json").unlink()
    assert report_kind(folder) is None
    assert [kind for kind, (holds, _) in RENDERERS.items() if holds(real_study[1])] == ["study"]
    out = tmp_path / "out"
    result = runner.invoke(app, ["rerender", str(folder), "--out", str(out)])
    assert result.exit_code == 1 and "no renderer knows this kind of report yet" in result.output
    assert not out.exists()


@pytest.mark.parametrize("name, text, needle", [
    ("study.json", "{not json", "study.json = "),
    ("study.json", '{"meta": {}}', '"command": "explore report ...", "meta"'),
    ("trials.csv", 'number,state,top1\n0,"COMPLETE",80.5\n', "a table that reads back as explore report wrote it"),
    ("trials.csv", "number,state\n0,COMPLETE,80.5,extra\n", "trials.csv = "),
])
def test_unreadable_stored_data_is_one_error_line(real_study, tmp_path, name, text, needle):
    folder = tmp_path / "bad"
    shutil.copytree(real_study[1], folder)
    (folder / name).write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    result = runner.invoke(app, ["rerender", str(folder), "--out", str(out)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in result.output, result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_a_study_without_trials_rerenders_byte_for_byte(tmp_path):
    # trials.csv of no trial is one empty line; the summary says "trials: none"
    storage = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.create_study(study_name="empty", storage=storage, directions=["maximize", "minimize"])
    report = tmp_path / "report"
    paths = write_study_report("empty", storage, report)
    assert "- trials: none" in paths.markdown.read_text(encoding="utf-8")
    written = _rerender(report, tmp_path / "again")
    _assert_same(report, tmp_path / "again", written)
