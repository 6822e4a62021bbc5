"""The inverse of sampling: the Optuna parameters under which a space builds a given config.

``study.enqueue_trial(params)`` needs the parameters a space's :meth:`~explore.space.SearchSpace.sample`
would draw for an architecture (``explore importance --enqueue``). The space itself drives the
draw: a stand-in trial answers every suggestion with the config's value under the same parameter
name (:func:`explore.space.knobs.config_params`), snapped to the knob's distribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from explore.arch.config import ArchConfig
from explore.errors import ConfigError, ExploreError
from explore.space.knobs import base_param_name, config_params

__all__ = ["ConfigTrial", "space_params"]


class ConfigTrial:
    """An Optuna-trial stand-in that answers ``space.sample``'s suggestions with a config's values,
    snapped to the distribution asked for (nearest choice; range clamped and put on its step).

    Attributes:
        params: the answers given, by parameter name (for ``enqueue_trial``).
        notes: one line per answer that differs from the config's value.
    """

    def __init__(self, config: ArchConfig) -> None:
        self.config = config
        self.values = config_params(config)
        self.params: dict[str, Any] = {}
        self.notes: list[str] = []

    def _wanted(self, name: str) -> Any:
        name = base_param_name(name)  # stage0.heads[2,4]: heads drawn among the width's divisors
        if name not in self.values:
            raise ExploreError("--enqueue", name, f"the study's space has more stages than the model "
                                                  f"({len(self.config.stages)})")
        return self.values[name]

    def _record(self, name: str, wanted: Any, value: Any) -> Any:
        if value != wanted:
            self.notes.append(f"{name}: {wanted!r} -> {value!r} (nearest the space allows)")
        self.params[name] = value
        return value

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        """The config's value if the space offers it, else the nearest numeric choice.

        Raises:
            ExploreError: field ``--enqueue``: a text value the space does not offer.
        """
        wanted = self._wanted(name)
        if wanted in choices:
            return self._record(name, wanted, wanted)
        numeric = [c for c in choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        if isinstance(wanted, (int, float)) and numeric:
            return self._record(name, wanted, min(numeric, key=lambda c: (abs(c - wanted), c)))
        raise ExploreError("--enqueue", f"{name}={wanted}", f"the study's space allows only {list(choices)}")

    def _snap(self, name: str, low: float, high: float, step: float | None, cast: type) -> Any:
        wanted = self._wanted(name)
        value = min(max(float(wanted), low), high)
        if step:
            value = min(low + round((value - low) / step) * step, high)
        value = cast(round(value)) if cast is int else round(value, 10)
        return self._record(name, wanted, value)

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        """The config's value clamped to [low, high] and put on the step."""
        return self._snap(name, low, high, None if log else step, int)

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None, log: bool = False) -> float:
        """The config's value clamped to [low, high] and put on the step."""
        return self._snap(name, low, high, step, float)


def space_params(config: ArchConfig, space: Any, *, in_chans: int, num_classes: int) -> tuple[dict[str, Any], ArchConfig, list[str]]:
    """The Optuna parameters under which ``space.sample`` builds ``config`` (or the nearest point).

    The space drives the draw, so exactly its parameters are produced (``stage1.qk_dim``,
    ``stage0.kernel2``, ...); each answer is the config's value snapped to the knob (nearest
    choice; clamped to the range and rounded to its step). Fixed knobs draw nothing.

    Args:
        config: the architecture to enqueue.
        space: a :class:`~explore.space.SearchSpace`.
        in_chans: as the study samples with (from its dataset).
        num_classes: likewise.

    Returns:
        (params for ``study.enqueue_trial``, the config the study will build from them, notes on
        every snapped value).

    Raises:
        ExploreError: field ``--enqueue``: a text knob (layout, mixer, norm, ...) has no choice
            equal to the config's, the layout or a stage's mixer is fixed otherwise, the stage counts
            differ, or the snapped point is infeasible.
    """
    trial = ConfigTrial(config)
    try:
        built = space.sample(trial, in_chans=in_chans, num_classes=num_classes)
    except ConfigError as exc:
        raise ExploreError("--enqueue", exc.field, f"the space's nearest point is infeasible: {exc.expected}") from None
    if len(built.stages) != len(config.stages):
        raise ExploreError("--enqueue", len(built.stages),
                           f"the study's space has {len(built.stages)} stages; the model has {len(config.stages)}")
    if built.layout != config.layout:
        raise ExploreError("--enqueue", config.layout, f"the study's space builds the {built.layout} layout only")
    for i, (a, b) in enumerate(zip(config.stages, built.stages)):
        if a.token_mixer != b.token_mixer:
            raise ExploreError("--enqueue", f"stage{i}.token_mixer={a.token_mixer}",
                               f"the study's space fixes stage {i}'s mixer to {b.token_mixer}")
    for name in ("norm", "activation", "img_size"):
        if getattr(built, name) != getattr(config, name) and not any(n.startswith(f"{name}:") for n in trial.notes):
            trial.notes.append(f"{name}: {getattr(config, name)!r} -> {getattr(built, name)!r} (fixed in the space)")
    return trial.params, built, trial.notes
