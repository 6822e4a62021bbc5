"""Supernet training: a tiny run writes a checkpoint that loads with weights_only=True, a killed
run resumes to the same weights as an uninterrupted one, other settings in the same folder are an
error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from explore.errors import ExploreError
from explore.supernet.train import CHECKPOINT, SupernetSettings, load_supernet, train_supernet

TINY = str(Path(__file__).resolve().parents[1] / "fixtures" / "spaces" / "tiny_supernet.toml")
SETTINGS = SupernetSettings(space=TINY, dataset="synthetic", max_train=24, max_val=8, epochs=2, batch_size=12,
                            random_subnets=1, seed=3)


def test_a_tiny_run_checkpoints_every_epoch_and_loads_weights_only(tmp_path):
    steps = []
    path = train_supernet(SETTINGS, tmp_path / "run", command="explore supernet train ...",
                          progress=lambda step, total, loss: steps.append((step, total, loss)))
    assert [s[0] for s in steps] == [1, 2, 3, 4] and all(s[1] == 4 for s in steps)
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 2 and state["command"] == "explore supernet train ..."
    assert state["settings"]["space"] == TINY
    supernet, _ = load_supernet(tmp_path / "run")
    assert all(torch.equal(a, b) for a, b in zip(supernet.state_dict().values(), state["model"].values()))


def test_resume_after_a_kill_gives_the_same_weights(tmp_path):
    train_supernet(SETTINGS, tmp_path / "whole")
    train_supernet(SETTINGS, tmp_path / "killed", stop_after_epochs=1)
    assert torch.load(tmp_path / "killed" / CHECKPOINT, weights_only=True)["epoch"] == 1
    train_supernet(SETTINGS, tmp_path / "killed")  # resumes at epoch 1
    whole = torch.load(tmp_path / "whole" / CHECKPOINT, weights_only=True)["model"]
    resumed = torch.load(tmp_path / "killed" / CHECKPOINT, weights_only=True)["model"]
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_other_settings_in_the_same_folder_are_an_error(tmp_path):
    train_supernet(SETTINGS, tmp_path / "run", stop_after_epochs=1)
    with pytest.raises(ExploreError) as info:
        train_supernet(SupernetSettings(**{**SETTINGS.__dict__, "lr": 0.5}), tmp_path / "run")
    assert info.value.field == "--out"
