"""explore study --task segmentation: mIoU and latency at the segmentation size, end to end."""

from __future__ import annotations

import subprocess

import pytest

from explore.arch import ArchConfig
from explore.errors import ExploreError
from explore.search import StudySettings, open_study, run_study, trials_frame
from tests.study_helpers import explore_command, one_thread, subprocess_env  # noqa: F401 - one_thread is a fixture

SEG = {"space": "msla", "task": "segmentation", "dataset": "fashion_scenes", "max_train": 16, "max_val": 4,
       "seg_size": 32, "seg_head_width": 8, "seg_head_depth": 1, "epochs": 1.0, "batch_size": 8,
       "latency_repeats": 3, "trials": 2, "study_name": "seg"}


def test_a_segmentation_study_optimises_miou_and_latency_at_its_size(tmp_path, one_thread):  # noqa: F811
    settings = StudySettings(out=str(tmp_path / "runs"), **SEG)
    summary = run_study(settings)
    assert summary.complete == 2
    study = open_study(str(settings.run_dir))
    assert study.metric_names == ["miou", "latency_ms"]
    assert study.user_attrs["dataset_info"]["num_classes"] == 11
    for trial in study.trials:
        config = ArchConfig.from_json(trial.user_attrs["config"])
        assert config.is_segmentation and config.img_size == 32 and config.seg_head_width == 8
        assert config.num_classes == 11 and config.in_chans == 1
        assert trial.values[0] == trial.user_attrs["proxy_miou"] and 0 <= trial.values[0] <= 100
        assert trial.user_attrs["latency_protocol_img_size"] == 32
    from explore.cli.study import write_study_report

    text = write_study_report(str(settings.run_dir), None, tmp_path / "report").markdown.read_text()
    assert "mIoU (%)" in text and "top-1 (%)" not in text
    assert not trials_frame(study).empty
    with pytest.raises(ExploreError, match="--dataset|--task"):  # a resumed study keeps its task and data
        run_study(StudySettings(out=str(tmp_path / "runs"), **{**SEG, "task": "classification",
                                                                "dataset": "fashion_mnist", "trials": 3}))


@pytest.mark.parametrize("extra, field", [
    (["--dataset", "cifar10", "--data-root", "."], "--dataset"),
    (["--schedule", "sha"], "--schedule"),
    (["--seg-size", "8"], "--seg-size"),
    (["--task", "depth"], "--task"),
])
def test_bad_segmentation_options_write_nothing(tmp_path, extra, field):
    args = ["study", "--space", "msla", "--out", str(tmp_path / "runs"), "--task", "segmentation", *extra]
    result = subprocess.run(explore_command(*args), capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env=subprocess_env(), check=False)
    assert result.returncode == 1 and result.stderr.count("error:") == 1 and field in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()
