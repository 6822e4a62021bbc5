"""A resumed or added process continues the search: per-trial sampler seeds, and no architecture
trained twice (issue 14, item 2)."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

import explore.evaluate as evaluate_module
from explore.cli import app
from explore.search import SAMPLERS, make_sampler, FAULTS_ENV, TrialSeededSampler, open_study, run_study, trials_frame
from tests.study_helpers import FIXED_SPACE, TINY_ARGS, one_thread, tiny_settings, write_space  # noqa: F401 - fixture

def _draws(tmp_path, sampler: str, chunks: list[int], processes: int) -> list[dict]:
    """Run ``sum(chunks)`` trials on one storage, ``chunks[i]`` of them by process ``i % processes``
    (each process: its own sampler, built afresh with the same seed, as in a new process)."""
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(storage=storage, study_name="s", directions=["maximize", "minimize"])
    settings = tiny_settings(tmp_path, sampler=sampler, seed=3)
    studies = [optuna.load_study(study_name="s", storage=storage, sampler=make_sampler(settings))
               for _ in range(processes)]

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        a, b, x = (trial.suggest_categorical("a", [0, 1, 2, 3]), trial.suggest_categorical("b", [16, 32, 48]),
                   trial.suggest_float("x", 0.0, 1.0))
        return a + x, b * x  # deterministic values: what the sampler sees is the same in every layout

    for i, n in enumerate(chunks):
        studies[i % processes].optimize(objective, n_trials=n)
    return [t.params for t in studies[0].get_trials()]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_resumed_and_added_processes_draw_what_one_process_draws(tmp_path, sampler):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    one = _draws(tmp_path, sampler, [12], 1)  # 12 trials: past TPE's 8 random start-up trials
    assert len({tuple(p.values()) for p in one}) == 12
    assert _draws(tmp_path, sampler, [4, 4, 4], 3) == one  # run, resume, resume (a new sampler each time)
    assert _draws(tmp_path, sampler, [1] * 12, 2) == one  # two processes taking turns on one storage


def test_trial_seeds_depend_on_the_study_seed_and_the_trial_number():
    seeds = {TrialSeededSampler.trial_seed(seed, number) for seed in (0, 1, 2) for number in range(100)}
    assert len(seeds) == 300 and all(0 <= s < 2**32 for s in seeds)
    assert TrialSeededSampler.trial_seed(-1, 5) == TrialSeededSampler.trial_seed(-1, 5)  # any integer seed


def test_resuming_twice_runs_new_architectures(tmp_path, one_thread):  # noqa: F811
    for trials in (2, 4, 6):
        summary = run_study(tiny_settings(tmp_path, trials=trials))
        assert summary.complete == trials and not summary.note
    frame = trials_frame(open_study(str(tmp_path / "runs" / "t")))
    complete = frame[frame["state"] == "COMPLETE"]
    assert len(complete) == 6
    assert complete["config_hash"].nunique() == 6


def test_an_architecture_already_complete_is_pruned_as_duplicate_and_not_trained(tmp_path, monkeypatch,
                                                                                 one_thread):  # noqa: F811
    trained = []
    real = evaluate_module.train_proxy

    def counting(model, *args, **kwargs):
        trained.append(1)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(evaluate_module, "train_proxy", counting)
    monkeypatch.setenv(FAULTS_ENV, "error@0")
    run_study(tiny_settings(tmp_path, trials=1))  # trial 0 FAIL (after its latency), trial 1 COMPLETE
    study = open_study(str(tmp_path / "runs" / "t"))
    failed, done = study.trials[0], study.trials[1]
    assert (failed.state.name, done.state.name) == ("FAIL", "COMPLETE")
    study.enqueue_trial(done.params)  # trial 2: the COMPLETE trial's architecture again
    study.enqueue_trial(failed.params)  # trial 3: the FAIL trial's (as a retry does): it runs
    trained.clear()
    summary = run_study(tiny_settings(tmp_path, trials=3))
    assert summary.complete == 3
    frame = trials_frame(open_study(str(tmp_path / "runs" / "t"))).set_index("number")
    assert frame.loc[2, "state"] == "PRUNED"
    assert frame.loc[2, "pruned_reason"] == "duplicate: same architecture as trial #1"
    assert frame.loc[2, "config_hash"] == frame.loc[1, "config_hash"]
    nothing = ("config", "params", "macs", "latency_median_ms", "proxy_train_loss")  # nothing built or measured
    assert all(pd.isna(frame.loc[2, column]) for column in nothing)
    assert frame.loc[3, "state"] == "COMPLETE" and frame.loc[3, "config_hash"] == frame.loc[0, "config_hash"]
    assert len(trained) == 2  # trial 3 and a new draw, not trial 2
    complete = frame[frame["state"] == "COMPLETE"]
    assert complete["config_hash"].nunique() == len(complete) == 3


def test_a_space_with_fewer_architectures_than_trials_ends_with_a_clear_warning(tmp_path, one_thread):  # noqa: F811
    space = write_space(tmp_path, FIXED_SPACE, "fixed.toml")  # one architecture: trial 0, then only duplicates
    result = CliRunner().invoke(app, ["study", "--space", str(space), "--study-name", "t", "--out",
                                      str(tmp_path / "runs"), *TINY_ARGS, "--trials", "2", "--no-report"])
    assert result.exit_code == 0, result.output
    assert ("warning: 1 of 2 trials complete: the last 50 draws were all architectures already complete or "
            "running: the space seems to hold only 1 distinct feasible architectures, fewer than --trials 2"
            in " ".join(result.output.split()))
    frame = trials_frame(open_study(str(tmp_path / "runs" / "t")))
    duplicates = frame["pruned_reason"].fillna("").str.startswith("duplicate: same architecture as trial #0")
    assert duplicates.sum() == len(frame) - 1 == 50
