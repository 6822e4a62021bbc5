"""Search spaces: declarative TOML files mapped to ``sample(trial) -> ArchConfig``.

A space file (see ``search_spaces/cga.toml``, documented in place) has three tables:

* ``[space]``: ``name``, ``description``, ``stages`` (the number of stages, fixed);
* ``[model]``: model-level knobs (``img_size``, ``norm``, ``activation``, ``layout``,
  ``stem_width``, ``stem_depth``, ``head_widths``);
* ``[stage]``: per-stage knobs (``width``, ``depth``, ``heads``, ``qk_dim``, ``v_ratio``,
  ``ffn_ratio``, ``window_size``, ``sandwich_n``, ``token_mixer``, ``expand_ratio``, ``scales``)
  and ``kernel``, the DW-conv kernel on Q sampled for every head of a CGA stage.

Sampling is conditional (define-by-run): the layout and each stage's token mixer are drawn first,
and a knob is drawn only where it matters (``kernel`` for cga; ``window_size`` and ``v_ratio`` for
cga/mhsa; ``scales`` for msla; ``ffn_ratio``/``sandwich_n`` for the sandwich layout;
``expand_ratio``, ``stem_width``/``stem_depth`` for the mbconv layout). Without a ``heads`` knob a
stage has ``width // qk_dim`` heads (the MIT rule). Feasibility is part of the space: a CGA
stage draws its heads only among the knob's values that divide the sampled width (named
``stage<i>.heads[2,4]`` when that is a strict subset, see :mod:`explore.space.knobs`), so the
built-in spaces have no infeasible draws. List-valued knobs (``scales``,
``head_widths``) take lists: ``value = [5]``, ``choices = [[5], [3, 5], []]``.

Each knob is a table holding exactly one of ``value = X`` (fixed), ``choices = [...]``
(categorical) or ``low``/``high`` with optional ``step`` and ``log`` (numeric range). A per-stage
knob is either one table for all stages or a list with one table per stage.

Files are parsed as data (``tomllib``), validated on load, and errors name the file, the knob and
the value. Sampled points that still violate a constraint (a fixed ``heads`` that does not divide
the width, no heads value dividing it, too small a V ratio) are never built: :meth:`SearchSpace.sample` raises :class:`~explore.errors.ConfigError`, which the
study records as a pruned trial with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from explore.arch.config import ArchConfig, StageConfig, stage_field_used
from explore.errors import SpaceError
from explore.resources import builtin_dirs, read_toml, resolve_builtin
from explore.space.knobs import MODEL_KNOBS, MODEL_RELEVANCE, STAGE_KNOBS, Knob, param_name, parse_knob

__all__ = ["SearchSpace", "load_space", "resolve_space_path", "builtin_space_dirs"]

@dataclass(frozen=True)
class SearchSpace:
    """A parsed search space.

    Attributes:
        name, description: from ``[space]``.
        path: the file it was read from.
        num_stages: number of stages of every sampled architecture.
        model: model-level knobs by name.
        stages: per stage, the stage-level knobs by name (``kernel`` is drawn per head).
    """

    name: str
    description: str
    path: Path
    num_stages: int
    model: Mapping[str, Knob]
    stages: Sequence[Mapping[str, Knob]]

    def sample(self, trial: Any, *, in_chans: int, num_classes: int) -> ArchConfig:
        """Draw one architecture with an Optuna ``trial`` (parameters ``img_size``, ``stage0.width``,
        ``stage0.kernel1`` ...).

        Args:
            trial: ``optuna.Trial`` (anything with ``suggest_int/float/categorical``).
            in_chans: from the dataset.
            num_classes: from the dataset.

        Returns:
            A validated :class:`ArchConfig`.

        Raises:
            ConfigError: the drawn point is infeasible (the message names the field and value);
                the study prunes the trial with that reason.
        """
        model: dict[str, Any] = {}
        if "layout" in self.model:
            model["layout"] = self.model["layout"].suggest(trial, param_name("layout"))
        layout = model.get("layout", "sandwich")
        for name, knob in self.model.items():
            if name != "layout" and layout in MODEL_RELEVANCE.get(name, (layout,)):
                model[name] = knob.suggest(trial, param_name(name))
        stages = []
        for i, knobs in enumerate(self.stages):
            mixer = knobs["token_mixer"].suggest(trial, param_name("token_mixer", i)) if "token_mixer" in knobs else "cga"
            values: dict[str, Any] = {"token_mixer": mixer}
            for name, knob in knobs.items():
                if name in ("token_mixer", "kernel") or not stage_field_used(name, layout, mixer):
                    continue
                if name == "heads" and mixer == "cga":
                    if "width" not in values:
                        values["width"] = knobs["width"].suggest(trial, param_name("width", i))
                    values[name] = _draw_cga_heads(knob, values["width"], trial, param_name(name, i))
                elif name not in values:
                    values[name] = knob.suggest(trial, param_name(name, i))
            if mixer == "none":
                values["heads"] = 1
            elif "heads" not in values:  # the MIT rule: heads of width // head dim
                values["heads"] = max(1, values["width"] // values.get("qk_dim", _DEFAULTS_STAGE["qk_dim"]))
            if stage_field_used("kernels", layout, mixer):
                kernel = knobs.get("kernel", Knob(int, value=_DEFAULTS_STAGE["kernels"][0]))
                values["kernels"] = tuple(kernel.suggest(trial, param_name("kernel", i, j)) for j in range(values["heads"]))
            stages.append(values)
        return ArchConfig.from_dict({**model, "stages": stages, "in_chans": in_chans, "num_classes": num_classes})

    def describe(self) -> list[tuple[str, str]]:
        """(parameter, range) rows of every knob."""
        rows = [(param_name(name), knob.describe()) for name, knob in self.model.items()]
        for i, knobs in enumerate(self.stages):
            rows += [(param_name(name, i), knob.describe()) for name, knob in knobs.items()]
        return rows


def _draw_cga_heads(knob: Knob, width: int, trial: Any, name: str) -> int:
    """CGA splits the width between heads: draw among the knob's values that divide ``width``
    (all of them, or a range too long to list: the knob as it is; none: the smallest value, which
    the config then rejects with the reason)."""
    values = knob.values()
    if values is None or knob.value is not None:
        return knob.suggest(trial, name)
    feasible = tuple(h for h in values if width % h == 0)
    return knob.suggest_among(trial, name, feasible) if feasible else min(values)


_DEFAULTS_STAGE = {f.name: f.default for f in StageConfig.__dataclass_fields__.values()}  # type: ignore[attr-defined]


def _parse(data: Mapping[str, Any], path: Path) -> SearchSpace:
    where = path.name
    extra = sorted(set(data) - {"space", "model", "stage"})
    if extra:
        raise SpaceError(f"{where}: [{extra[0]}]", data[extra[0]], "unknown table; expected [space], [model], [stage]")
    head = data.get("space")
    if not isinstance(head, Mapping):
        raise SpaceError(f"{where}: [space]", head, "missing table with name and stages")
    name = head.get("name", path.stem)
    num_stages = head.get("stages")
    if isinstance(num_stages, bool) or not isinstance(num_stages, int) or not 1 <= num_stages <= 8:
        raise SpaceError(f"{where}: space.stages", num_stages, "expected an integer from 1 to 8")
    description = head.get("description", "")

    model_specs = data.get("model", {})
    if not isinstance(model_specs, Mapping):
        raise SpaceError(f"{where}: [model]", model_specs, "expected a table of knobs")
    model = {}
    for knob_name, spec in model_specs.items():
        if knob_name not in MODEL_KNOBS:
            raise SpaceError(f"{where}: model.{knob_name}", spec, f"unknown knob; expected one of {', '.join(MODEL_KNOBS)}")
        model[knob_name] = parse_knob(spec, f"{where}: model.{knob_name}", *MODEL_KNOBS[knob_name])

    stage_specs = data.get("stage")
    if not isinstance(stage_specs, Mapping):
        raise SpaceError(f"{where}: [stage]", stage_specs, "missing table of per-stage knobs")
    for required in ("width", "depth"):
        if required not in stage_specs:
            raise SpaceError(f"{where}: stage.{required}", None, "missing: width and depth are required")
    stages: list[dict[str, Knob]] = [{} for _ in range(num_stages)]
    for knob_name, spec in stage_specs.items():
        if knob_name not in STAGE_KNOBS:
            raise SpaceError(f"{where}: stage.{knob_name}", spec, f"unknown knob; expected one of {', '.join(STAGE_KNOBS)}")
        if isinstance(spec, list):
            if len(spec) != num_stages:
                raise SpaceError(f"{where}: stage.{knob_name}", spec,
                                 f"a per-stage list needs one table per stage ({num_stages})")
            per_stage = spec
        else:
            per_stage = [spec] * num_stages
        for i, item in enumerate(per_stage):
            label = f"{where}: stage.{knob_name}" + (f"[{i}]" if isinstance(spec, list) else "")
            stages[i][knob_name] = parse_knob(item, label, *STAGE_KNOBS[knob_name])
    return SearchSpace(name=str(name), description=str(description), path=path, num_stages=num_stages,
                       model=model, stages=stages)


def builtin_space_dirs() -> list[Path]:
    """Folders searched for ``--space NAME``: the source checkout's ``search_spaces/``, then the
    copy installed under ``<prefix>/share/explore/search_spaces``."""
    return builtin_dirs("search_spaces")


def resolve_space_path(space: str) -> Path:
    """Turn ``--space`` into a file: an existing path as given, else a built-in name (``cga``).

    Raises:
        SpaceError: neither a file nor a known name (the message lists the known names).
    """
    return resolve_builtin(str(space), "search_spaces", "--space", SpaceError)


def load_space(space: str | Path) -> SearchSpace:
    """Load and validate a space by built-in name or file path.

    Raises:
        SpaceError: unknown name, unreadable file, malformed TOML, or an invalid knob (the error
            names the file, the knob and the value).
    """
    path = resolve_space_path(str(space))
    data = read_toml(path, SpaceError)
    return _parse(data, path)
