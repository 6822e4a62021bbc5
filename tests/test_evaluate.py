"""The hub (explore/evaluate.py): one candidate end to end (build -> count -> time -> train) on a tiny
config, the seed's initial weights, the steps it skips, and the budget every command shares."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from explore.analysis.importance.command import ImportanceSettings
from explore.evaluate import RunBudget, TrainBudget, evaluate_candidate, train_model
from explore.measure import count_macs, count_params, get_protocol
from explore.nn import build
from explore.search import StudySettings
from explore.search.schedule_comparison import CompareSettings
from explore.train import ProxyRecipe, load_dataset
from tests.conftest import tiny_config
from tests.study_helpers import one_thread  # noqa: F401 - a fixture


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", max_train=32, max_val=16, seed=0, img_size=32)


def _config(data):
    return tiny_config(img_size=32, in_chans=data.in_chans, num_classes=data.num_classes)


def test_a_candidate_is_built_counted_timed_and_trained_in_that_order(data, one_thread):  # noqa: F811
    config = _config(data)
    steps = []
    protocol = get_protocol("cpu-latency", batch_size=2, img_size=32, in_chans=data.in_chans, repeats=3, warmup=1)
    evaluation = evaluate_candidate(config, seed=0, protocol=protocol, data=data,
                                    recipe=ProxyRecipe(epochs=1, batch_size=16), threads=1,
                                    on_step=lambda step, ev: steps.append((step, ev.params is not None,
                                                                           ev.latency is not None, ev.proxy is not None)))
    assert steps == [("built", False, False, False), ("counted", True, False, False), ("timed", True, True, False),
                     ("trained", True, True, True)]  # each figure is there when its step is reported
    model = build(config)
    assert evaluation.params == count_params(model) and evaluation.macs == count_macs(model, 32, data.in_chans)
    assert evaluation.latency.batch_size == 2 and evaluation.latency.latency_ms_per_img > 0
    assert evaluation.latency.protocol["name"] == "cpu-latency"
    assert 0.0 <= evaluation.proxy.top1 <= 100.0 and evaluation.proxy.steps == 2  # 32 images / batch 16, 1 epoch
    assert evaluation.config is config and count_params(evaluation.model) == evaluation.params  # the trained module


def test_the_seed_fixes_the_initial_weights(data):
    config = _config(data)
    a = evaluate_candidate(config, seed=3, count=False).model.state_dict()
    b = evaluate_candidate(config, seed=3, count=False).model.state_dict()
    c = evaluate_candidate(config, seed=4, count=False).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_steps_not_asked_are_skipped_but_still_reported(data):
    steps = []
    evaluation = evaluate_candidate(_config(data), count=False, on_step=lambda step, ev: steps.append(step))
    assert steps == ["built", "counted", "timed", "trained"]
    assert (evaluation.params, evaluation.macs, evaluation.latency, evaluation.proxy) == (None, None, None, None)


def test_training_restores_the_callers_threads(data):
    before = torch.get_num_threads()
    model = build(_config(data))
    result = train_model(model, data, img_size=32, recipe=ProxyRecipe(epochs=0.5, batch_size=16), seed=0, threads=1)
    assert torch.get_num_threads() == before and result.steps == 1


def test_the_budget_is_one_set_of_fields_that_every_command_shares():
    shared = {f.name for f in dataclasses.fields(RunBudget)}
    assert {"dataset", "data_root", "max_train", "max_val", "epochs", "batch_size", "lr", "seed", "device"} <= shared
    for settings in (StudySettings, ImportanceSettings, CompareSettings):
        assert issubclass(settings, TrainBudget) and shared - {"seed", "device"} <= {f.name for f in dataclasses.fields(settings)}
    budget = RunBudget(max_train=32, max_val=16, epochs=0.5, batch_size=8, lr=1e-3, seed=2)
    assert budget.proxy_recipe() == ProxyRecipe(epochs=0.5, batch_size=8, lr=1e-3)
    assert budget.proxy_recipe(epochs=3.0).epochs == 3.0
    data = dataclasses.replace(budget, dataset="synthetic").load_data(budget.seed, img_size=32)
    assert (len(data.train), len(data.val)) == (32, 16)


def test_the_task_decides_the_architecture_a_budget_trains(data):
    config = _config(data)
    assert TrainBudget().task_config(config) is config  # classification: unchanged
    seg = TrainBudget(task="segmentation", seg_size=64, seg_head_width=16, seg_head_depth=1).task_config(config)
    assert (seg.img_size, seg.seg_head_width, seg.seg_head_depth) == (64, 16, 1)
    assert seg.seg_head_inputs <= len(config.stages)
