"""explore study --supernet: trials scored by inherited top-1 (no training), the front trained on its
own at the end, both figures in the report; a supernet of another space is one error line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import explore.evaluate
import explore.search.objective
from explore.arch import ArchConfig
from explore.cli import app
from explore.search import open_study, run_study
from explore.search import trials_frame
from explore.search.front_seeds import front_members
from explore.search.inherited import SUPERNET_FRONT_PREFIX
from explore.supernet import inherited_top1
from explore.supernet.train import SupernetSettings, load_supernet, train_supernet
from tests.study_helpers import FIXTURES, TINY_ARGS, one_thread, tiny_settings  # noqa: F401 - fixture

TINY = str(FIXTURES / "spaces" / "tiny_supernet.toml")


@pytest.fixture(scope="module")
def supernet_dir(tmp_path_factory) -> Path:
    """A supernet of the tiny space, trained one epoch on 64 synthetic images."""
    out = tmp_path_factory.mktemp("supernet")
    train_supernet(SupernetSettings(space=TINY, dataset="synthetic", max_train=64, max_val=32, epochs=1, batch_size=32,
                                    random_subnets=0), out)
    return out


def test_trials_score_inherited_top1_without_training_and_the_front_is_retrained(tmp_path, supernet_dir, monkeypatch,
                                                                                 one_thread):
    def no_training(*args, **kwargs):
        raise AssertionError("a --supernet trial must not train")

    monkeypatch.setattr(explore.search.objective, "train_candidate", no_training)
    trained = []
    real_train = explore.evaluate.train_model

    def counting(*args, **kwargs):
        trained.append(kwargs.get("seed"))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(explore.evaluate, "train_model", counting)
    fronts = []
    settings = tiny_settings(tmp_path, space=TINY, trials=4, supernet=str(supernet_dir), recalibration_images=48,
                             train_threads=1)
    summary = run_study(settings, on_front_run=lambda *run: fronts.append(run))
    assert summary.complete == 4
    study = open_study(str(settings.run_dir))
    supernet, _ = load_supernet(supernet_dir)
    data = settings.load_data(settings.seed)
    for trial in study.get_trials(states=(explore.search.objective.TrialState.COMPLETE,)):
        attrs = trial.user_attrs
        assert attrs["top1_source"] == "inherited" and attrs["supernet"] == str(supernet_dir)
        assert attrs["recalibration_images"] == 48 and attrs["train_images"] == 0
        assert "proxy_top1" not in attrs
        config = ArchConfig.from_json(attrs["config"])
        direct = inherited_top1(supernet, config, data.train, data.val, mean=data.mean, std=data.std, images=48)
        assert trial.values[0] == direct == attrs["inherited_top1"]
    runs = {int(k[len(SUPERNET_FRONT_PREFIX):]): v for k, v in study.user_attrs.items()
            if k.startswith(SUPERNET_FRONT_PREFIX)}
    front = front_members(trials_frame(study))["number"].astype(int).tolist()  # the re-measured front
    assert sorted(runs) == sorted(front) and len(trained) == len(front) == len(fronts)
    for number, run in runs.items():
        assert run["seed"] == settings.seed + number and 0.0 <= run["top1"] <= 100.0
        assert run["inherited_top1"] == study.trials[number].values[0]
    # the report (explore report) shows both figures
    result = CliRunner().invoke(app, ["report", str(settings.run_dir)])
    assert result.exit_code == 0, result.output
    text = (settings.run_dir / "report" / "summary.md").read_text(encoding="utf-8")
    assert "## Front: inherited and stand-alone top-1" in text and "stand-alone top-1 (%)" in text
    table = (settings.run_dir / "report" / "supernet_front.csv").read_text(encoding="utf-8").splitlines()
    assert len(table) == 1 + len(front)
    # a second run trains nothing more (the stored runs count)
    run_study(settings)
    assert len(trained) == len(front)


def test_a_supernet_of_another_space_is_one_error_line(tmp_path, supernet_dir):
    runner = CliRunner()
    result = runner.invoke(app, ["study", "--space", "cga", "--supernet", str(supernet_dir), "--out",
                                 str(tmp_path / "runs"), *TINY_ARGS])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--supernet" in errors[0] and str(supernet_dir) in errors[0]
    assert "tiny_supernet" in errors[0] and "'cga'" in errors[0]
    assert not (tmp_path / "runs").exists()
    result = runner.invoke(app, ["study", "--space", TINY, "--supernet", str(tmp_path / "none"), "--out",
                                 str(tmp_path / "runs"), *TINY_ARGS])
    assert result.exit_code == 1 and "error: --supernet" in result.output and "supernet.pt" in result.output
    result = runner.invoke(app, ["study", "--space", TINY, "--supernet", str(supernet_dir), "--schedule", "sha",
                                 "--out", str(tmp_path / "runs"), *TINY_ARGS])
    assert result.exit_code == 1 and "error: --schedule" in result.output
    assert not (tmp_path / "runs").exists()
