"""Trial faults, heartbeats and retries, the exact trial count, the latency cache and determinism."""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

import explore.evaluate as evaluate_module
import explore.measure.timing as timing_module
import explore.search.run as search_run
from explore.search import CACHE_PREFIX, LatencyCache
from explore.errors import ExploreError
from explore.train import load_dataset
from explore.search import HeartbeatJournalStorage, make_storage
from explore.search import FAULTS_ENV, fail_stale, make_objective, prepare_study, open_study, run_study, trials_frame
from tests.study_helpers import FIXED_SPACE, one_thread, tiny_settings, write_space  # noqa: F401 - fixture


def test_trial_faults_are_recorded_and_the_study_goes_on(tmp_path, monkeypatch, one_thread):  # noqa: F811
    monkeypatch.setenv(FAULTS_ENV, "oom@0,nan@1,error@2")
    settings = tiny_settings(tmp_path, trials=2)
    summary = run_study(settings)
    assert (summary.complete, summary.pruned, summary.failed, summary.running) == (2, 2, 1, 0)
    frame = trials_frame(open_study(str(settings.run_dir)))
    by_number = frame.set_index("number")
    assert by_number.loc[0, "state"] == "PRUNED"
    assert by_number.loc[0, "pruned_reason"].startswith("out of memory: CUDA out of memory")
    assert by_number.loc[1, "state"] == "PRUNED"
    assert by_number.loc[1, "pruned_reason"].startswith("non-finite loss: loss became nan")
    assert by_number.loc[2, "state"] == "FAIL"
    assert by_number.loc[2, "fail_reason"] == f"RuntimeError: injected fault ({FAULTS_ENV})"
    assert list(frame.loc[frame["state"] == "COMPLETE", "number"]) == [3, 4]


def test_a_real_allocator_error_is_an_out_of_memory_prune(tmp_path, monkeypatch, one_thread):  # noqa: F811
    calls = []

    def fail_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        return real(*args, **kwargs)

    real = evaluate_module.train_proxy
    monkeypatch.setattr(evaluate_module, "train_proxy", fail_once)
    summary = run_study(tiny_settings(tmp_path, trials=1))
    assert (summary.complete, summary.pruned, summary.failed) == (1, 1, 0)
    frame = trials_frame(open_study(str(tmp_path / "runs" / "t")))
    assert frame.loc[0, "pruned_reason"].startswith("out of memory: [enforce fail")


def test_latency_is_measured_once_per_config_and_protocol(tmp_path, monkeypatch, one_thread):  # noqa: F811
    calls = []
    real = timing_module.measure

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the trial trains, after its latency is measured

    monkeypatch.setattr(timing_module, "measure", counting)  # what time_model calls
    space = str(write_space(tmp_path, FIXED_SPACE, "fixed.toml"))  # one architecture
    with monkeypatch.context() as patch:
        patch.setattr(evaluate_module, "train_proxy", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_study(tiny_settings(tmp_path, space=space, trials=1))
        assert len(calls) == 1
        # another protocol is another key
        with pytest.raises(KeyboardInterrupt):
            run_study(tiny_settings(tmp_path, space=space, trials=1, latency_batch=8))
        assert len(calls) == 2
    # the cache lives in the study's storage: a resumed run (a new process) finds trial 0's entry
    settings = tiny_settings(tmp_path, space=space, trials=1, remeasure_front=False)  # the cache alone
    run_study(settings)
    assert len(calls) == 2
    frame = trials_frame(open_study(str(settings.run_dir)))
    assert list(frame["state"]) == ["FAIL", "FAIL", "COMPLETE"]
    assert list(frame["latency_cached"]) == [False, False, True]
    assert list(frame["latency_measured_by_trial"]) == [0, 1, 0]
    assert frame["config_hash"].nunique() == 1
    assert frame.loc[2, "latency_ms"] == frame.loc[0, "latency_ms_per_img"]
    study = open_study(str(settings.run_dir))
    entries = sorted(LatencyCache(study).entries().values(), key=lambda entry: entry["key"]["batch_size"])
    assert [entry["key"]["batch_size"] for entry in entries] == [8, 16]
    assert all(entry["key"]["config_hash"] == frame.loc[0, "config_hash"] for entry in entries)
    assert entries[1]["key"]["repeats"] == 5
    assert sum(key.startswith(CACHE_PREFIX) for key in study.user_attrs) == 2


def test_same_seed_same_parameters_and_results_on_cpu(tmp_path, one_thread):  # noqa: F811
    frames = []
    for name in ("a", "b"):
        settings = tiny_settings(tmp_path, study_name=name, trials=3, seed=7, train_threads=1)
        run_study(settings)
        frames.append(trials_frame(open_study(str(settings.run_dir))))
    first, second = frames
    params = [c for c in first.columns if c.startswith("p.")]
    assert params and list(first["number"]) == list(second["number"]) == [0, 1, 2]
    assert first[params].equals(second[params])
    assert list(first["proxy_threads"]) == [1, 1, 1]
    assert list(first["top1"]) == list(second["top1"])
    assert list(first["proxy_train_loss"]) == list(second["proxy_train_loss"])
    assert list(first["config_hash"]) == list(second["config_hash"])


def test_a_surplus_trial_is_pruned_before_any_work(tmp_path, one_thread):  # noqa: F811
    settings = tiny_settings(tmp_path, trials=1)
    space, _ = prepare_study(settings)
    data = load_dataset("synthetic", None, max_train=64, max_val=32, seed=0)
    objective = make_objective(space, data, settings, "cpu")
    study = optuna.create_study(directions=["maximize", "minimize"])
    first, second = study.ask(), study.ask()  # two workers started at the same instant
    with pytest.raises(optuna.TrialPruned):
        objective(second)
    study.tell(second, state=TrialState.PRUNED)
    assert second.user_attrs["pruned_reason"].startswith("surplus")
    assert "config" not in second.user_attrs  # nothing was sampled or built
    values = objective(first)  # the first one runs
    assert 0 <= values[0] <= 100 and values[1] > 0


def _fail_stale(study: optuna.Study) -> None:
    fail_stale(study)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask() stands in for a worker
def test_journal_heartbeat_fails_a_dead_trial_and_retries_it(tmp_path):
    storage = make_storage(str(tmp_path / "journal.log"), heartbeat_s=1)
    assert isinstance(storage, HeartbeatJournalStorage)
    storage._grace_period = 1  # keep the test short
    study = optuna.create_study(storage=storage, study_name="hb")
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    alive = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    time.sleep(1.3)
    storage.record_heartbeat(alive._trial_id)  # only the live trial beats
    _fail_stale(study)
    states = {t.number: t.state for t in study.get_trials()}
    assert states[dead.number] == TrialState.FAIL and states[alive.number] == TrialState.RUNNING
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert retry.system_attrs["failed_trial"] == dead.number and retry.params == dead.params
    # a second process sees the same file: nothing is failed or retried twice
    other = optuna.load_study(study_name="hb", storage=make_storage(str(tmp_path / "journal.log"), heartbeat_s=1))
    _fail_stale(other)
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1
    # the retry runs in the next optimize() call, with the dead trial's parameters
    other.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert other.trials[retry.number].state == TrialState.COMPLETE
    assert other.trials[retry.number].params == dead.params


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask() stands in for a worker
def test_rdb_heartbeat_fails_a_dead_trial_and_retries_it(tmp_path):
    storage = make_storage(f"sqlite:///{tmp_path / 'hb.db'}", heartbeat_s=1)
    storage.grace_period = 1  # RDBStorage keeps it in this attribute
    study = optuna.create_study(storage=storage, study_name="hb")
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage.record_heartbeat(dead._trial_id)
    time.sleep(2.2)  # SQLite's clock has one-second resolution
    _fail_stale(study)
    assert study.trials[dead.number].state == TrialState.FAIL
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert retry.system_attrs["failed_trial"] == dead.number


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask() stands in for a worker
def test_stale_trials_get_a_reason_in_the_trials_table(tmp_path):
    storage = make_storage(str(tmp_path / "journal.log"), heartbeat_s=1)
    storage._grace_period = 0
    study = optuna.create_study(storage=storage, study_name="hb", directions=["maximize", "minimize"])
    study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    time.sleep(0.1)
    _fail_stale(study)
    frame = trials_frame(study)
    assert frame.loc[0, "state"] == "FAIL"
    assert frame.loc[0, "fail_reason"].startswith("stale") and "retried as #1" in frame.loc[0, "fail_reason"]
    assert frame.loc[1, "retry_of"] == 0
    # the study's console line for that trial gives the same reason (issue 28, item 9: never "#0 FAIL: ")
    from explore.cli.study import trial_line
    from explore.search.settings import StudySettings

    line = trial_line(StudySettings(), study, study.trials[0])
    assert line == f"#0 FAIL: {frame.loc[0, 'fail_reason']}"


def test_several_workers_need_a_storage_that_takes_several_writers(tmp_path):
    settings = tiny_settings(tmp_path, workers=2, storage=f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ExploreError, match="--workers = 2"):
        settings.validate()
    # the default for several workers is a journal file in the run folder
    assert tiny_settings(tmp_path, workers=2).storage_url.endswith("runs/t/journal.log")
    assert tiny_settings(tmp_path).storage_url.startswith("sqlite:///")


def test_journal_heartbeat_storage_round_trips_through_a_spawned_worker(tmp_path):
    # workers open their own storage; the backend must still pickle for optuna's own uses
    import pickle

    storage = HeartbeatJournalStorage(JournalFileBackend(str(tmp_path / "j.log")), heartbeat_interval=2,
                                      grace_period=6)
    clone = pickle.loads(pickle.dumps(storage))
    assert clone.get_heartbeat_interval() == 2 and clone._grace_period == 6


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask() stands in for a worker
def test_orphans_of_runs_without_heartbeats_are_failed_and_retried(tmp_path, monkeypatch):
    # a RUNNING trial left in a study.db by a crashed run of an older version has no heartbeat and
    # no `worker` attribute: once it is old enough it is failed and re-queued, so nobody waits for it
    from datetime import datetime, timedelta

    storage = f"sqlite:///{tmp_path / 'old.db'}"
    old = optuna.create_study(storage=storage, study_name="old")
    orphan = old.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study = optuna.load_study(study_name="old", storage=make_storage(storage, heartbeat_s=1))
    fail_stale(study, 1)
    assert study.trials[orphan.number].state == TrialState.RUNNING  # young: it may still be alive

    class Later(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) + timedelta(hours=1)

    monkeypatch.setattr(search_run, "datetime", Later)
    fail_stale(study, 1)
    assert study.trials[orphan.number].state == TrialState.FAIL
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert retry.system_attrs["failed_trial"] == orphan.number


def test_single_objective_study_reports_epochs_and_prunes(tmp_path, monkeypatch, one_thread):  # noqa: F811
    """--objective top1: per-epoch top-1 goes to Optuna, and a trial the pruner stops is PRUNED with the reason."""
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: self.number == 1)
    settings = tiny_settings(tmp_path, trials=2, epochs=2.0, objective="top1")
    summary = run_study(settings)
    assert (summary.complete, summary.pruned) == (2, 1)
    study = open_study(str(settings.run_dir))
    assert len(study.directions) == 1
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert all(sorted(t.intermediate_values) == [0, 1] for t in done)
    pruned = study.trials[1]
    assert pruned.state.name == "PRUNED" and pruned.user_attrs["pruned_reason"].startswith("pruned by the median rule")
    frame = trials_frame(study)
    assert frame.loc[frame["state"] == "COMPLETE", "latency_ms"].gt(0).all()
    with pytest.raises(ExploreError, match="--objective"):
        tiny_settings(tmp_path, objective="speed").validate()


def test_a_sticky_cuda_error_ends_the_worker_with_one_line(tmp_path):
    """After an illegal address every later CUDA call fails: the trial is FAIL with its reason, and the
    worker stops at once (one DeviceError line) instead of failing trials until the attempt cap."""
    import torch

    from explore.device import is_sticky_cuda_error
    from explore.errors import DeviceError
    from explore.search import run as run_module

    calls = []

    def objective(trial):
        calls.append(trial.number)
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be ...")

    settings = tiny_settings(tmp_path, trials=3)
    study = run_module._open(settings)
    with pytest.raises(DeviceError, match="illegal memory access.*run the same command again"):
        run_module._work(study, objective, settings)
    assert calls == [0]
    trial = study.get_trials()[0]
    assert trial.state == TrialState.FAIL and "illegal memory access" in trial.user_attrs["fail_reason"]
    assert is_sticky_cuda_error(RuntimeError("CUDA error: device-side assert triggered"))
    assert not is_sticky_cuda_error(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert not is_sticky_cuda_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
