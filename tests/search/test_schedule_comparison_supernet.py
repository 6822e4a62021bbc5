"""explore compare-schedules with ``supernet``: the supernet's training charged to its runs in epochs
of the training subset, its front trained on its own, its curve from those stand-alone figures."""

from __future__ import annotations

import pytest
import torch

from explore.errors import ExploreError
from explore.report.schedules import write_schedules_report
from explore.search import open_study
from explore.search.inherited import supernet_front_runs
from explore.search.schedule_comparison import CompareSettings, compare_schedules, supernet_charge
from tests.study_helpers import FIXTURES, one_thread  # noqa: F401 - fixture

TINY = str(FIXTURES / "spaces" / "tiny_supernet.toml")


def test_supernet_runs_are_charged_its_training_and_retrain_their_front(tmp_path, one_thread):
    settings = CompareSettings(space=TINY, schedules=("full", "supernet"), seeds=(0,), budget=2, epochs=1,
                               long_epochs=1, dataset="synthetic", max_train=64, max_val=32, batch_size=32,
                               train_threads=1, latency_repeats=5, supernet_epochs=1, random_subnets=0,
                               supernet_trials=3, recalibration_images=32, out=str(tmp_path / "cmp"))
    comparison = compare_schedules(settings)
    assert supernet_charge(settings) == 2.0  # 1 epoch x (largest + smallest)
    runs = comparison.runs.set_index("schedule")
    study = open_study(str(tmp_path / "cmp" / "runs" / "supernet-seed0"))
    alone = supernet_front_runs(study)
    assert alone and runs.loc["supernet", "architectures"] == 3 and runs.loc["supernet", "jobs"] == len(alone)
    trained = sum(r["train_images"] for r in alone.values()) / 64
    assert runs.loc["supernet", "supernet_epochs_charged"] == 2.0
    assert runs.loc["supernet", "spent_epochs"] == pytest.approx(2.0 + trained)
    state = torch.load(tmp_path / "cmp" / "supernet" / "supernet.pt", weights_only=True)
    assert runs.loc["supernet", "train_seconds"] == pytest.approx(
        state["train_seconds"] + sum(r["train_s"] for r in alone.values()))
    curve = comparison.curves[comparison.curves["schedule"] == "supernet"]
    assert curve["spent_epochs"].min() > 2.0 and len(curve) == len(alone)
    fronts = comparison.fronts[comparison.fronts["schedule"] == "supernet"]
    assert len(fronts) >= 1 and set(fronts["trial"]) <= set(alone)
    assert fronts["long_top1"].notna().all()
    for row in fronts.itertuples(index=False):  # the comparison's front uses the stand-alone top-1
        assert row.study_top1 == alone[row.trial]["top1"]
    paths = write_schedules_report(comparison, tmp_path / "cmp", "explore compare-schedules ...")
    assert "- supernet: one weight-sharing supernet trained 1 epochs" in paths.markdown.read_text(encoding="utf-8")


def test_bad_supernet_settings_are_refused(tmp_path):
    for change, option in [({"supernet_epochs": 0}, "--supernet-epochs"), ({"supernet_trials": 0}, "--supernet-trials"),
                           ({"random_subnets": -1}, "--random-subnets"),
                           ({"schedules": ("full", "supernet", "x")}, "--schedules")]:
        with pytest.raises(ExploreError, match=option):
            CompareSettings(**{"space": TINY, "schedules": ("full", "supernet"), "out": str(tmp_path / "c"),
                               **change}).validate()
    assert not (tmp_path / "c").exists()
