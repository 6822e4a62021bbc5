"""What the samplers learn from a latency budget (issue 28, item 7).

A draw over ``--max-latency-ms`` is PRUNED before training with its excess stored as an Optuna
constraint (``explore.search.objective.check_budget``). These tests run the study's own samplers
(:func:`explore.search.sampler.make_sampler`) on a toy space with the same outcome per draw: over
the budget -> constraint > 0 and PRUNED, else two objectives.
"""

from __future__ import annotations

import optuna

from explore.search.sampler import make_sampler
from explore.search.settings import StudySettings

BUDGET = 0.3  # x in [0, 1]; x > BUDGET is over the budget (70 % of the space)
TRIALS = 40
STARTUP = 8  # TPE's start-up trials (make_sampler)


def _over_budget_share(sampler: str, *, constrain: bool = True, seed: int = 0) -> float:
    """Share of the draws after TPE's start-up trials that fall over the budget."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=make_sampler(StudySettings(sampler=sampler, seed=seed)))

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0.0, 1.0)
        if constrain:
            trial.set_constraint("latency_excess_ms", x - BUDGET)
        if x > BUDGET:
            raise optuna.TrialPruned()
        return x, x  # faster is less accurate: every feasible draw is on the front

    study.optimize(objective, n_trials=TRIALS)
    later = [t.params["x"] for t in study.trials[STARTUP:]]
    return sum(x > BUDGET for x in later) / len(later)


def test_tpe_steers_away_from_draws_over_the_budget():
    tpe, random = _over_budget_share("tpe"), _over_budget_share("random")
    assert random > 0.5  # about the 70 % of the space over the budget
    assert tpe < 0.5 and tpe < random - 0.2


def test_what_steers_tpe_is_the_pruning_not_the_constraint():
    # the same seeds without the constraint: the same draws (TPE already counts PRUNED trials as bad)
    assert _over_budget_share("tpe", constrain=False) == _over_budget_share("tpe")


def test_nsga2_learns_nothing_from_pruned_draws():
    # NSGA-II's populations hold COMPLETE trials only; with or without the constraint, its draws
    # over the budget stay at random sampling's share
    share = _over_budget_share("nsga2")
    assert share == _over_budget_share("nsga2", constrain=False)
    assert share > 0.5
