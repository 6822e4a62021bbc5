"""The objective's steps one by one (explore/search/objective.py): surplus, sample, deduplicate, the
latency cache and the budget, a schedule's job, the evaluation and what each step records."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from explore.errors import ExploreError
from explore.measure import Measurement
from explore.records import RecordWriter, TrialRecord, promotion_attrs
from explore.search.objective import (MeasuredLatency, OverBudget, check_budget, duplicate_reason, sample_config,
                                      schedule_job, surplus_reason, train_candidate)
from explore.search.schedule import Schedule
from explore.space import load_space
from explore.train import ProxyRecipe, load_dataset
from tests.conftest import tiny_config
from tests.study_helpers import FIXTURES, one_thread, tiny_settings  # noqa: F401 - one_thread is a fixture


def _study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(directions=["maximize", "minimize"])


def _complete(study: optuna.Study, **attrs) -> None:
    study.add_trial(create_trial(state=TrialState.COMPLETE, values=[50.0, 1.0], user_attrs=attrs))


def _measurement(batch_size: int = 16) -> Measurement:
    return Measurement(protocol={"name": "cpu-latency", "batch_size": 16}, device_name="cpu", batch_size=batch_size,
                       median_ms=8.0, iqr_ms=0.5, cv=0.02, throughput_img_s=2000.0, latency_ms_per_img=0.5,
                       gpu_ms=None, host_ms=None, host_bound=None, oom_retries=0, versions={"torch": "2"})


def test_surplus_counts_complete_and_earlier_running_first_jobs_only():
    study = _study()
    _complete(study)
    running = study.ask()  # trial 1, RUNNING
    _complete(study, **promotion_attrs(0))  # a promotion does not count
    later = study.ask()
    assert surplus_reason(study, later.number, trials=3) is None
    reason = surplus_reason(study, later.number, trials=2)
    assert reason is not None and reason.startswith("surplus: 2 trials")
    assert surplus_reason(study, running.number, trials=2) is None  # only trial 0 is ahead of trial 1


def test_sample_records_the_hash_at_once_and_prunes_an_infeasible_point(tmp_path):
    data = load_dataset("synthetic", max_train=8, max_val=8)
    settings = tiny_settings(tmp_path)
    trial = _study().ask()
    config = sample_config(trial, load_space(settings.space), data, settings, RecordWriter(trial))
    assert trial.user_attrs["config_hash"] == config.config_hash() and config.in_chans == data.in_chans
    infeasible = _study().ask()
    with pytest.raises(optuna.TrialPruned):
        sample_config(infeasible, load_space(FIXTURES / "spaces" / "infeasible.toml"), data, settings, RecordWriter(infeasible))
    assert TrialRecord.of(infeasible).pruned_reason.startswith("infeasible: stages[0].heads = 3")


def test_deduplicate_names_the_trial_that_holds_the_architecture():
    study = _study()
    _complete(study, config_hash="abc")
    trial = study.ask()
    assert duplicate_reason(trial, "abc", None) == "duplicate: same architecture as trial #0"
    assert duplicate_reason(trial, "other", None) is None
    study.enqueue_trial({}, user_attrs=promotion_attrs(0))
    study.enqueue_trial({}, user_attrs=promotion_attrs(0))  # two workers promoted #0 at once
    first, second = study.ask(), study.ask()
    assert duplicate_reason(first, "abc", 0) is None  # a promotion repeats its architecture on purpose
    assert duplicate_reason(second, "abc", 0) == f"duplicate promotion: job #{first.number} continues #0"


def test_the_cache_is_filled_by_the_first_trial_and_read_by_the_next(tmp_path):
    study = _study()
    settings = tiny_settings(tmp_path)
    latency = MeasuredLatency(settings, "cpu")
    config = tiny_config(img_size=32)
    first = study.ask()
    cache, key, protocol, cached = latency.lookup(first, config)
    assert cached is None and protocol.name == "cpu-latency" and key.config_hash == config.config_hash()
    assert latency.record(RecordWriter(first), cache, key, None, _measurement(batch_size=8)) == 0.5
    assert first.user_attrs["latency_cached"] is False and first.user_attrs["latency_measured_by_trial"] == 0
    second = study.ask()
    cache, key, _, cached = latency.lookup(second, config)
    assert cached is not None  # filed by the first trial: nothing is timed again
    latency.record(RecordWriter(second), cache, key, cached, None)
    record = TrialRecord.of(second)
    assert record.latency_cached and record.attrs["latency_measured_by_trial"] == 0
    assert record.latency_ms_per_img == 0.5 and record.latency_source == "measured"
    assert cache.get(dataclasses.replace(key, batch_size=8)) is not None  # an out-of-memory halving is filed
    # under the batch it timed too


def test_the_budget_records_the_excess_and_stops_a_trial_over_it():
    trial = _study().ask()
    record = RecordWriter(trial)
    check_budget(record, 0.8, "measured", None)
    assert "latency_excess_ms" not in trial.user_attrs  # no budget: nothing recorded
    check_budget(record, 0.8, "measured", 1.0)
    assert trial.user_attrs["latency_excess_ms"] == pytest.approx(-0.2)
    over = RecordWriter(_study().ask())
    with pytest.raises(OverBudget, match="0.8000 ms/img predicted > --max-latency-ms 0.5"):
        check_budget(over, 0.8, "predicted", 0.5)
    assert over.trial.user_attrs["latency_excess_ms"] == pytest.approx(0.3)


def test_a_first_job_draws_its_bracket_and_a_promotion_needs_its_parents_state(tmp_path):
    settings = tiny_settings(tmp_path, schedule="sha", rungs=(0.5, 1.0), eta=2)
    plan = Schedule.make("sha", 1.0, (0.5, 1.0), 2)
    study = _study()
    config = tiny_config(img_size=32)
    trial = study.ask()
    job = schedule_job(trial, RecordWriter(trial), config, plan, settings, base_seed=0)
    assert (job.arch, job.rung, job.until, job.resume) == (trial.number, 0, 0.5, None) and job.save is not None
    record = TrialRecord.of(trial)
    assert (record.rung, record.bracket, record.arch_trial) == (0, 0, trial.number)
    trial.set_user_attr("config_hash", config.config_hash())
    study.tell(trial, [10.0, 1.0])
    study.enqueue_trial({}, user_attrs=promotion_attrs(trial.number))
    promotion = study.ask()
    with pytest.raises(ExploreError, match="checkpoint"):  # job 0 stored no state
        schedule_job(promotion, RecordWriter(promotion), config, plan, settings, base_seed=0)
    with pytest.raises(ExploreError, match="promotes"):
        schedule_job(promotion, RecordWriter(promotion), tiny_config(img_size=48), plan, settings, base_seed=0)


def test_train_candidate_records_counts_latency_steps_and_the_proxy(tmp_path, one_thread):  # noqa: F811
    data = load_dataset("synthetic", max_train=32, max_val=16)
    trial = _study().ask()
    record = RecordWriter(trial)
    steps = []

    def on_step(step, evaluation) -> None:
        steps.append(step)
        if step == "counted":
            record.counts(evaluation.params, evaluation.macs)

    config = tiny_config(img_size=32, in_chans=data.in_chans, num_classes=data.num_classes)
    evaluation = train_candidate(record, config, seed=0, data=data, recipe=ProxyRecipe(epochs=1, batch_size=16),
                                 device="cpu", threads=1, protocol=None, job=None,
                                 plan=Schedule.make("full", 1.0), on_step=on_step)
    assert steps == ["built", "counted", "timed", "trained"] and evaluation.latency is None
    record_read = TrialRecord.of(trial)
    assert record_read.params == evaluation.params > 0 and record_read.macs > 0
    assert trial.user_attrs["proxy_top1"] == evaluation.proxy.top1 and trial.user_attrs["proxy_threads"] == 1
    assert record_read.train_images == 2 * 16  # 2 steps of 16 images
    assert record_read.rung_history == []  # no schedule


def test_measured_latency_times_the_workers_own_device(monkeypatch):
    """``--devices 1`` with one worker: the protocol runs on cuda:1, whose name the cache key carries."""
    import torch

    import explore.search.objective as objective_module
    from explore.search import StudySettings

    monkeypatch.setattr(objective_module, "device_name", lambda device: f"GPU {torch.device(device).index}")
    settings = StudySettings(device="cuda", devices=(1,), workers=1)
    trial = optuna.create_study().ask()
    latency = objective_module.MeasuredLatency(settings, torch.device(settings.worker_device(0)))
    _, key, protocol, cached = latency.lookup(trial, tiny_config())
    assert protocol.device == "cuda:1" and key.device == "GPU 1" and cached is None
