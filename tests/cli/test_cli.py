"""The `explore` command line: describe, study (end to end, resume), report, and bad input."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from explore.cli import app
from explore.arch import CGA_MODELS, TIMM_PARAM_COUNTS
from tests.conftest import needs_fashion_mnist, tiny_config
from tests.study_helpers import TINY_ARGS, write_space

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_describe_json_preset():
    result = invoke("describe", "efficientvit_m0", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["params"] == TIMM_PARAM_COUNTS["efficientvit_m0"]
    assert abs(data["macs"] / (CGA_MODELS["efficientvit_m0"]["macs_M"] * 1e6) - 1) < 0.01
    assert data["config"]["stages"][0]["width"] == 64


def test_describe_config_file_table_and_infeasible(tmp_path):
    good = tmp_path / "arch.json"
    good.write_text(tiny_config().to_json())
    result = invoke("describe", str(good))
    assert result.exit_code == 0, result.output
    assert "params" in result.output and "MACs" in result.output and "cga" in result.output
    bad_cfg = tiny_config().to_dict()
    bad_cfg["stages"][0]["heads"] = 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(bad_cfg))
    result = invoke("describe", str(bad))
    assert result.exit_code == 1
    assert "stages[0].heads = 3" in result.output


BAD_STUDY_INPUTS = [
    (["--space", "nope"], "--space = 'nope'"),
    (["--device", "tpu"], "--device = 'tpu'"),
    (["--dataset", "mnist"], "--dataset = 'mnist'"),
    (["--dataset", "cifar10", "--data-root", "/nonexistent/cifar"], "--data-root = '/nonexistent/cifar'"),
    (["--study-name", "../escape"], "--study-name = '../escape'"),
    (["--trials", "0"], "--trials = 0"),
    (["--sampler", "grid"], "--sampler = 'grid'"),
    (["--latency-mode", "cuda-graph"], "--latency-mode = 'cuda-graph'"),  # was named --mode, not an option here
    (["--latency-batch", "-1"], "--latency-batch = -1"),
]


@pytest.mark.parametrize("args, needle", BAD_STUDY_INPUTS)
def test_bad_study_input_is_one_clear_error_and_writes_nothing(tmp_path, args, needle):
    out = tmp_path / "runs"
    result = invoke("study", "--out", str(out), *args)
    assert result.exit_code == 1
    assert needle in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_unavailable_is_an_error(tmp_path):
    result = invoke("study", "--out", str(tmp_path / "runs"), "--device", "cuda")
    assert result.exit_code == 1 and "CUDA is not available" in result.output
    assert not (tmp_path / "runs").exists()


def test_malformed_space_file_writes_nothing(tmp_path):
    space = tmp_path / "broken.toml"
    space.write_text("[space]\nname = 'broken'\nstages = 3\n[stage]\nwidth = { low = 64 }\n")
    result = invoke("study", "--space", str(space), "--out", str(tmp_path / "runs"))
    assert result.exit_code == 1
    assert "broken.toml" in result.output and "stage." in result.output
    assert not (tmp_path / "runs").exists()


def test_report_of_missing_study(tmp_path):
    result = invoke("report", str(tmp_path / "nothing"))
    assert result.exit_code == 1 and "STUDY" in result.output
    assert not (tmp_path / "nothing").exists()


@needs_fashion_mnist
def test_study_end_to_end_resume_and_report(tmp_path):
    out = tmp_path / "runs"
    common = ["study", "--space", "cga", "--out", str(out), "--study-name", "t", "--epochs", "1",
              "--batch-size", "64", "--max-train", "192", "--max-val", "128", "--seed", "1", "--no-report"]
    first = invoke(*common, "--trials", "2")
    assert first.exit_code == 0, first.output
    assert "done: 2 complete" in first.output
    db = out / "t" / "study.db"
    assert db.is_file()

    second = invoke(*common, "--trials", "3")  # same name: resumes, adds one complete trial
    assert second.exit_code == 0, second.output
    assert "done: 3 complete" in second.output

    report = invoke("report", str(out / "t"))
    assert report.exit_code == 0, report.output
    folder = out / "t" / "report"
    frame = pd.read_csv(folder / "trials.csv")
    complete = frame[frame["state"] == "COMPLETE"]
    assert len(complete) == 3
    for column in ("params", "macs", "latency_median_ms", "latency_iqr_ms", "latency_cv", "proxy_top1", "config"):
        assert complete[column].notna().all(), column
    assert (complete["top1"] == complete["proxy_top1"]).all()
    assert (complete["latency_first_ms"] == complete["latency_ms_per_img"]).all()  # the objective is ms per image
    # the front's latencies were measured again at the end; the lower figure counts
    front = complete[complete["pareto"]]
    assert front["latency_remeasured_ms"].notna().all()
    assert (complete["latency_ms"] <= complete["latency_first_ms"]).all()
    assert (complete["top1"] >= 0).all() and (complete["top1"] <= 100).all()
    pruned = frame[frame["state"] == "PRUNED"]
    if len(pruned):
        assert pruned["pruned_reason"].str.contains("infeasible").all()
    assert complete["pareto"].any()
    summary = (folder / "summary.md").read_text()
    assert "Pareto front" in summary and "top-1 (%)" in summary and "explore report" in summary
    # which latency Optuna's tools show and which the report ranks by, said in both places (issue 28, item 8)
    assert "Optuna's own tools (`optuna best-trials`, optuna-dashboard) show the trial values" in summary
    from explore.search.results import LATENCY_FIGURES_ATTR, LATENCY_FIGURES_NOTE, open_study

    assert open_study(str(out / "t")).user_attrs[LATENCY_FIGURES_ATTR] == LATENCY_FIGURES_NOTE
    png = (folder / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


_ABSOLUTE = re.compile(r"(^|[\s`'\"(=,:;])/[\w.-]")
"""A path that starts with '/' (not the '/' inside ms/img or T-shirt/top)."""


def test_study_report_holds_no_absolute_path_and_names_its_data(tmp_path, monkeypatch):
    from explore.resources import display_path
    from explore.space import load_space
    from explore.search import open_study, study_space

    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path)  # given below as an absolute path, under the current directory
    result = invoke("study", "--space", str(space), "--out", "runs", "--study-name", "t", "--trials", "1",
                    *TINY_ARGS)
    assert result.exit_code == 0, result.output
    assert "space faults (space.toml)" in result.output
    assert "data: 10 classes (class0, class1, class2, class3, class4, ...); train 64 / val 32 images" in result.output
    study = open_study("runs/t")
    assert study.user_attrs["space_file"] == "space.toml"
    assert study.user_attrs["dataset_info"]["num_classes"] == 10
    folder = tmp_path / "runs" / "t" / "report"
    for name in ("summary.md", "trials.csv", "study.json"):  # study.json: the settings explore rerender reads
        text = (folder / name).read_text()
        assert str(tmp_path) not in text and not _ABSOLUTE.search(text), (name, _ABSOLUTE.search(text))
    assert json.loads((folder / "study.json").read_text())["meta"]["settings"]["space"] == "space.toml"
    summary = (folder / "summary.md").read_text()
    assert "(space.toml)" in summary and "- data: 10 classes (class0" in summary
    # the stored relative path still finds the space from another folder (as explore importance reads it)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert study_space(study, tmp_path / "runs" / "t").name == "faults"
    # a built-in space is stored as search_spaces/<name>.toml and found from any folder
    builtin = display_path(load_space("cga").path, "search_spaces")
    assert builtin == "search_spaces/cga.toml" and load_space(builtin).name == "cga"


def test_resumed_study_on_other_classes_is_refused(tmp_path):
    from PIL import Image

    def images(classes) -> None:
        for cls in classes:
            (tmp_path / "data" / "train" / cls).mkdir(parents=True, exist_ok=True)
            for i in range(4):
                Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(tmp_path / "data" / "train" / cls / f"{i}.png")

    images(("a", "b"))
    args = ["study", "--space", str(write_space(tmp_path)), "--out", str(tmp_path / "runs"), "--study-name", "t",
            "--dataset", "imagefolder", "--data-root", str(tmp_path / "data"), "--max-train", "0", "--max-val", "0",
            "--batch-size", "8", "--epochs", "1", "--latency-repeats", "2", "--no-report"]
    first = invoke(*args, "--trials", "1")
    assert first.exit_code == 0, first.output
    assert "data: 2 classes (a, b); train 7 / val 1 images; train and val: train/ (8 images) split" in first.output
    images(("c",))
    second = invoke(*args, "--trials", "2")
    assert second.exit_code == 1
    assert "--data-root" in second.output and "was run on 2 classes (a, b); this data has 3 (a, b, c)" in second.output
    assert "Traceback" not in second.output
