"""Knobs of a search space: one value, choices or a numeric range; their Optuna parameter names
and labels, in one place for sampling (:mod:`explore.space.search_space`) and for the inverse
(:mod:`explore.space.inverse`).

Parameter names: a model knob by its name (``img_size``, ``layout``), a stage knob as
``stage<i>.<knob>`` (``stage1.qk_dim``), CGA's Q kernel of head j as ``stage<i>.kernel<j>``.
List values are drawn as labels (``(3, 5)`` -> ``"3,5"``, ``()`` -> ``"none"``). A knob drawn
among a feasible subset of its values (CGA's heads among the divisors of the sampled width) is
named with that subset, ``stage0.heads[2,4]``: Optuna needs one fixed set of choices per name, and
widths with the same divisors share the parameter (:func:`subset_param_name`, :func:`base_param_name`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from explore.arch.config import ACTIVATIONS, LAYOUTS, NORMS, TOKEN_MIXERS, ArchConfig, StageConfig
from explore.errors import SpaceError

__all__ = ["Knob", "MODEL_KNOBS", "STAGE_KNOBS", "MODEL_RELEVANCE", "knob_label", "param_name", "config_params",
           "parse_knob", "subset_param_name", "base_param_name", "MAX_ENUMERATED"]

MAX_ENUMERATED = 4096
"""The most values :meth:`Knob.values` lists for a numeric range."""

# knob name -> (kind, allowed categorical values or None, minimum for numbers)
MODEL_KNOBS: dict[str, tuple[type, tuple[Any, ...] | None, float]] = {
    "img_size": (int, None, 1),
    "norm": (str, NORMS, 0),
    "activation": (str, ACTIVATIONS, 0),
    "layout": (str, LAYOUTS, 0),
    "stem_width": (int, None, 1),
    "stem_depth": (int, None, 0),
    "head_widths": (tuple, None, 1),
}
STAGE_KNOBS: dict[str, tuple[type, tuple[Any, ...] | None, float]] = {
    "width": (int, None, 1),
    "depth": (int, None, 0),
    "heads": (int, None, 1),
    "qk_dim": (int, None, 1),
    "v_ratio": (float, None, 1e-9),
    "ffn_ratio": (float, None, 1e-9),
    "window_size": (int, None, 1),
    "sandwich_n": (int, None, 1),
    "token_mixer": (str, TOKEN_MIXERS, 0),
    "kernel": (int, None, 1),
    "expand_ratio": (float, None, 1e-9),
    "scales": (tuple, None, 1),
}

MODEL_RELEVANCE: dict[str, tuple[str, ...]] = {"stem_width": ("mbconv",), "stem_depth": ("mbconv",)}


def knob_label(value: tuple[int, ...]) -> str:
    """Optuna categorical label of a list value: (3, 5) -> "3,5", () -> "none"."""
    return ",".join(map(str, value)) or "none"


def param_name(knob: str, stage: int | None = None, index: int | None = None) -> str:
    """The Optuna parameter name of a knob: ``img_size``; ``stage1.qk_dim`` (``stage=1``);
    ``stage0.kernel2`` (``knob="kernel", stage=0, index=2``: the Q kernel of head 2)."""
    name = knob if index is None else f"{knob}{index}"
    return name if stage is None else f"stage{stage}.{name}"


def subset_param_name(name: str, values: tuple[Any, ...]) -> str:
    """The parameter name of a knob drawn among a subset of its values:
    ``subset_param_name("stage0.heads", (2, 4))`` -> ``"stage0.heads[2,4]"``."""
    return f"{name}[{','.join(map(str, values))}]"


def base_param_name(name: str) -> str:
    """The knob's parameter name without a subset suffix: ``stage0.heads[2,4]`` -> ``stage0.heads``."""
    return name.split("[", 1)[0]


def config_params(config: ArchConfig) -> dict[str, Any]:
    """Every value of ``config`` under the parameter name a space would draw it with (list values
    as their labels): what :mod:`explore.space.inverse` answers a space's suggestions from."""
    values: dict[str, Any] = {f.name: getattr(config, f.name) for f in dataclasses.fields(ArchConfig)
                              if f.name not in ("stages", "name")}
    for i, stage in enumerate(config.stages):
        values.update({param_name(f.name, i): getattr(stage, f.name) for f in dataclasses.fields(StageConfig)})
        values.update({param_name("kernel", i, j): k for j, k in enumerate(stage.kernels)})
    return {k: knob_label(v) if isinstance(v, tuple) else v for k, v in values.items()}


@dataclass(frozen=True)
class Knob:
    """One searchable (or fixed) value: ``value``, ``choices`` or ``low``..``high`` [``step``, ``log``]."""

    kind: type
    value: Any = None
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    def suggest(self, trial: Any, name: str) -> Any:
        """Draw the value for Optuna parameter ``name`` from ``trial`` (a fixed knob draws nothing)."""
        if self.value is not None:
            return self.value
        if self.choices is not None:
            if self.kind is tuple:  # Optuna categoricals hold scalars: draw a label, map it back
                labels = {knob_label(c): c for c in self.choices}
                return labels[trial.suggest_categorical(name, list(labels))]
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind is int:
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), step=self.step, log=self.log)

    def values(self) -> tuple[Any, ...] | None:
        """Every value the knob can take, ascending for numbers (a fixed value, the choices, or an
        integer / stepped range); None for a continuous float range or a range of more than
        :data:`MAX_ENUMERATED` values."""
        if self.value is not None:
            return (self.value,)
        if self.choices is not None:
            return self.choices
        if self.kind is int and not self.log:
            step = int(self.step or 1)
            count = (int(self.high) - int(self.low)) // step + 1
            return tuple(range(int(self.low), int(self.high) + 1, step)) if count <= MAX_ENUMERATED else None
        if self.step and not self.log:
            count = int((self.high - self.low) / self.step + 1e-9) + 1
            if count <= MAX_ENUMERATED:
                return tuple(round(self.low + i * self.step, 10) for i in range(count))
        return None

    def suggest_among(self, trial: Any, name: str, allowed: tuple[Any, ...]) -> Any:
        """Draw among ``allowed``, a subset of :meth:`values`: the knob's own parameter when it is
        all of them, else a categorical named with the subset (:func:`subset_param_name`)."""
        values = self.values()
        if self.value is not None or (values is not None and tuple(allowed) == tuple(values)):
            return self.suggest(trial, name)
        if len(allowed) == 1:
            return allowed[0]
        return trial.suggest_categorical(subset_param_name(name, tuple(allowed)), list(allowed))

    def describe(self) -> str:
        """Short text of the range (for ``explore describe``-style listings)."""
        if self.value is not None:
            return f"= {self.value}"
        if self.choices is not None:
            return "in {" + ", ".join(map(str, self.choices)) + "}"
        text = f"{self.low}..{self.high}"
        if self.step:
            text += f" step {self.step}"
        return text + (" (log)" if self.log else "")


def parse_knob(spec: Any, where: str, kind: type, allowed: tuple[Any, ...] | None, minimum: float) -> Knob:
    """One knob of a space file: ``{value = v}``, ``{choices = [...]}`` or ``{low, high[, step, log]}``.

    Args:
        spec: the knob's TOML table.
        where: its place in the file, for errors (``stages[1].qk_dim``).
        kind: the knob's type (:data:`MODEL_KNOBS`, :data:`STAGE_KNOBS`).
        allowed: its allowed categorical values (or None).
        minimum: the smallest number it may take.

    Raises:
        SpaceError: naming ``where`` (or its bad key) and the value: not a table, an unknown key,
            not exactly one form, a value of the wrong type, outside ``allowed`` or below ``minimum``.
    """
    if not isinstance(spec, Mapping):
        raise SpaceError(where, spec, "expected a table with one of: value, choices, or low/high[/step/log]")
    keys = set(spec)
    extra = keys - {"value", "choices", "low", "high", "step", "log"}
    if extra:
        bad = sorted(extra)[0]
        raise SpaceError(f"{where}.{bad}", spec[bad], "unknown key; expected value, choices, low, high, step or log")
    forms = [("value" in keys), ("choices" in keys), bool(keys & {"low", "high", "step", "log"})]
    if sum(forms) != 1:
        raise SpaceError(where, dict(spec), "give exactly one of: value, choices, or low/high[/step/log]")

    def check_value(value: Any, field_name: str) -> Any:
        if kind is tuple:
            if not isinstance(value, list):
                raise SpaceError(field_name, value, "expected a list of integers, e.g. [5] or [3, 5]")
            for i, item in enumerate(value):
                if isinstance(item, bool) or not isinstance(item, int) or item < minimum:
                    raise SpaceError(f"{field_name}[{i}]", item, f"expected an integer >= {minimum:g}")
            return tuple(value)
        if kind is str:
            if not isinstance(value, str) or (allowed and value not in allowed):
                raise SpaceError(field_name, value, f"expected one of {', '.join(allowed or ())}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpaceError(field_name, value, f"expected a number ({kind.__name__})")
        if kind is int and not float(value).is_integer():
            raise SpaceError(field_name, value, "expected an integer")
        if not math.isfinite(value) or value < minimum:
            raise SpaceError(field_name, value, f"expected a finite value >= {minimum:g}")
        return kind(value)

    if "value" in keys:
        return Knob(kind, value=check_value(spec["value"], f"{where}.value"))
    if "choices" in keys:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}.choices", choices, "expected a non-empty list")
        return Knob(kind, choices=tuple(check_value(c, f"{where}.choices[{i}]") for i, c in enumerate(choices)))
    if kind in (str, tuple):
        raise SpaceError(where, dict(spec), "a text or list knob takes value or choices, not a range")
    if "low" not in keys or "high" not in keys:
        missing = "low" if "low" not in keys else "high"
        raise SpaceError(f"{where}.{missing}", None, "a range needs both low and high")
    low = check_value(spec["low"], f"{where}.low")
    high = check_value(spec["high"], f"{where}.high")
    if low > high:
        raise SpaceError(f"{where}.high", high, f"expected >= low ({low})")
    step = spec.get("step")
    if step is not None:
        step = check_value(step, f"{where}.step")
        if step <= 0:
            raise SpaceError(f"{where}.step", step, "expected > 0")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{where}.log", log, "expected true or false")
    if log and (step is not None or low <= 0):
        raise SpaceError(f"{where}.log", log, "a log range needs low > 0 and no step")
    return Knob(kind, low=low, high=high, step=step, log=log)
