"""One resolver for the architecture a command is given: a preset name, a config file, or a trial.

``explore describe NAME_OR_FILE`` and ``explore importance --model SPEC`` name an architecture the
same way; a recipe's ``[base].preset`` is a preset lookup (:func:`explore.arch.get_preset`).
``RUN_DIR:TRIAL`` (a trial of a stored study) is resolved by a loader the caller passes in, so
that this stage does not read studies itself (:func:`explore.search.trial_config` is that loader).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from explore.arch.config import ArchConfig
from explore.arch.presets import PRESETS
from explore.errors import ConfigError, ExploreError

__all__ = ["ModelSpec", "resolve_arch"]


class ModelSpec(NamedTuple):
    """A resolved architecture.

    Attributes:
        config: the architecture (a preset at 224 x 224, 3 channels, 1000 classes; a file or trial
            as stored).
        name: a short name for folders and titles (the preset name, the file's stem, or
            ``<run folder>-trial<k>``).
        is_preset: whether it is a preset (commands give presets their own image size).
    """

    config: ArchConfig
    name: str
    is_preset: bool


def resolve_arch(spec: str, field: str = "--model", *,
                 load_trial: Callable[[str, int], ArchConfig] | None = None) -> ModelSpec:
    """Resolve a preset name, a config file (``.json``/``.toml``) or, with ``load_trial``,
    ``RUN_DIR:TRIAL``.

    Args:
        spec: what the user gave.
        field: the option named in errors (``--model``, ``NAME_OR_FILE``).
        load_trial: ``(run_dir, number) -> ArchConfig`` for ``RUN_DIR:TRIAL``; None: not accepted.

    Returns:
        :class:`ModelSpec`.

    Raises:
        ConfigError: ``field``: none of the accepted forms, or an invalid config file.
        ExploreError: ``field``: a bad trial number or a trial ``load_trial`` cannot give (its
            reason kept).
    """
    if spec in PRESETS:
        return ModelSpec(PRESETS[spec], spec, True)
    path = Path(spec)
    if path.is_file():
        return ModelSpec(ArchConfig.from_file(path, field), path.stem, False)
    if load_trial is None:
        raise ConfigError(field, spec, f"neither a preset ({', '.join(PRESETS)}) nor an existing config file")
    run_dir, sep, number = spec.rpartition(":")
    if not (sep and run_dir):
        raise ConfigError(field, spec, "expected a preset name, an existing config file (.json/.toml) "
                                       "or STUDY:TRIAL (a study run folder and a trial number)")
    if not number.isdigit():
        raise ExploreError(field, spec, "expected STUDY:TRIAL with a trial number (e.g. runs/cga:3)")
    try:
        config = load_trial(run_dir, int(number))
    except ExploreError as exc:
        raise ExploreError(field, spec, exc.expected) from None
    return ModelSpec(config, f"{Path(run_dir).name}-trial{number}", False)
