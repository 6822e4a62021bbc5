"""Latency tables: one device's latency of a space's building blocks, and a predictor built from it.

A study may run on one machine (a GPU box) and optimise the latency of another (a CPU, another
GPU). Following the per-block lookup tables of ProxylessNAS (Cai et al. 2019, §3.3), FBNet (Wu et
al. 2019, §3.2) and OFA (Cai et al. 2020), the target device measures, once, the *units* a
generated model is made of (:func:`model_units`: the stem, each stage's downsample, each block,
the head), each on its own input shape, with the protocol of the study
(:mod:`explore.measure.protocols`), plus a calibration set of whole models. The file
(:class:`LatencyTable`) keeps the device, protocol, library versions and every raw timing.

The predictor (:class:`LatencyPredictor`) sums unit figures: a unit already in the table takes its
measured median; any other unit is predicted by a regressor fitted on the table's units, per unit
kind, from its MACs, parameters, activation elements, operator count and tokens (scikit-learn:
non-negative least squares, or gradient-boosted trees on the logs; :func:`fit_predictor` keeps the
one with the lower error on the calibration models). A linear correction fitted on the calibration
models (measured ≈ Σ_kind w_kind · Σ units of that kind + b) absorbs what the sum misses: the calls
between units, caches shared across them, a kind that runs faster or slower inside a model than
alone.

A unit's key (:func:`unit_key`) is its structure (module tree, parameter and buffer shapes, scalar
attributes) and input shape, so any block the generator builds (CGA, MHSA, LiteMLA, MBConv,
sandwich, transformer) is covered without per-kind code.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from explore.arch import ArchConfig
from explore.errors import ExploreError
from explore.measure.counting import count_macs, count_params
from explore.measure.fusion import fuse_batchnorm
from explore.measure.protocols import Measurement, Protocol, device_name, library_versions, measure
from explore.nn import build
from explore.resources import write_atomically

__all__ = ["TABLE_FORMAT", "TABLE_VERSION", "FEATURES", "Unit", "model_units", "unit_key", "unit_features",
           "measure_unit", "LatencyTable", "LatencyPredictor", "config_units", "choose_regressor", "fit_predictor",
           "table_differences", "unit_protocol", "table_protocol"]

TABLE_FORMAT = "explore-latency-table"
TABLE_VERSION = 1
FEATURES = ("macs", "params", "act_elems", "ops", "tokens")
"""Unit features of the regressor: MACs and parameters of one image, output elements of its
operators (activation traffic), operators run (after BN folding) and input tokens (H·W)."""


@dataclasses.dataclass
class Unit:
    """One unit of a generated model.

    Attributes:
        name: its path in the model (``stem``, ``stages.1.downsample``, ``stages.1.blocks.0``, ``head``).
        kind: ``<part>:<class>`` (``block:SandwichBlock/cga``); the regressor is fitted per kind.
        module: the module (a submodule of the model).
        in_chans, side: its input (B, in_chans, side, side).
    """

    name: str
    kind: str
    module: nn.Module
    in_chans: int
    side: int


def model_units(model: nn.Module) -> list[Unit]:
    """The units of a model built by :func:`explore.nn.build`, in forward order, with their input shapes.

    Args:
        model: an :class:`explore.nn.EfficientViT` (its ``config`` gives the image size and mixers).

    Returns:
        stem, then per stage its downsample (where it is not the identity) and blocks, then the head.

    Raises:
        ExploreError: field ``model``: not a generated model.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, ArchConfig) or not hasattr(model, "stages"):
        raise ExploreError("model", type(model).__name__, "a model built by explore.nn.build")
    parts: list[tuple[str, str, nn.Module]] = [("stem", f"stem:{type(model.stem).__name__}", model.stem)]
    for i, stage in enumerate(model.stages):
        mixer = config.stages[i].token_mixer
        if not isinstance(stage.downsample, nn.Identity):
            parts.append((f"stages.{i}.downsample", f"downsample:{type(stage.downsample).__name__}", stage.downsample))
        for j, block in enumerate(stage.blocks):
            parts.append((f"stages.{i}.blocks.{j}", f"block:{type(block).__name__}/{mixer}", block))
    parts.append(("head", f"head:{type(model.head).__name__}", model.head))
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [module.register_forward_pre_hook(lambda m, args, name=name: shapes.__setitem__(name, tuple(args[0].shape)))
             for name, _, module in parts]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, config.in_chans, config.img_size, config.img_size,
                              device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return [Unit(name, kind, module, shapes[name][1], shapes[name][2]) for name, kind, module in parts]


def _scalars(module: nn.Module) -> list[tuple[str, Any]]:
    return sorted((k, v) for k, v in vars(module).items()
                  if not k.startswith("_") and k != "training" and isinstance(v, (int, float, str, bool, tuple)))


def unit_key(unit: Unit) -> str:
    """A unit's identity in a table: a hash of its module tree, parameter and buffer shapes, every
    submodule's scalar attributes (window sizes, head counts) and its input shape."""
    parts = [unit.kind, f"in={unit.in_chans}x{unit.side}x{unit.side}", repr(unit.module)]
    parts += [f"{n}:{tuple(p.shape)}" for n, p in unit.module.named_parameters()]
    parts += [f"{n}:{tuple(b.shape)}" for n, b in unit.module.named_buffers()]
    parts += [f"{n}:{_scalars(m)}" for n, m in unit.module.named_modules()]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:20]


def unit_features(unit: Unit) -> dict[str, float]:
    """The regressor's features of one unit on one image (see :data:`FEATURES`)."""
    module = unit.module
    macs = count_macs(module, unit.side, unit.in_chans)
    fused = fuse_batchnorm(copy.deepcopy(module).eval())
    elems, ops = [0], [0]

    def hook(_m: nn.Module, _args: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            elems[0] += out.numel()
        ops[0] += 1

    hooks = [m.register_forward_hook(hook) for m in fused.modules()
             if not list(m.children()) and not isinstance(m, nn.Identity)]
    try:
        with torch.no_grad():
            fused(torch.zeros(1, unit.in_chans, unit.side, unit.side))
    finally:
        for h in hooks:
            h.remove()
    return {"macs": float(macs), "params": float(count_params(module)), "act_elems": float(elems[0]),
            "ops": float(ops[0]), "tokens": float(unit.side * unit.side)}


def measure_unit(unit: Unit, protocol: Protocol) -> Measurement:
    """Time one unit alone with ``protocol`` on its own input (B, in_chans, side, side).

    Raises:
        DeviceError: as :func:`explore.measure.measure`, as is ``ExploreError``.
    """
    return measure(unit.module, unit_protocol(unit, protocol))


def unit_protocol(unit: Unit, protocol: Protocol) -> Protocol:
    """The protocol a unit is timed with: ``protocol`` at the unit's input (B, in_chans, side, side),
    its reference model (normalised CPU figures) kept at the models' input, ``protocol``'s
    ``img_size`` and ``in_chans`` (or its ``reference_*`` where set): every entry of a table is a
    ratio to the same reference, scaled by the same calibration.

    Args:
        unit: the unit.
        protocol: the table's protocol (the models' input).

    Returns:
        The unit's protocol.
    """
    return dataclasses.replace(protocol, img_size=unit.side, img_width=None, in_chans=unit.in_chans,
                               reference_img_size=protocol.reference_img_size or protocol.img_size,
                               reference_in_chans=protocol.reference_in_chans or protocol.in_chans)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass
class LatencyTable:
    """A latency table file: where and how it was measured, its units and its calibration models.

    Attributes:
        protocol: the protocol's parameters (:meth:`Protocol.key`; ``img_size`` and ``in_chans``
            are those of the models, each unit ran at its own).
        device_name: the measured device (CPU model or GPU name).
        versions: library versions (torch, onnxruntime where used).
        space: the space's name, file and TOML text (:func:`explore.measure.latency_table_jobs.evaluate_table`
            samples held-out architectures from it); sampling: how the units were chosen.
        in_chans, num_classes: of the models (stem and head units depend on them).
        units: key -> {kind, in_chans, side, features, median_ms, iqr_ms, batch_size, contended,
            rounds}: ``rounds`` holds every measurement round (its median, IQR, contention and raw
            ``times_ms``); the entry's figures are those of its fastest round (None: not measured yet).
        models: calibration models: {config (JSON), summary, units (keys), params, macs, median_ms,
            latency_ms_per_img, batch_size, contended, rounds}.
        predictor: the regressor :func:`choose_regressor` picked when the table was built
            (``regressor``) and each candidate's calibration MAPE (``calibration_mape``), so that
            loading the table fits one regressor instead of choosing again; empty in older files.
        reference: the reference model's calibration every normalised figure of the table is scaled
            by (:meth:`explore.measure.ReferenceCalibration.as_dict`; empty: raw figures, or a file
            written before normalised latency).
        created: ISO time.
        format: the file's format.
        version: its version.
    """

    protocol: dict[str, Any]
    device_name: str
    versions: dict[str, str]
    space: dict[str, Any]
    sampling: dict[str, Any]
    in_chans: int
    num_classes: int
    units: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    models: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    predictor: dict[str, Any] = dataclasses.field(default_factory=dict)
    reference: dict[str, Any] = dataclasses.field(default_factory=dict)
    created: str = dataclasses.field(default_factory=_now)
    format: str = TABLE_FORMAT
    version: int = TABLE_VERSION

    @property
    def batch_size(self) -> int:
        """The protocol's batch (images per timed pass)."""
        return int(self.protocol["batch_size"])

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON, atomically (a temporary file renamed over ``path``)."""
        text = json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)
        return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    @classmethod
    def load(cls, path: str | Path, field: str = "--latency-table") -> LatencyTable:
        """Read and check a table file.

        Raises:
            ExploreError: ``field``: no such file, not JSON, not a latency table, another format
                version, or missing/ill-typed fields (names the first one).
        """
        path = Path(path)
        if not path.is_file():
            raise ExploreError(field, str(path), "no such latency table file")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ExploreError(field, str(path), f"a latency table (JSON); the file is not JSON: {exc}") from None
        if not isinstance(raw, dict) or raw.get("format") != TABLE_FORMAT:
            raise ExploreError(field, str(path), f"a latency table written by `explore latency-table` "
                                                 f"(format {TABLE_FORMAT!r}); this file is something else")
        if raw.get("version") != TABLE_VERSION:
            raise ExploreError(field, str(path), f"table format version {TABLE_VERSION}; the file has "
                                                 f"{raw.get('version')!r}: write it again with this version")
        types = {"protocol": dict, "device_name": str, "versions": dict, "space": dict, "sampling": dict,
                 "in_chans": int, "num_classes": int, "units": dict, "models": list, "created": str}
        for name, kind in types.items():
            if not isinstance(raw.get(name), kind):
                raise ExploreError(field, str(path), f"a latency table with field {name!r} ({kind.__name__}); "
                                                     "the file lacks it or it is corrupt")
        for key, entry in raw["units"].items():
            if not (isinstance(entry, dict) and isinstance(entry.get("features"), dict)
                    and isinstance(entry.get("median_ms"), (int, float, type(None))) and isinstance(entry.get("kind"), str)):
                raise ExploreError(field, str(path), f"unit {key!r} with kind, features and median_ms; it is corrupt")
        for i, model in enumerate(raw["models"]):
            if not (isinstance(model, dict) and isinstance(model.get("units"), list)
                    and isinstance(model.get("median_ms"), (int, float, type(None)))
                    and all(k in raw["units"] for k in model["units"])):
                raise ExploreError(field, str(path), f"calibration model {i} with units in the table and median_ms; "
                                                     "it is corrupt")
        optional = {"predictor": {}, "reference": {}}  # fields added within format version 1
        return cls(**{f.name: raw.get(f.name, optional.get(f.name)) for f in dataclasses.fields(cls)})

    def measured(self) -> LatencyTable:
        """This table without the entries an interrupted build left unmeasured (``median_ms`` None)."""
        units = {k: e for k, e in self.units.items() if e.get("median_ms") is not None}
        models = [m for m in self.models if m.get("median_ms") is not None and all(k in units for k in m["units"])]
        return dataclasses.replace(self, units=units, models=models)


def table_protocol(table: LatencyTable) -> Protocol:
    """The protocol a table was measured with (a table written before normalised latency: ``raw``).

    Args:
        table: the table.

    Returns:
        The protocol (``img_size`` and ``in_chans``: the models').
    """
    names = {f.name for f in dataclasses.fields(Protocol)}
    return Protocol(**{"figure": "raw", **{k: v for k, v in table.protocol.items() if k in names}})


def table_differences(table: LatencyTable, protocol: Protocol | None, device: str | torch.device | None) -> list[str]:
    """What differs between the table's measurements and a study's latency set-up (empty: nothing):
    the device model, the protocol's name, mode, batch, threads or precision, the torch version.

    Args:
        table: the table.
        protocol: the study's protocol (None: not compared).
        device: the study's device (None: not compared).
    """
    out = []
    if device is not None:
        here = device_name(device)
        if here != table.device_name:
            out.append(f"device {table.device_name!r} in the table, {here!r} here")
    if protocol is not None:
        mine = protocol.key()
        theirs = table_protocol(table).key()
        for name in ("name", "mode", "batch_size", "threads", "amp", "onnx", "figure"):
            if mine.get(name) != theirs.get(name):
                out.append(f"protocol {name} {theirs.get(name)!r} in the table, {mine.get(name)!r} here")
    here_torch = library_versions().get("torch")
    if table.versions.get("torch") != here_torch:
        out.append(f"torch {table.versions.get('torch')} in the table, {here_torch} here")
    return out


def _vector(features: dict[str, float]) -> list[float]:
    return [float(features[name]) for name in FEATURES]


class LatencyPredictor:
    """Predicted latency (ms per image, the table's protocol) of any architecture of the table's space.

    Built by :func:`fit_predictor`; ``regressor`` is ``"linear"`` (per kind, non-negative least
    squares on :data:`FEATURES`) or ``"trees"`` (gradient-boosted trees on their logs, per kind
    where a kind has >= 20 units, one model over all units with the kind as a feature otherwise).
    The correction maps unit sums to a whole model: ms per batch = Σ_kind w_kind · (Σ unit ms of
    that kind) + b, fitted on the calibration models (:meth:`calibrate`).
    """

    def __init__(self, table: LatencyTable, regressor: str, models: dict[str, Any], kinds: list[str]) -> None:
        self.table, self.regressor, self._models, self._kinds = table, regressor, models, kinds
        self.weights: dict[str, float] = {}
        self.default_weight, self.offset = 1.0, 0.0
        self._memo: dict[str, float] = {}

    def unit_ms(self, key: str | None, kind: str, features: dict[str, float]) -> float:
        """One unit's time per batch (ms): its measured median when ``key`` is in the table, else the
        regressor's figure."""
        if key is not None and key in self.table.units:
            return float(self.table.units[key]["median_ms"])
        return self._regress(kind, features)

    def _regress(self, kind: str, features: dict[str, float]) -> float:
        x = _vector(features)
        if self.regressor == "linear":
            model = self._models.get(kind) or self._models["*"]
            return max(0.0, float(model.predict([x])[0]))
        model = self._models.get(kind)
        if model is not None:
            return float(math.exp(model.predict([[math.log1p(v) for v in x]])[0]))
        onehot = [1.0 if kind == k else 0.0 for k in self._kinds]
        return float(math.exp(self._models["*"].predict([[math.log1p(v) for v in x] + onehot])[0]))

    def kind_sums(self, units: Sequence[tuple[str | None, str, dict[str, float]]],
                  regress_all: bool = False) -> dict[str, float]:
        """Σ unit ms per batch by unit kind, before the correction (``regress_all``: regress every
        unit, even those in the table)."""
        out: dict[str, float] = {}
        for key, kind, feats in units:
            out[kind] = out.get(kind, 0.0) + (self._regress(kind, feats) if regress_all else self.unit_ms(key, kind, feats))
        return out

    def corrected(self, sums: dict[str, float]) -> float:
        """ms per batch of a model from its :meth:`kind_sums` (the plain sum where a correction
        fitted on too few models would give a figure <= 0)."""
        value = sum(self.weights.get(k, self.default_weight) * v for k, v in sums.items()) + self.offset
        return value if value > 0 else sum(sums.values())

    def calibrate_on_models(self, measured: Sequence[float] | None = None) -> None:
        """:meth:`calibrate` on the table's calibration models: their stored medians, or
        ``measured`` (ms per batch, in the table's order; e.g. this session's figures)."""
        models = self.table.models
        self.calibrate([self.kind_sums(_model_units(self.table, m)) for m in models],
                       [float(m["median_ms"]) for m in models] if measured is None else list(measured))

    def calibrate(self, sums: Sequence[dict[str, float]], measured: Sequence[float]) -> None:
        """Fit the correction on models' :meth:`kind_sums` and their measured ms per batch: one
        weight per kind (non-negative least squares with an intercept) where there are at least
        two models per weight, else one weight for the total."""
        self.weights, self.default_weight, self.offset = _correction(sums, measured)

    def predict_units(self, units: Sequence[tuple[str | None, str, dict[str, float]]]) -> float:
        """Predicted ms per image of a model given as its units."""
        return self.corrected(self.kind_sums(units)) / self.table.batch_size

    def predict(self, config: ArchConfig) -> float:
        """Predicted latency (ms per image) of ``config`` on the table's device and protocol.

        Raises:
            ExploreError: as :func:`model_units`.
        """
        key = config.config_hash()
        if key not in self._memo:
            self._memo[key] = self.predict_units(config_units(config))
        return self._memo[key]


def config_units(config: ArchConfig) -> list[tuple[str, str, dict[str, float]]]:
    """(key, kind, features) of every unit of ``config``'s model (:func:`model_units`)."""
    return [(unit_key(u), u.kind, unit_features(u)) for u in model_units(build(config))]


def _correction(sums: Sequence[dict[str, float]], measured: Sequence[float]) -> tuple[dict[str, float], float, float]:
    """(weights per kind, the weight of kinds not seen, offset) of measured ≈ Σ w_k · sum_k + b."""
    from sklearn.linear_model import LinearRegression

    n = len(measured)
    if n == 0:
        return {}, 1.0, 0.0
    kinds = sorted({k for s in sums for k in s})
    if n >= 2 * (len(kinds) + 1):
        fit = LinearRegression(positive=True).fit([[s.get(k, 0.0) for k in kinds] for s in sums], list(measured))
        weights = {k: float(w) for k, w in zip(kinds, fit.coef_)}
        total = [sum(s.values()) for s in sums]
        overall = sum(measured) / max(sum(total), 1e-9)
        return weights, overall, float(fit.intercept_)
    totals = [sum(s.values()) for s in sums]
    if n < 3:
        return {}, sum(measured) / max(sum(totals), 1e-9), 0.0
    fit = LinearRegression(positive=True).fit([[x] for x in totals], list(measured))
    return {}, float(fit.coef_[0]), float(fit.intercept_)


def _fit_regressors(table: LatencyTable, regressor: str, exclude: Iterable[str] = ()) -> tuple[dict[str, Any], list[str]]:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression

    skip = set(exclude)
    rows = [(e["kind"], _vector(e["features"]), float(e["median_ms"])) for k, e in table.units.items() if k not in skip]
    kinds = sorted({kind for kind, _, _ in rows})
    models: dict[str, Any] = {}
    if regressor == "linear":
        for kind in kinds:
            part = [(x, y) for k, x, y in rows if k == kind]
            if len(part) >= len(FEATURES) + 1:
                models[kind] = LinearRegression(positive=True).fit([x for x, _ in part], [y for _, y in part])
        models["*"] = LinearRegression(positive=True).fit([x for _, x, _ in rows], [y for _, _, y in rows])
        return models, kinds
    for kind in kinds:
        part = [(x, y) for k, x, y in rows if k == kind]
        if len(part) >= 20:
            models[kind] = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, min_samples_leaf=3,
                                                         random_state=0).fit(
                [[math.log1p(v) for v in x] for x, _ in part], [math.log(max(y, 1e-6)) for _, y in part])
    models["*"] = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, min_samples_leaf=3,
                                                random_state=0).fit(
        [[math.log1p(v) for v in x] + [1.0 if k == kk else 0.0 for kk in kinds] for k, x, _ in rows],
        [math.log(max(y, 1e-6)) for _, _, y in rows])
    return models, kinds


def _model_units(table: LatencyTable, model: dict[str, Any]) -> list[tuple[str | None, str, dict[str, float]]]:
    return [(k, table.units[k]["kind"], table.units[k]["features"]) for k in model["units"]]


REGRESSORS = ("linear", "trees")


def choose_regressor(table: LatencyTable) -> dict[str, Any]:
    """Try both regressors and keep the one with the lower mean absolute percentage error on the
    calibration models, each predicted with its own units left out of the regression (a
    unit-disjoint estimate: a held-out model's units are new to the table) and the correction
    fitted on the other models (leave-one-out). Costs a minute on a 2-core CPU for 30 models, so
    :func:`explore.measure.latency_table_jobs.build_table` does it once and stores the result.

    Returns:
        {"regressor": name, "calibration_mape": {name: %}}; {} with fewer than 4 calibration models.
    """
    table = table.measured()
    if len(table.models) < 4 or not table.units:
        return {}
    errors = {name: _loo_mape(table, name) for name in REGRESSORS}
    return {"regressor": min(errors, key=errors.get), "calibration_mape": errors}


def fit_predictor(table: LatencyTable, regressor: str | None = None,
                  on_choice: Callable[[dict[str, float]], None] | None = None) -> LatencyPredictor:
    """Fit the predictor of a table.

    With ``regressor`` None, the table's stored choice (:attr:`LatencyTable.predictor`) is used, or,
    for a table without one, :func:`choose_regressor` chooses now (``linear`` with too few
    calibration models to choose).

    Args:
        table: a loaded table (>= 1 unit).
        regressor: ``linear``, ``trees`` or None (choose).
        on_choice: called with {regressor: calibration MAPE (%)} when the choice was made by error.

    Raises:
        ExploreError: field ``--regressor``: unknown name; field ``--latency-table``: a table without units.
    """
    table = table.measured()
    if not table.units:
        raise ExploreError("--latency-table", table.space.get("name"), "a table with measured units; it has none")
    if regressor is not None and regressor not in REGRESSORS:
        raise ExploreError("--regressor", regressor, f"expected one of {', '.join(REGRESSORS)}")
    if regressor is None:
        chosen = table.predictor if table.predictor.get("regressor") in REGRESSORS else choose_regressor(table)
        regressor = chosen.get("regressor", REGRESSORS[0])
        if chosen and on_choice is not None:
            on_choice(dict(chosen["calibration_mape"]))
    models, kinds = _fit_regressors(table, regressor)
    predictor = LatencyPredictor(table, regressor, models, kinds)
    predictor.calibrate_on_models()
    return predictor


def _loo_mape(table: LatencyTable, regressor: str) -> float:
    """Calibration MAPE (%) of a regressor, each model predicted without its own units (they are
    regressed, not looked up) and with the correction fitted on the other models."""
    sums = []
    for model in table.models:
        models, kinds = _fit_regressors(table, regressor, exclude=model["units"])
        sums.append(LatencyPredictor(table, regressor, models, kinds).kind_sums(_model_units(table, model),
                                                                                regress_all=True))
    measured = [float(m["median_ms"]) for m in table.models]
    probe = LatencyPredictor(table, regressor, {}, [])
    errors = []
    for i in range(len(sums)):
        probe.calibrate(sums[:i] + sums[i + 1:], measured[:i] + measured[i + 1:])
        errors.append(abs(probe.corrected(sums[i]) - measured[i]) / measured[i])
    return 100.0 * sum(errors) / len(errors)
