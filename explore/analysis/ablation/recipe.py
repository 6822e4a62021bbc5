"""Ablation recipes: the papers' design-choice studies as data files under ``studies/``, loaded and
validated (the runner is :mod:`explore.analysis.ablation.runner`, ``explore ablate studies/RECIPE``).

A recipe (TOML, documented in place in ``studies/cga_table6.toml``) names:

* ``[recipe]``: ``name``, ``title``, ``description``;
* ``[paper]``: ``source`` and ``note`` of the paper figures copied into the recipe, and
  ``accuracy``, the paper's accuracy column that our proxy top-1 is compared with (``top1``,
  ``miou``);
* ``[base]``: the base architecture: ``preset = "efficientvit_m4"`` or ``config = {...}`` (all
  :class:`~explore.arch.ArchConfig` fields), plus optional ``model = {...}`` (model fields),
  ``stage = {...}`` (fields set in every stage) and ``stages = [{...}, ...]`` (one table per
  stage) overrides;
* ``[budget]``: the proxy training: ``dataset``, ``data_root``, ``max_train``, ``max_val``,
  ``epochs``, ``batch_size``, ``lr``, ``img_size`` (training resolution) and ``seeds`` (>= 2);
  ``train = false`` makes a latency-only recipe; ``task = "segmentation"`` trains (and counts and
  measures) every variant with the MIT segmentation head (``seg_head_width``, ``seg_head_depth``)
  on scenes of ``seg_size`` pixels (``dataset = "fashion_scenes"`` or ``"mask_folder"``), and
  the accuracy is mIoU;
* ``[measure]``: ``protocols`` (``cpu-latency``, ``onnx-cpu``, ``gpu-throughput``, ...; CUDA
  protocols run only with ``--device cuda``), ``img_sizes`` (measurement resolutions, pixels, or
  ``"HxW"`` strings for non-square inputs such as Cityscapes' ``"1024x2048"``; params and MACs are
  counted at the first, square one, the paper's 224 by default), optional ``batch_size``/``repeats``.
  Measured models have 3 input channels and 1000 classes, as in the papers' tables;
* ``[[variant]]``: ``name``, ``label``, ``baseline = true`` for exactly one, overrides as in
  ``[base]`` (``model``, ``stage``, ``stages``), ``x`` (a value to plot against) and ``paper``
  (the paper's figures for this row: the accuracy column, ``gpu_img_s``, ``onnx_img_s``);
* ``[[sweep]]``: variants generated from one field: ``field = "stage.qk_dim"`` (or
  ``"model.activation"``), ``values``, ``baseline`` (the value equal to the base);
* ``[match_macs]``: ``field`` (a float stage field such as ``expand_ratio``) scaled per variant so
  its MACs equal the baseline's within ``tolerance`` (the MIT ablation's "same MACs");
* ``[[finding]]``: a qualitative claim checked against our numbers: ``kind = "best_x_within"``
  (``range = [lo, hi]``: the best mean top-1 lies at an ``x`` in the range) or ``kind = "faster"``
  (``variant`` is faster than ``than`` under ``protocol`` at every measured resolution, by a ratio
  that grows with resolution).

Everything is validated on load (every variant's config is constructed, so an infeasible row is
rejected before anything is built or written); errors name the file, the entry and the value.

Running a recipe evaluates every variant (:func:`explore.evaluate.evaluate_candidate`: params and
MACs, latency with the recipe's protocols, proxy top-1 for every seed on one data subset) and
writes CSVs into the run folder; rows already there for the same recipe are reused (a stopped run
resumes). :func:`explore.analysis.ablation.summarise` turns the rows into the per-variant table
(mean ± std over seeds, Δ vs the baseline for us and for the paper, Kendall τ, verdicts) that
:mod:`explore.report` renders.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from explore.arch import PAPER_SPEED_COLUMNS, PRESETS, ArchConfig, StageConfig, get_preset
from explore.errors import ConfigError, ExploreError
from explore.evaluate import TrainBudget
from explore.measure import PROTOCOLS
from explore.resolution import resolution
from explore.resources import read_toml, resolve_builtin
from explore.train import check_dataset, check_segmentation_dataset

__all__ = [
    "RecipeError",
    "Variant",
    "Budget",
    "MeasureSpec",
    "Finding",
    "Recipe",
    "load_recipe",
    "with_overrides",
    "AUTO_MAX_SEEDS",
    "parse_auto_seeds",
    "resolve_recipe_path",
    "MEASURE_IMG",
]

_FINDING_KINDS = ("best_x_within", "faster")
MEASURE_IMG = 224
"""The papers' measurement resolution (pixels): the default of ``[measure] img_sizes``."""
_MEASURE_CLASSES = 1000
_SEG_MEASURE_CLASSES = 19
"""Classes of a segmentation variant as measured (Cityscapes, the MIT paper's benchmark)."""


class RecipeError(ExploreError):
    """A recipe file is missing, malformed or describes an infeasible variant."""


# --------------------------------------------------------------------------------------------------
# the recipe as typed data
@dataclass(frozen=True)
class Variant:
    """One row of an ablation: the base with some fields changed.

    Attributes:
        name: short identifier (CSV key).
        label: the row's text in tables.
        config: the architecture (its ``img_size``/``in_chans``/``num_classes`` are the base's;
            the runner sets them for training and for measurement).
        overrides: the changes as written in the recipe (for the report).
        baseline: the row every Δ is taken against.
        x: value plotted on the x axis (sweeps, findings), or None.
        paper: the paper's figures for this row (accuracy column, ``gpu_img_s``, ``onnx_img_s``).
    """

    name: str
    label: str
    config: ArchConfig
    overrides: dict[str, Any]
    baseline: bool = False
    x: float | None = None
    paper: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Budget(TrainBudget):
    """Proxy-training budget of a recipe: the shared budget fields (:class:`explore.evaluate.TrainBudget`;
    a recipe's default subset is 5000 training images) plus ``train`` (False: a latency-only
    recipe), ``img_size`` (the training resolution in pixels) and ``seeds`` (training seeds; the
    data subset is drawn once with ``data_seed``, so every variant sees the same images).
    ``max_seeds`` (from ``seeds = "auto:MAX"``): sequential seeds: every row starts with ``seeds``
    (0 and 1), and seeds 2, 3, ... are added only to rows whose paired interval is still open, up to
    ``max_seeds`` (:func:`explore.stats.open_rows`).
    """

    max_train: int | None = 5000
    train: bool = True
    img_size: int = 64
    seeds: tuple[int, ...] = (0, 1)
    data_seed: int = 0
    max_seeds: int | None = None


@dataclass(frozen=True)
class MeasureSpec:
    """What to measure: protocol names, resolutions (pixels), optional batch/repeats overrides."""

    protocols: tuple[str, ...] = ("cpu-latency", "onnx-cpu", "gpu-throughput")
    img_sizes: tuple[int, ...] = (MEASURE_IMG,)
    batch_size: int | None = None
    repeats: int | None = None


@dataclass(frozen=True)
class Finding:
    """A qualitative claim of the paper, checked against our numbers (see the module docstring)."""

    text: str
    kind: str
    range: tuple[float, float] | None = None
    variant: str | None = None
    than: str | None = None
    protocol: str | None = None


@dataclass(frozen=True)
class Recipe:
    """A validated ablation recipe (from :func:`load_recipe`)."""

    name: str
    title: str
    description: str
    path: Path
    paper_source: str
    paper_note: str
    paper_accuracy: str
    base: ArchConfig
    variants: tuple[Variant, ...]
    budget: Budget
    measure: MeasureSpec
    findings: tuple[Finding, ...] = ()
    match_field: str | None = None
    match_tolerance: float = 0.02

    @property
    def baseline(self) -> Variant:
        """The baseline row."""
        return next(v for v in self.variants if v.baseline)

    def fingerprint(self) -> str:
        """Hash of the whole recipe as run (variants' configs, budget, measurement), for ``run.json``."""
        body = {
            "variants": [(v.name, v.config.config_hash()) for v in self.variants],
            "budget": dataclasses.asdict(self.budget),
            "measure": dataclasses.asdict(self.measure),
            "match": [self.match_field, self.match_tolerance],
        }
        return _hash(body)

    def training_key(self) -> str:
        """Hash of what decides a training row besides its variant's config and seed (the budget
        without the seed list): rows of a run folder with this key are reused, so adding a seed or a
        variant trains only the new rows."""
        budget = dataclasses.asdict(self.budget)
        budget.pop("seeds")
        budget.pop("max_seeds")  # how many seeds run does not change a row
        if budget["task"] == "classification":  # fields added later: the keys of stored runs stay the same
            for key in ("task", "seg_size", "seg_head_width", "seg_head_depth"):
                budget.pop(key)
        return _hash({"budget": budget})

    def measurement_key(self) -> str:
        """Hash of what decides a measurement row besides its variant's config, protocol and
        resolution (batch and repeats overrides)."""
        return _hash({"batch_size": self.measure.batch_size, "repeats": self.measure.repeats})

    def train_config(self, variant: Variant, in_chans: int, num_classes: int) -> ArchConfig:
        """The variant as trained: the budget's resolution (unless the variant sets ``img_size``)
        and the dataset's channels and classes; for ``task = "segmentation"``, with the MIT head at
        ``seg_size`` (:meth:`explore.evaluate.TrainBudget.task_config`)."""
        if self.budget.task == "segmentation":
            return self.budget.task_config(variant.config.replace(in_chans=in_chans, num_classes=num_classes))
        img = variant.overrides.get("model", {}).get("img_size", self.budget.img_size)
        return variant.config.replace(img_size=img, in_chans=in_chans, num_classes=num_classes)

    def measure_config(self, variant: Variant, img_size: int | str) -> ArchConfig:
        """The variant as measured: ``img_size`` pixels, 3 channels, 1000 classes (the papers'); for
        ``task = "segmentation"``, with the MIT head and 19 classes (Cityscapes). A non-square
        resolution (``"1024x2048"``) builds the model for its longer side (windows and bias tables
        cover the whole map), and the protocol feeds it H x W inputs."""
        img_size = max(resolution(img_size))
        if self.budget.task == "segmentation":
            return self.budget.task_config(variant.config.replace(in_chans=3, num_classes=_SEG_MEASURE_CLASSES),
                                           img_size)
        return variant.config.replace(img_size=img_size, in_chans=3, num_classes=_MEASURE_CLASSES)


def _hash(body: Any) -> str:
    return hashlib.sha1(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolve_recipe_path(recipe: str) -> Path:
    """``RECIPE`` as a file: a path as given, else a built-in name (``cga_table6``).

    Raises:
        RecipeError: neither a file nor a known recipe name.
    """
    return resolve_builtin(str(recipe), "studies", "RECIPE", RecipeError)


def _table(data: Mapping[str, Any], key: str, where: str, required: bool = False) -> dict[str, Any]:
    value = data.get(key, None)
    if value is None:
        if required:
            raise RecipeError(f"{where}[{key}]", None, "missing table")
        return {}
    if not isinstance(value, Mapping):
        raise RecipeError(f"{where}[{key}]", value, "expected a table")
    return dict(value)


def _unknown(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    extra = sorted(set(table) - set(allowed))
    if extra:
        raise RecipeError(f"{where}.{extra[0]}", table[extra[0]], f"unknown key; expected one of {', '.join(allowed)}")


_STAGE_FIELDS = tuple(f.name for f in dataclasses.fields(StageConfig))
_MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ArchConfig) if f.name not in ("stages", "name"))


def _apply(config: ArchConfig, spec: Mapping[str, Any], where: str) -> ArchConfig:
    """Apply ``model`` / ``stage`` / ``stages`` overrides to a config (validated again)."""
    model = _table(spec, "model", where)
    stage = _table(spec, "stage", where)
    stages = spec.get("stages", [])
    _unknown(model, _MODEL_FIELDS, f"{where}.model")
    _unknown(stage, _STAGE_FIELDS, f"{where}.stage")
    if not isinstance(stages, list) or (stages and len(stages) != len(config.stages)):
        raise RecipeError(f"{where}.stages", stages,
                          f"expected a list of {len(config.stages)} tables, one per stage of the base")
    try:
        new_stages = []
        for i, old in enumerate(config.stages):
            per = stages[i] if stages else {}
            if not isinstance(per, Mapping):
                raise RecipeError(f"{where}.stages[{i}]", per, "expected a table of stage fields")
            _unknown(per, _STAGE_FIELDS, f"{where}.stages[{i}]")
            changes = {**stage, **per}
            for key in ("kernels", "scales"):
                if isinstance(changes.get(key), list):
                    changes[key] = tuple(changes[key])
            new_stages.append(dataclasses.replace(old, **changes))
        model = {k: tuple(v) if isinstance(v, list) else v for k, v in model.items()}
        return dataclasses.replace(config, stages=tuple(new_stages), **model)
    except ConfigError as exc:
        raise RecipeError(f"{where}: {exc.field}", exc.value, exc.expected) from None
    except TypeError as exc:
        raise RecipeError(where, dict(spec), f"bad override: {exc}") from None


def _number(value: Any, where: str, low: float | None = None, integer: bool = False) -> Any:
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if not ok or (isinstance(value, float) and not math.isfinite(value)) or (low is not None and value < low):
        kind = "an integer" if integer else "a number"
        raise RecipeError(where, value, f"expected {kind}" + (f" >= {low:g}" if low is not None else ""))
    return value


def _paper_values(raw: Any, where: str) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise RecipeError(where, raw, "expected a table of the paper's figures for this row")
    return {str(k): float(_number(v, f"{where}.{k}")) for k, v in raw.items()}


AUTO_MAX_SEEDS = 10
"""Seeds a row may use under ``seeds = "auto"`` without a MAX."""


def parse_auto_seeds(text: str, where: str) -> int:
    """The MAX of ``"auto"`` / ``"auto:MAX"`` (sequential seeds; MAX >= 2).

    Raises:
        RecipeError: naming ``where``: anything else, or MAX below 2.
    """
    head, _, tail = text.partition(":")
    if head != "auto" or (tail and not tail.isdigit()):
        raise RecipeError(where, text, 'expected a list of integer seeds or "auto[:MAX]"')
    top = int(tail) if tail else AUTO_MAX_SEEDS
    if top < 2:
        raise RecipeError(where, text, "expected MAX >= 2")
    return top


def _parse_budget(raw: dict[str, Any], where: str) -> Budget:
    allowed = [f.name for f in dataclasses.fields(Budget)]
    _unknown(raw, allowed, where)
    values = dict(raw)
    if "max_seeds" in values and values["max_seeds"] is not None:
        raise RecipeError(f"{where}.max_seeds", values["max_seeds"], 'not a recipe key; write seeds = "auto:MAX"')
    if "seeds" in values:
        seeds = values["seeds"]
        if isinstance(seeds, str):
            values["seeds"], values["max_seeds"] = (0, 1), parse_auto_seeds(seeds, f"{where}.seeds")
        elif not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise RecipeError(f"{where}.seeds", seeds, 'expected a list of integer seeds or "auto[:MAX]"')
        else:
            values["seeds"] = tuple(seeds)
    budget = Budget(**values)
    if not isinstance(budget.train, bool):
        raise RecipeError(f"{where}.train", budget.train, "expected true or false")
    if budget.task not in ("classification", "segmentation"):
        raise RecipeError(f"{where}.task", budget.task, "expected classification or segmentation")
    if budget.train:
        if len(set(budget.seeds)) < 2:
            raise RecipeError(f"{where}.seeds", list(budget.seeds), "expected at least 2 distinct seeds (mean ± std)")
        try:
            if budget.task == "segmentation":
                check_segmentation_dataset(budget.dataset, budget.data_root)
            else:
                check_dataset(budget.dataset, budget.data_root)
        except ExploreError as exc:
            raise RecipeError(f"{where}.{'dataset' if exc.field == '--dataset' else 'data_root'}", exc.value,
                              exc.expected) from None
        try:  # epochs, batch_size and lr are checked where they are used
            budget.proxy_recipe().validate()
        except ExploreError as exc:
            raise RecipeError(exc.field.replace("recipe", where, 1), exc.value, exc.expected) from None
        _number(budget.img_size, f"{where}.img_size", 1, integer=True)
        for key in ("max_train", "max_val"):
            if getattr(budget, key) is not None:
                _number(getattr(budget, key), f"{where}.{key}", 0, integer=True)
        # 0 = every image
        budget = dataclasses.replace(budget, max_train=budget.max_train or None, max_val=budget.max_val or None)
    return budget


def _parse_measure(raw: dict[str, Any], where: str) -> MeasureSpec:
    _unknown(raw, [f.name for f in dataclasses.fields(MeasureSpec)], where)
    values = dict(raw)
    protocols = values.get("protocols", list(MeasureSpec.protocols))
    if not isinstance(protocols, list) or not all(p in PROTOCOLS for p in protocols):
        raise RecipeError(f"{where}.protocols", protocols, f"expected a list of {', '.join(PROTOCOLS)}")
    values["protocols"] = tuple(protocols)
    sizes = values.get("img_sizes", [MEASURE_IMG])
    if not isinstance(sizes, list) or not sizes:
        raise RecipeError(f"{where}.img_sizes", sizes, "expected a non-empty list of resolutions (pixels)")
    for i, s in enumerate(sizes):
        if isinstance(s, str):
            try:
                resolution(s)
            except ExploreError as exc:
                raise RecipeError(f"{where}.img_sizes[{i}]", s, exc.expected) from None
            if i == 0 and len(set(resolution(s))) > 1:
                raise RecipeError(f"{where}.img_sizes[0]", s, "params and MACs are counted at the first "
                                                            "resolution: expected a square one (pixels)")
        else:
            _number(s, f"{where}.img_sizes[{i}]", 1, integer=True)
    values["img_sizes"] = tuple(sizes)
    for key in ("batch_size", "repeats"):
        if values.get(key) is not None:
            _number(values[key], f"{where}.{key}", 1 if key == "batch_size" else 2, integer=True)
    return MeasureSpec(**values)


def _parse_finding(raw: Any, where: str, names: set[str], protocols: Sequence[str]) -> Finding:
    if not isinstance(raw, Mapping):
        raise RecipeError(where, raw, "expected a table")
    _unknown(raw, [f.name for f in dataclasses.fields(Finding)], where)
    kind = raw.get("kind")
    if kind not in _FINDING_KINDS:
        raise RecipeError(f"{where}.kind", kind, f"expected one of {', '.join(_FINDING_KINDS)}")
    if not isinstance(raw.get("text"), str):
        raise RecipeError(f"{where}.text", raw.get("text"), "expected the paper's claim as text")
    if kind == "best_x_within":
        rng = raw.get("range")
        if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(v, (int, float)) for v in rng)
                and rng[0] <= rng[1]):
            raise RecipeError(f"{where}.range", rng, "expected [low, high] of x")
        return Finding(raw["text"], kind, range=(float(rng[0]), float(rng[1])))
    for key in ("variant", "than"):
        if raw.get(key) not in names:
            raise RecipeError(f"{where}.{key}", raw.get(key), f"expected a variant name ({', '.join(sorted(names))})")
    if raw.get("protocol") not in protocols:
        raise RecipeError(f"{where}.protocol", raw.get("protocol"), f"expected one of the recipe's protocols {list(protocols)}")
    return Finding(raw["text"], kind, variant=raw["variant"], than=raw["than"], protocol=raw["protocol"])


def _sweep_variants(raw: Any, where: str, base: ArchConfig) -> list[Variant]:
    if not isinstance(raw, Mapping):
        raise RecipeError(where, raw, "expected a table")
    _unknown(raw, ["field", "values", "baseline", "name", "label", "paper"], where)
    target = raw.get("field")
    if not isinstance(target, str) or "." not in target or target.split(".", 1)[0] not in ("model", "stage"):
        raise RecipeError(f"{where}.field", target, "expected 'model.FIELD' or 'stage.FIELD'")
    scope, key = target.split(".", 1)
    values = raw.get("values")
    if not isinstance(values, list) or len(values) < 2:
        raise RecipeError(f"{where}.values", values, "expected a list of at least 2 values")
    if raw.get("baseline") not in values:
        raise RecipeError(f"{where}.baseline", raw.get("baseline"), f"expected one of the values {values}")
    papers = raw.get("paper", {})
    if not isinstance(papers, Mapping):
        raise RecipeError(f"{where}.paper", papers, "expected a table: value (as text) -> figures")
    name_fmt = raw.get("name", f"{key}={{}}")
    label_fmt = raw.get("label", f"{key} = {{}}")
    out = []
    for i, value in enumerate(values):
        spec = {scope: {key: value}}
        config = _apply(base, spec, f"{where}.values[{i}]")
        x = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        out.append(Variant(name=name_fmt.format(value), label=label_fmt.format(value), config=config,
                           overrides=spec, baseline=value == raw["baseline"], x=x,
                           paper=_paper_values(papers.get(str(value)), f"{where}.paper.{value}")))
    return out


def load_recipe(recipe: str | Path) -> Recipe:
    """Load and validate a recipe by built-in name or path (see the module docstring).

    Raises:
        RecipeError: unknown name, unreadable or malformed file, unknown keys, bad values, not
            exactly one baseline, duplicate variant names, or an infeasible variant (the error
            names the file, the entry and the value).
    """
    path = resolve_recipe_path(str(recipe))
    data = read_toml(path, RecipeError)
    try:
        return _parse(data, path)
    except RecipeError as exc:
        raise RecipeError(f"{path.name}: {exc.field}", exc.value, exc.expected) from None
    except TypeError as exc:  # e.g. an unexpected type in a dataclass field
        raise RecipeError(str(path), "(file)", str(exc)) from None


def _parse_base(base_raw: Mapping[str, Any]) -> ArchConfig:
    """``[base]``: a preset or a config, with the ``model``/``stage``/``stages`` changes applied."""
    _unknown(base_raw, ["preset", "config", "model", "stage", "stages"], "[base]")
    if ("preset" in base_raw) == ("config" in base_raw):
        raise RecipeError("[base]", sorted(base_raw), "expected exactly one of preset = NAME or config = {...}")
    if "preset" in base_raw:
        try:
            base = get_preset(base_raw["preset"])
        except ConfigError:
            raise RecipeError("[base].preset", base_raw["preset"], f"expected one of {', '.join(PRESETS)}") from None
    else:
        try:
            base = ArchConfig.from_dict(base_raw["config"], source="[base].config")
        except ConfigError as exc:
            raise RecipeError(f"[base].config.{exc.field}", exc.value, exc.expected) from None
    return _apply(base, base_raw, "[base]")


def _parse_variants(data: Mapping[str, Any], base: ArchConfig) -> list[Variant]:
    """``[[variant]]`` and ``[[sweep]]``: at least two rows of unique names and one baseline (several
    sweeps may each mark the base's own value: they are one row then)."""
    variants: list[Variant] = []
    raw_variants = data.get("variant", [])
    if not isinstance(raw_variants, list):
        raise RecipeError("[[variant]]", raw_variants, "expected an array of tables [[variant]]")
    for i, raw in enumerate(raw_variants):
        variants.append(_parse_variant(raw, f"variant[{i}]", base))
    raw_sweeps = data.get("sweep", [])
    if not isinstance(raw_sweeps, list):
        raise RecipeError("[[sweep]]", raw_sweeps, "expected an array of tables [[sweep]]")
    for i, raw in enumerate(raw_sweeps):
        variants.extend(_sweep_variants(raw, f"sweep[{i}]", base))
    if len(variants) < 2:
        raise RecipeError("[[variant]]", len(variants), "expected at least 2 variants (a baseline and a change)")
    names = [v.name for v in variants]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RecipeError("variant.name", dupes[0], "variant names must be unique")
    baselines = [v for v in variants if v.baseline]
    if not baselines:
        raise RecipeError("baseline", None, "expected one variant with baseline = true")
    first = baselines[0]
    for other in baselines[1:]:
        if other.config != first.config:
            raise RecipeError(f"{other.name}.baseline", True, f"a second baseline differs from {first.name!r}")
    if len(baselines) > 1:
        variants = [v if v is first or not v.baseline else dataclasses.replace(v, baseline=False) for v in variants]
    return variants


def _parse_variant(raw: Any, where: str, base: ArchConfig) -> Variant:
    """One ``[[variant]]`` table."""
    if not isinstance(raw, Mapping):
        raise RecipeError(where, raw, "expected a table")
    _unknown(raw, ["name", "label", "baseline", "model", "stage", "stages", "x", "paper"], where)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise RecipeError(f"{where}.name", name, "expected a non-empty name")
    x = raw.get("x")
    if x is not None:
        _number(x, f"{where}.x")
    if not isinstance(raw.get("baseline", False), bool):
        raise RecipeError(f"{where}.baseline", raw.get("baseline"), "expected true or false")
    overrides = {k: raw[k] for k in ("model", "stage", "stages") if k in raw}
    return Variant(name=name, label=str(raw.get("label", name)), config=_apply(base, raw, where),
                   overrides=overrides, baseline=raw.get("baseline", False),
                   x=None if x is None else float(x), paper=_paper_values(raw.get("paper"), f"{where}.paper"))


def _parse_match(match: Mapping[str, Any]) -> tuple[str | None, float]:
    """``[match_macs]``: the float stage field scaled to match the baseline's MACs, and the tolerance."""
    _unknown(match, ["field", "tolerance"], "[match_macs]")
    match_field = match.get("field")
    if match and match_field not in ("expand_ratio", "ffn_ratio", "v_ratio"):
        raise RecipeError("[match_macs].field", match_field, "expected a float stage field: expand_ratio, ffn_ratio or v_ratio")
    return match_field, float(_number(match.get("tolerance", 0.02), "[match_macs].tolerance", 1e-6))


def _parse(data: Mapping[str, Any], path: Path) -> Recipe:
    _unknown(data, ["recipe", "paper", "base", "budget", "measure", "variant", "sweep", "match_macs", "finding"], "")
    head = _table(data, "recipe", "", required=True)
    _unknown(head, ["name", "title", "description"], "[recipe]")
    if not isinstance(head.get("name"), str) or not head["name"]:
        raise RecipeError("[recipe].name", head.get("name"), "expected a non-empty name")
    paper = _table(data, "paper", "")
    _unknown(paper, ["source", "note", "accuracy"], "[paper]")

    base = _parse_base(_table(data, "base", "", required=True))
    variants = _parse_variants(data, base)
    names = [v.name for v in variants]

    budget = _parse_budget(_table(data, "budget", ""), "[budget]")
    measure_spec = _parse_measure(_table(data, "measure", ""), "[measure]")
    accuracy = paper.get("accuracy", "top1")
    if not isinstance(accuracy, str):
        raise RecipeError("[paper].accuracy", accuracy, "expected the name of the paper's accuracy column")
    for v in variants:
        for key in v.paper:
            if key != accuracy and key not in PAPER_SPEED_COLUMNS:
                raise RecipeError(f"{v.name}.paper.{key}", v.paper[key],
                                  f"unknown column; expected {accuracy} or one of {', '.join(PAPER_SPEED_COLUMNS)}")

    match_field, tolerance = _parse_match(_table(data, "match_macs", ""))

    raw_findings = data.get("finding", [])
    if not isinstance(raw_findings, list):
        raise RecipeError("[[finding]]", raw_findings, "expected an array of tables [[finding]]")
    findings = tuple(_parse_finding(f, f"finding[{i}]", set(names), measure_spec.protocols)
                     for i, f in enumerate(raw_findings))

    recipe = Recipe(name=head["name"], title=str(head.get("title", head["name"])),
                    description=str(head.get("description", "")), path=path,
                    paper_source=str(paper.get("source", "")), paper_note=str(paper.get("note", "")),
                    paper_accuracy=accuracy, base=base, variants=tuple(variants), budget=budget,
                    measure=measure_spec, findings=findings, match_field=match_field, match_tolerance=tolerance)
    # feasibility at every resolution the run will build (nothing is built here)
    for v in recipe.variants:
        for img in ({recipe.budget.img_size} if budget.train else set()) | set(measure_spec.img_sizes):
            try:
                recipe.measure_config(v, img)
            except ConfigError as exc:
                raise RecipeError(f"{v.name}: {exc.field}", exc.value, exc.expected) from None
    return recipe


def with_overrides(recipe: Recipe, *, epochs: float | None = None, max_train: int | None = None,
                   max_val: int | None = None, img_size: int | None = None, seeds: Sequence[int] | str | None = None,
                   batch_size: int | None = None, variants: Sequence[str] | None = None,
                   protocols: Sequence[str] | None = None, measure_img_sizes: Sequence[int] | None = None,
                   repeats: int | None = None, dataset: str | None = None, data_root: str | None = None) -> Recipe:
    """The recipe with a (usually reduced) budget from the command line; values validated as in a file.

    Raises:
        RecipeError: a value is out of range, or ``variants`` names an unknown variant or leaves
            out the baseline.
    """
    budget_changes = {k: v for k, v in dict(epochs=epochs, max_train=max_train, max_val=max_val,
                                            img_size=img_size, batch_size=batch_size, dataset=dataset,
                                            data_root=data_root).items() if v is not None}
    if seeds is not None:
        budget_changes["seeds"] = seeds if isinstance(seeds, str) else list(seeds)
    raw_budget = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(recipe.budget).items()}
    if raw_budget.pop("max_seeds") is not None:  # the recipe's sequential seeds, unless --seeds replaces them
        raw_budget["seeds"] = f"auto:{recipe.budget.max_seeds}"
    raw_budget.update(budget_changes)
    budget = _parse_budget(raw_budget, "--budget") if budget_changes else recipe.budget
    raw_measure = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(recipe.measure).items()}
    if protocols is not None:
        raw_measure["protocols"] = list(protocols)
    if measure_img_sizes is not None:
        raw_measure["img_sizes"] = list(measure_img_sizes)
    if repeats is not None:
        raw_measure["repeats"] = repeats
    measure_spec = _parse_measure(raw_measure, "--measure")
    chosen = recipe.variants
    if variants is not None:
        known = {v.name for v in recipe.variants}
        for name in variants:
            if name not in known:
                raise RecipeError("--variants", name, f"unknown variant; expected some of {', '.join(sorted(known))}")
        if recipe.baseline.name not in variants:
            raise RecipeError("--variants", list(variants), f"must include the baseline {recipe.baseline.name!r}")
        chosen = tuple(v for v in recipe.variants if v.name in set(variants))
    return dataclasses.replace(recipe, budget=budget, measure=measure_spec, variants=chosen)
