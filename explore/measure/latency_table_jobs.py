"""Building a latency table on the target device, and checking its predictor on held-out architectures.

``explore latency-table --space SPACE --protocol P --out table.json`` (:func:`build_table`) samples
architectures from the space at random (the sampler's own distribution over its knobs, infeasible
points skipped: the blocks a study of that space will actually meet), decomposes each into units
(:func:`explore.measure.latency_table.model_units`) and measures every unit not yet in the table
alone on its input shape; the first ``calibration`` architectures are also measured whole. The
file is written after every measurement, so a stopped run resumes where it stopped.

``explore latency-table --evaluate table.json --archs 30`` (:func:`evaluate_table`) samples
architectures the table has not seen (another seed; table architectures excluded), measures them
whole on this device, and compares with the predictor: MAPE, the share within ±10 %, Kendall's τ;
and the same for MACs as the predictor (latency ≈ a · MACs + b fitted on the calibration models).

Follows: the latency lookup tables of ProxylessNAS (arXiv:1812.00332 §3.3), FBNet
(arXiv:1812.03443 §3.2) and OFA (arXiv:1908.09791 §3.3); the accuracy figures of nn-Meter (MobiSys
2021: share of predictions within ±10 %).
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from explore.arch import ArchConfig
from explore.errors import ExploreError
from explore.measure.counting import count_model
from explore.measure.latency_table import (
    LatencyTable,
    choose_regressor,
    config_units,
    fit_predictor,
    measure_unit,
    model_units,
    table_differences,
    table_protocol,
    unit_features,
    unit_key,
)
from explore.measure.protocols import (
    Measurement,
    Protocol,
    ReferenceCalibration,
    device_name,
    library_versions,
    reference_calibration,
    set_reference_calibration,
)
from explore.measure.timing import time_model, time_rounds
from explore.nn import build
from explore.resources import display_path
from explore.space import load_space, sample_architectures
from explore.stats import kendall_tau

__all__ = ["ROUNDS", "TableEvaluation", "build_table", "calibration_rows", "evaluate_table", "evaluation_stats",
           "prediction_stats", "table_reference"]


ROUNDS = 3
"""Interleaved measurement rounds of a table entry and of a held-out architecture (the fastest counts)."""


def _timing(m: Measurement) -> dict[str, Any]:
    return {"median_ms": m.median_ms, "iqr_ms": m.iqr_ms, "batch_size": m.batch_size, "contended": m.contended,
            "latency_ms_per_img": m.latency_ms_per_img, "contention_ratio": m.contention_ratio,
            "times_ms": m.times_ms, "figure": m.figure, "raw_ms_per_img": m.raw_ms_per_img,
            "pair_ratio": m.pair_ratio, "pair_spread": m.pair_spread, "reference_slowdown": m.reference_slowdown}


def table_reference(protocol: Protocol, img_size: int, in_chans: int) -> Protocol:
    """``protocol`` with its reference model at the models' input (``img_size``, ``in_chans``): every
    entry of a table, units and whole models, is paired with the same reference (normalised CPU
    figures; other protocols unchanged).

    Args:
        protocol: the table's protocol.
        img_size: the models' input side (pixels).
        in_chans: the models' input channels.

    Returns:
        The protocol to build the table with.
    """
    if protocol.figure != "normalised" or protocol.device != "cpu":
        return protocol
    return dataclasses.replace(protocol, reference_img_size=protocol.reference_img_size or img_size,
                               reference_in_chans=protocol.reference_in_chans or in_chans)


def _use_table_calibration(table: LatencyTable, protocol: Protocol) -> None:
    """Scale this run's normalised figures by the calibration the table was built with (when it has
    one): a table built in one run then predicts the figures of a later one, both ratios to the
    same reference scaled by the same number. A calibration of another machine is not used (its
    key names the machine)."""
    if table.reference and protocol.figure == "normalised":
        set_reference_calibration(ReferenceCalibration.from_dict(table.reference))


def _stored_calibration(protocol: Protocol) -> dict[str, Any]:
    """The calibration the table's normalised figures are scaled by (empty for raw figures)."""
    if protocol.figure != "normalised" or protocol.device != "cpu":
        return {}
    return reference_calibration(protocol).as_dict()


def build_table(space: str, protocol: Protocol, out: str | Path, *, archs: int = 40, calibration: int = 20,
                in_chans: int = 1, num_classes: int = 10, seed: int = 0, rounds: int = ROUNDS,
                on_progress: Callable[[str, int, int], None] | None = None) -> LatencyTable:
    """Measure a space's units and calibration models on this device; write (and resume) ``out``.

    Args:
        space: space name or file.
        protocol: the latency protocol (its ``img_size`` and ``in_chans`` are replaced per unit).
        out: the table file; an existing table of the same space, protocol, device and sampling is
            resumed (measured entries kept).
        archs: architectures sampled for units (>= 1).
        calibration: how many of them are also measured whole (0 <= calibration <= archs).
        in_chans: input channels of the models (the data the studies use: Fashion-MNIST 1).
        num_classes: classes of the models (Fashion-MNIST 10).
        seed: sampling seed.
        rounds: interleaved measurement rounds (>= 1): every entry is measured once per round,
            round-robin over all entries, and keeps its fastest round (with every round's raw timings).
            At the end the predictor's regressor is chosen and stored (:func:`choose_regressor`).
        on_progress: called with (what, done, total) after each measurement.

    Returns:
        The table, as written.

    Raises:
        ExploreError: bad counts (``--archs``, ``--calibration``); ``--out`` holds a table of
            another space, protocol, device or sampling, or a file that is not a table; as
            :func:`explore.measure.measure`.
        SpaceError: unknown or invalid space.
    """
    if archs < 1:
        raise ExploreError("--archs", archs, "expected >= 1 architecture")
    if rounds < 1:
        raise ExploreError("--rounds", rounds, "expected >= 1 measurement round")
    if not 0 <= calibration <= archs:
        raise ExploreError("--calibration", calibration, f"expected 0..{archs} (at most --archs)")
    sampling = {"method": "random sampler over the space's knobs, infeasible points skipped; every distinct unit "
                          "of the sampled architectures measured alone, the first `calibration` also whole",
                "archs": archs, "calibration": calibration, "seed": seed, "rounds": rounds}
    out = Path(out)
    configs = sample_architectures(space, archs, in_chans=in_chans, num_classes=num_classes, seed=seed)
    protocol = table_reference(protocol, configs[0].img_size, in_chans)
    table = _open_table(out, space, protocol, sampling, in_chans, num_classes)
    _use_table_calibration(table, protocol)  # a resumed table keeps the scale of its first run
    jobs = _table_jobs(table, configs[:calibration], configs, protocol)

    def save() -> None:
        table.reference = _stored_calibration(protocol)
        table.save(out)

    _measure_rounds(jobs, rounds, save, on_progress)
    table.predictor = choose_regressor(table)  # once here, not at every load
    save()
    return table


def _open_table(out: Path, space: str, protocol: Protocol, sampling: dict[str, Any], in_chans: int,
                num_classes: int) -> LatencyTable:
    """The table to fill: the one in ``out`` (resumed) when it is of the same space, protocol, device
    and sampling, else a new one.

    Raises:
        ExploreError: field ``--out``: a table of other settings, or a file that is not a table.
        SpaceError: unknown or invalid space.
    """
    loaded = load_space(space)
    if not out.exists():
        return LatencyTable(protocol=protocol.key(), device_name=device_name(protocol.device),
                            versions=library_versions(protocol.onnx),
                            space={"name": loaded.name, "file": display_path(loaded.path, "search_spaces"),
                                   "toml": Path(loaded.path).read_text(encoding="utf-8")},
                            sampling=sampling, in_chans=in_chans, num_classes=num_classes)
    table = LatencyTable.load(out, field="--out")
    differences = table_differences(table, protocol, protocol.device)
    if table.space.get("name") != loaded.name:
        differences.append(f"space {table.space.get('name')!r} in the file, {loaded.name!r} asked")
    if table.sampling != sampling or (table.in_chans, table.num_classes) != (in_chans, num_classes):
        differences.append("other sampling settings (--archs, --calibration, --seed, --in-chans, --num-classes)")
    if differences:
        raise ExploreError("--out", str(out), "a new file, or the table this command wrote before (to resume); "
                                              "it differs: " + "; ".join(differences))
    return table


_Job = tuple[dict[str, Any], Callable[[], Measurement], str]
"""A table entry to measure: its record in the table, the measurement, and what it is (for progress)."""


def _table_jobs(table: LatencyTable, calibration: list[ArchConfig], configs: list[ArchConfig],
                protocol: Protocol) -> list[_Job]:
    """Add the entries ``configs`` need to ``table`` (every distinct unit, and each calibration model
    whole) and return a measurement job per entry (entries measured before keep their rounds)."""
    plans = [(config, [(unit_key(u), u) for u in model_units(build(config))]) for config in configs]
    distinct = {key: unit for _, units in plans for key, unit in units}
    for key, unit in distinct.items():
        if key not in table.units:
            table.units[key] = {"kind": unit.kind, "in_chans": unit.in_chans, "side": unit.side,
                                "features": unit_features(unit), "rounds": [], "median_ms": None}
    calibrated = {m["config"]: m for m in table.models}
    for config, units in plans[:len(calibration)]:
        text = config.to_json(sort_keys=True)
        if text not in calibrated:
            params, macs = count_model(build(config), config.img_size, config.in_chans)
            calibrated[text] = {"config": text, "summary": config.summary(), "units": [key for key, _ in units],
                                "params": params, "macs": macs, "rounds": [], "median_ms": None}
            table.models.append(calibrated[text])
    jobs: list[_Job] = [(table.units[key], lambda unit=unit: measure_unit(unit, protocol), f"unit {unit.kind} @{unit.side}")
                        for key, unit in distinct.items()]
    for config in calibration:
        model_protocol = dataclasses.replace(protocol, img_size=config.img_size, in_chans=config.in_chans)
        jobs.append((calibrated[config.to_json(sort_keys=True)],
                     lambda config=config, mp=model_protocol: time_model(build(config), mp), f"model {config.summary()}"))
    return jobs


def _measure_rounds(jobs: list[_Job], rounds: int, save: Callable[[], None],
                    on_progress: Callable[[str, int, int], None] | None) -> None:
    """Every entry once per round, round-robin, until it has ``rounds`` rounds: a slow spell of the
    machine falls on different entries in different rounds instead of on all the repeats of one;
    each entry keeps its fastest round. The table is saved after every measurement (resumable)."""
    total = len(jobs) * rounds
    done = sum(min(len(entry["rounds"]), rounds) for entry, _, _ in jobs)
    for r in range(rounds):
        for entry, run, what in jobs:
            if len(entry["rounds"]) > r:
                continue
            entry["rounds"].append(_timing(run()))
            best = min(entry["rounds"], key=lambda t: t["median_ms"])
            entry.update({k: best[k] for k in ("median_ms", "iqr_ms", "batch_size", "contended", "latency_ms_per_img")})
            save()
            done += 1
            if on_progress is not None:
                on_progress(what, done, total)


@dataclass(frozen=True)
class TableEvaluation:
    """Predicted against measured latency on held-out architectures (:func:`evaluate_table`).

    Attributes:
        rows: one row per architecture: arch, summary, params, macs, measured (ms/img), predicted
            (ms/img), error (%), macs_predicted (ms/img), macs_error (%), contended, config.
        stats: {predictor, recalibrated, macs} -> {mape, within_10, kendall_tau, max_error} (percent,
            share in %); ``recalibrated``: the predictor with its correction fitted on this session's
            measurements of the calibration models (held-out figures unused);
            ``drift``: the same figures for the table's own calibration models (table figure against
            this session's), plus ``mean_signed`` (%, table over now): the noise floor between sessions.
        regressor: the regressor the predictor uses.
        choice: the calibration MAPE of each candidate.
        differences: how this device / protocol / torch differ from the table's.
        meta: table file (``table``: its name; ``table_path``: the path as given, relative), space,
            protocol, device, archs, seed, rounds, the table's and this session's library versions
            (``versions``, ``session_versions``), the settings as asked (``settings``: archs, seed,
            regressor, rounds); the CLI adds ``study`` and ``trials`` (trial numbers) for ``--study``.
        calibration: the table's calibration models as re-timed in this session, in the table's
            order (:func:`calibration_rows`): per model its table figure and this session's (ms/img),
            this session's median per batch (ms; the re-calibration is fitted on it) and every round.
        correction: the predictor's correction as fitted on the table (``table``) and on this
            session's figures (``session``): ``{"weights": {kind: w}, "default_weight": w, "offset": b}``
            (ms per batch ≈ Σ_kind w_kind · Σ unit ms + b); ``macs_fit``: ``{"a": ms/img per MAC, "b": ms/img}``.
    """

    rows: pd.DataFrame
    stats: dict[str, dict[str, float]]
    regressor: str
    choice: dict[str, float]
    differences: list[str]
    meta: dict[str, Any]
    calibration: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    correction: dict[str, Any] = dataclasses.field(default_factory=dict)


def prediction_stats(measured: list[float], predicted: list[float]) -> dict[str, float]:
    """MAPE (%), share within ±10 % (%), Kendall's τ and the largest error (%) of predictions."""
    errors = [abs(p - m) / m * 100.0 for m, p in zip(measured, predicted)]
    if not errors:
        return {"mape": float("nan"), "within_10": float("nan"), "kendall_tau": float("nan"), "max_error": float("nan")}
    return {"mape": sum(errors) / len(errors), "within_10": 100.0 * sum(e <= 10.0 for e in errors) / len(errors),
            "kendall_tau": kendall_tau(measured, predicted), "max_error": max(errors)}


def _macs_fit(table: LatencyTable) -> tuple[float, float]:
    """(a, b) of ms/img ≈ a · MACs + b, least squares over the calibration models."""
    xs = [float(m["macs"]) for m in table.models]
    ys = [float(m["latency_ms_per_img"]) for m in table.models]
    n = len(xs)
    if n < 2:
        raise ExploreError("--evaluate", table.space.get("name"), "a table with >= 2 calibration models "
                                                                  "(--calibration) to fit the MACs baseline")
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs) or 1.0
    a = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var
    return a, my - a * mx


def _held_out(table: LatencyTable, archs: int, seed: int, seen: set[str]) -> list[ArchConfig]:
    """``archs`` architectures sampled from the table's own space (its stored TOML), none of ``seen``."""
    with tempfile.TemporaryDirectory() as folder:  # the space as the table stored it, wherever its file is now
        space = Path(folder) / Path(str(table.space.get("file") or "space.toml")).name
        if "toml" in table.space:
            space.write_text(str(table.space["toml"]), encoding="utf-8")
        else:
            space = Path(str(table.space.get("file") or table.space.get("name")))
        pool = sample_architectures(str(space), archs + len(table.models) + 5, in_chans=table.in_chans,
                                    num_classes=table.num_classes, seed=seed)
    return [c for c in pool if c.config_hash() not in seen][:archs]


def evaluate_table(path: str | Path, archs: int = 30, *, seed: int = 1000, regressor: str | None = None,
                   rounds: int = ROUNDS, configs: list[ArchConfig] | None = None,
                   on_measured: Callable[[int, int], None] | None = None,
                   on_arch: Callable[[dict[str, Any]], None] | None = None) -> TableEvaluation:
    """Measure ``archs`` architectures the table has not seen and compare with its predictor.

    With ``configs`` (a study's architectures: ``explore latency-table --evaluate T --study RUN``),
    those are measured instead of a sample: on the target device, how right were the predictions a
    study optimised?

    Args:
        path: the table file (written on the device this runs on, for a meaningful comparison).
        archs: held-out architectures (>= 3).
        seed: sampling seed (not the table's; the table's architectures are skipped anyway).
        regressor: force ``linear`` or ``trees`` (None: :func:`fit_predictor` chooses).
        rounds: interleaved measurement rounds of every architecture (its fastest counts).
        configs: measure these instead of sampling ``archs`` (``archs`` and ``seed`` unused).
        on_measured: called with (measurements done, total) after each.
        on_arch: called with each finished row.

    Raises:
        ExploreError: ``--archs`` < 3; a bad table file (field ``--evaluate``); as :func:`build_table`.
    """
    if archs < 3 and configs is None:
        raise ExploreError("--archs", archs, "expected >= 3 held-out architectures")
    if configs is not None and not configs:
        raise ExploreError("--study", None, "a study with complete trials (their architectures are measured)")
    if rounds < 1:
        raise ExploreError("--rounds", rounds, "expected >= 1 measurement round")
    table = LatencyTable.load(path, field="--evaluate").measured()
    protocol = table_protocol(table)
    differences = table_differences(table, None, protocol.device)
    _use_table_calibration(table, protocol)
    choice: dict[str, float] = {}
    predictor = fit_predictor(table, regressor, on_choice=choice.update)
    macs_fit = _macs_fit(table)  # raises before anything is measured (too few calibration models)
    seen = {ArchConfig.from_json(m["config"]).config_hash() for m in table.models}
    from_sample = configs is None
    configs = list(configs) if configs is not None else _held_out(table, archs, seed, seen)
    measured, calibration_rounds = _measure_with_calibration(table, configs, protocol, rounds, on_measured)
    calibration_now = [min(timed, key=lambda m: m.median_ms) for timed in calibration_rounds]
    # the same predictor with its correction fitted on this session's figures of the calibration models:
    # what the table predicts once the machine's state of the day is known (no held-out figure is used)
    session = copy.copy(predictor)
    session.calibrate_on_models([m.median_ms for m in calibration_now])
    rows = []
    for i, (config, timed) in enumerate(zip(configs, measured)):
        rows.append(_row(i, config, timed, predictor, session, macs_fit))
        if on_arch is not None:
            on_arch(rows[-1])
    frame = pd.DataFrame(rows)
    calibration = calibration_rows(table, calibration_rounds)
    stats = evaluation_stats(frame, calibration)
    meta = {"table": Path(path).name, "table_path": _given_path(path), "space": table.space, "protocol": table.protocol,
            "device": device_name(protocol.device), "table_device": table.device_name, "archs": len(configs),
            "seed": seed if from_sample else None, "rounds": rounds,
            "table_units": len(table.units), "table_models": len(table.models), "sampling": table.sampling,
            "versions": table.versions, "session_versions": library_versions(protocol.onnx), "figure": protocol.figure,
            "reference_calibration_ms": table.reference.get("median_ms") if table.reference else None,
            "settings": {"archs": archs, "seed": seed, "regressor": regressor, "rounds": rounds,
                         "architectures": "sampled" if from_sample else "given"}}
    correction = {"table": _correction_of(predictor), "session": _correction_of(session),
                  "macs_fit": {"a": macs_fit[0], "b": macs_fit[1]}}
    return TableEvaluation(frame, stats, predictor.regressor, choice, differences, meta, calibration, correction)


def _given_path(path: str | Path) -> str:
    """The table file's path as a report stores it: as given when relative, relative to the current
    folder when under it, else its name only (never an absolute path)."""
    given = Path(path)
    if not given.is_absolute():
        return given.as_posix()
    try:
        return given.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return given.name


def _correction_of(predictor: Any) -> dict[str, Any]:
    """A predictor's fitted correction: ms per batch ≈ Σ_kind weights[kind] · Σ unit ms + offset
    (``default_weight`` for the kinds without a weight of their own)."""
    return {"weights": {k: float(w) for k, w in sorted(predictor.weights.items())},
            "default_weight": float(predictor.default_weight), "offset": float(predictor.offset)}


def calibration_rows(table: LatencyTable, timed: list[list[Measurement]]) -> list[dict[str, Any]]:
    """The table's calibration models as re-timed in this session, one dict per model in the table's order.

    Args:
        table: the evaluated table.
        timed: per calibration model (the table's order), this session's measurements in round order.

    Returns:
        Dicts of ``model`` (index in the table), ``summary``, ``config_hash``, ``table (ms/img)`` (the
        table's figure), ``session (ms/img)`` and ``session median (ms)`` (per batch) of the fastest
        round, ``contended`` (of that round), and ``rounds``: every round's ``median_ms`` (per batch),
        ``latency_ms_per_img`` and ``contended``.
    """
    out = []
    for i, (model, rounds_of_one) in enumerate(zip(table.models, timed)):
        config = ArchConfig.from_json(model["config"])
        best = min(rounds_of_one, key=lambda m: m.median_ms)
        out.append({"model": i, "summary": config.summary(), "config_hash": config.config_hash(),
                    "table (ms/img)": float(model["latency_ms_per_img"]),
                    "session (ms/img)": best.latency_ms_per_img, "session median (ms)": best.median_ms,
                    "contended": bool(best.contended),
                    "rounds": [{"median_ms": m.median_ms, "latency_ms_per_img": m.latency_ms_per_img,
                                "contended": bool(m.contended)} for m in rounds_of_one]})
    return out


def evaluation_stats(rows: pd.DataFrame, calibration: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The figures an evaluation report shows, from its rows and its calibration models' re-timing.

    Args:
        rows: :attr:`TableEvaluation.rows` (``measured``, ``predicted``, ``recalibrated``, ``MACs fit``
            (ms/img) and ``macs`` columns).
        calibration: :func:`calibration_rows` (``table (ms/img)`` and ``session (ms/img)`` of each model).

    Returns:
        :attr:`TableEvaluation.stats`: ``predictor``, ``macs`` (its τ of the MAC counts themselves),
        ``recalibrated`` and ``drift`` (the table's figures against this session's, with ``mean_signed``).
    """
    measured = rows["measured (ms/img)"].tolist()
    stats = {"predictor": prediction_stats(measured, rows["predicted (ms/img)"].tolist()),
             "macs": prediction_stats(measured, rows["MACs fit (ms/img)"].tolist()),
             "recalibrated": prediction_stats(measured, rows["recalibrated (ms/img)"].tolist()),
             "drift": _drift([float(c["table (ms/img)"]) for c in calibration],
                             [float(c["session (ms/img)"]) for c in calibration])}
    stats["macs"]["kendall_tau"] = kendall_tau(measured, rows["macs"].tolist())
    return stats


def _measure_with_calibration(table: LatencyTable, configs: list[ArchConfig], protocol: Protocol, rounds: int,
                              on_measured: Callable[[int, int], None] | None) -> tuple[list[Measurement],
                                                                                         list[list[Measurement]]]:
    """The fastest round of each of ``configs``, and every round of the table's calibration models,
    measured together in interleaved rounds (as the table's entries were). The calibration models are
    measured again with the held-out ones: how far this session's figures are from the table's for the
    same models (the machine's drift between sessions) bounds what any predictor can reach here."""
    every = configs + [ArchConfig.from_json(m["config"]) for m in table.models]
    timed = time_rounds([(build(config), dataclasses.replace(protocol, img_size=config.img_size,
                                                             in_chans=config.in_chans)) for config in every],
                        rounds, on_measured)
    best = [min(rounds_of_one, key=lambda m: m.median_ms) for rounds_of_one in timed[:len(configs)]]
    return best, timed[len(configs):]


def _drift(table_ms: list[float], now_ms: list[float]) -> dict[str, float]:
    """The table's figures of its calibration models (ms/img) against this session's:
    :func:`prediction_stats` and ``mean_signed`` (%, table over now), the noise floor between sessions."""
    drift = prediction_stats(now_ms, table_ms)
    drift["mean_signed"] = (sum(then / now - 1 for then, now in zip(table_ms, now_ms))
                            / max(1, len(now_ms)) * 100.0)
    return drift


def _row(i: int, config: ArchConfig, measured: Measurement, predictor: Any, session: Any,
         macs_fit: tuple[float, float]) -> dict[str, Any]:
    """One held-out architecture: measured, predicted, recalibrated and MACs-fit latency (ms/img) and errors (%)."""
    params, macs = count_model(build(config), config.img_size, config.in_chans)
    units = config_units(config)
    predicted = predictor.predict_units(units)
    recalibrated = session.predict_units(units)
    by_macs = macs_fit[0] * macs + macs_fit[1]
    ms = measured.latency_ms_per_img
    return {"arch": i, "summary": config.summary(), "params": params, "macs": macs,
            "measured (ms/img)": ms, "predicted (ms/img)": predicted, "error (%)": (predicted / ms - 1) * 100.0,
            "recalibrated (ms/img)": recalibrated, "recalibrated error (%)": (recalibrated / ms - 1) * 100.0,
            "MACs fit (ms/img)": by_macs, "MACs error (%)": (by_macs / ms - 1) * 100.0,
            "contended": measured.contended, "config": config.to_json(sort_keys=True)}
