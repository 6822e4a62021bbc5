"""The study's sampler: TPE, NSGA-II or random, seeded per trial from (study seed, trial number)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from explore.search.settings import StudySettings

__all__ = ["TrialSeededSampler", "make_sampler"]


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """A sampler whose random draws for trial number k depend only on (``seed``, k).

    Optuna samplers are seeded once, when they are built: every process that builds one with the
    same seed replays the same random sequence from its start, so a resumed run, or a second process
    on the same storage, draws again the points the first one drew. This wrapper builds a fresh
    inner sampler for each trial, seeded with :meth:`trial_seed` of the study seed and the trial's
    number. Trial numbers are unique in a study (Optuna assigns them in the storage under a lock),
    so every trial gets its own random stream, whichever process runs it and whenever: a resumed
    run goes on where the first one stopped, and processes that share a storage need no distinct
    seeds. Trial k draws the same parameters for the same seed and the same trials in the study
    when it samples (so one process, or one resumed in steps, draws the same parameters trial by
    trial for the same seed and objective values).

    Nothing is lost by rebuilding the inner sampler: Optuna's TPE (multivariate, constant liar),
    NSGA-II and random samplers read the study's trials (and NSGA-II its generations, kept in the
    storage) on every draw; what their instances hold besides the random state are caches.

    Args:
        factory: builds the inner sampler from an integer seed (0 <= seed < 2**32).
        seed: the study seed (any integer).
    """

    def __init__(self, factory: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._factory = factory
        self._seed = seed
        self._inner: dict[int, optuna.samplers.BaseSampler] = {}  # trial number -> its sampler

    @staticmethod
    def trial_seed(seed: int, number: int) -> int:
        """The inner sampler's seed for trial ``number`` of a study seeded with ``seed``.

        Returns:
            An integer in [0, 2**32), mixed from both (numpy's ``SeedSequence``), so that nearby
            (seed, number) pairs give unrelated streams.
        """
        sequence = np.random.SeedSequence([seed % 2**64, number])
        return int(sequence.generate_state(1, dtype=np.uint32)[0])

    def _for(self, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        inner = self._inner.get(trial.number)
        if inner is None:
            inner = self._inner[trial.number] = self._factory(self.trial_seed(self._seed, trial.number))
        return inner

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Build the trial's inner sampler (seeded from the study seed and ``trial.number``)."""
        self._inner.pop(trial.number, None)
        self._for(trial).before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, optuna.distributions.BaseDistribution]:
        """The trial's inner sampler's relative search space."""
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, optuna.distributions.BaseDistribution]) -> dict[str, Any]:
        """The trial's inner sampler's relative sample."""
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: optuna.distributions.BaseDistribution) -> Any:
        """The trial's inner sampler's independent sample."""
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        """The inner sampler's post-processing; then the trial's inner sampler is dropped."""
        self._for(trial).after_trial(study, trial, state, values)
        self._inner.pop(trial.number, None)

    def reseed_rng(self) -> None:
        """Nothing to do: every trial already has its own seed (Optuna calls this for ``n_jobs > 1``)."""


def make_sampler(settings: StudySettings) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded per trial (see :class:`TrialSeededSampler`)."""

    def build(seed: int) -> optuna.samplers.BaseSampler:
        if settings.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        if settings.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=8, constant_liar=True)

    return TrialSeededSampler(build, settings.seed)
