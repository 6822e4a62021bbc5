"""A resumed or added process continues the search: per-trial sampler seeds (issue 14, item 2)."""

from __future__ import annotations

import optuna
import pytest

import explore.study as study_module
from explore.study import SAMPLERS, TrialSeededSampler, open_study, run_study, trials_frame
from tests.study_helpers import one_thread, tiny_settings  # noqa: F401 - fixture

def _draws(tmp_path, sampler: str, chunks: list[int], processes: int) -> list[dict]:
    """Run ``sum(chunks)`` trials on one storage, ``chunks[i]`` of them by process ``i % processes``
    (each process: its own sampler, built afresh with the same seed, as in a new process)."""
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(storage=storage, study_name="s", directions=["maximize", "minimize"])
    settings = tiny_settings(tmp_path, sampler=sampler, seed=3)
    studies = [optuna.load_study(study_name="s", storage=storage, sampler=study_module._make_sampler(settings))
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
        assert summary.complete == trials
    frame = trials_frame(open_study(str(tmp_path / "runs" / "t")))
    complete = frame[frame["state"] == "COMPLETE"]
    assert len(complete) == 6
    assert complete["config_hash"].nunique() == 6
