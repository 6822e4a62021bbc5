"""Random points of a space: ``count`` distinct feasible architectures, for latency tables, proxy
validity and supernet checks (a study draws its own through its sampler, :mod:`explore.search`)."""

from __future__ import annotations

import optuna

from explore.arch import ArchConfig
from explore.errors import ConfigError, ExploreError
from explore.space.search_space import load_space

__all__ = ["sample_architectures"]


def sample_architectures(space_name: str, count: int, *, in_chans: int, num_classes: int, seed: int = 0,
                         max_attempts: int = 1000) -> list[ArchConfig]:
    """``count`` distinct feasible configs drawn at random from a space (infeasible draws skipped).

    Raises:
        ExploreError: fewer than ``count`` distinct feasible points in ``max_attempts`` draws.
    """
    space = load_space(space_name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs, seen = [], set()
    for _ in range(max_attempts):
        trial = study.ask()
        try:
            config = space.sample(trial, in_chans=in_chans, num_classes=num_classes)
        except ConfigError:
            continue
        if config.config_hash() not in seen:
            seen.add(config.config_hash())
            configs.append(config)
        if len(configs) == count:
            return configs
    raise ExploreError("--archs", count, f"found only {len(configs)} distinct feasible architectures in the space")
