"""Running a recipe: every variant's params, MACs, latency and proxy top-1 over seeds, written as
rows into the run folder; a stopped run resumes (rows of the same budget are reused).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from explore.analysis.ablation.recipe import Recipe, Variant
from explore.arch import ArchConfig
from explore.device import resolve_device
from explore.errors import ConfigError, NonFiniteLossError
from explore.evaluate import evaluate_candidate
from explore.measure import PROTOCOLS, get_protocol
from explore.records import CONFIG_HASH
from explore.resolution import resolution, resolution_label
from explore.resources import display_path, write_atomically
from explore.stats import ACC_MIN_EFFECT, open_rows

__all__ = ["AblationRun", "run_recipe"]


def _match_macs(recipe: Recipe, variant: Variant, target: int, img: int) -> tuple[Variant, float]:
    """Scale ``recipe.match_field`` in every stage of ``variant`` (bisection on one factor) so its
    MACs at ``img`` pixels come within ``match_tolerance`` of ``target``; returns the new variant
    and the factor."""
    name = recipe.match_field
    assert name is not None

    def scaled(factor: float) -> ArchConfig:
        return dataclasses.replace(variant.config, stages=tuple(
            dataclasses.replace(s, **{name: getattr(s, name) * factor}) for s in variant.config.stages))

    def macs(factor: float) -> int:
        return evaluate_candidate(recipe.measure_config(dataclasses.replace(variant, config=scaled(factor)), img)).macs

    low, high = 1 / 16, 16.0
    best, best_err = 1.0, abs(macs(1.0) / target - 1)
    for _ in range(24):
        if best_err <= recipe.match_tolerance:
            break
        mid = math.sqrt(low * high)
        try:
            value = macs(mid)
        except ConfigError:
            high = mid
            continue
        err = abs(value / target - 1)
        if err < best_err:
            best, best_err = mid, err
        if value < target:
            low = mid
        else:
            high = mid
    return dataclasses.replace(variant, config=scaled(best)), best


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Every row of a run file (rows of other budgets are kept in the file, not reused)."""
    if not path.is_file():
        return []
    return pd.read_csv(path).to_dict("records")


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    write_atomically(path, lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))


def _row_key(row: Mapping[str, Any], *fields: str) -> tuple:
    return tuple(int(row[f]) if f == "seed" else resolution_label(row[f]) if f == "img_size" else str(row[f])
                 for f in fields)


def _top1_by_seed(variants: list[Variant], hashes: Mapping[str, str], train_key: str,
                  rows: list[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """variant -> seed -> top-1 of this budget's successful rows."""
    names = {hashes[v.name]: v.name for v in variants}
    out: dict[str, dict[int, float]] = {v.name: {} for v in variants}
    for r in rows:
        name = names.get(str(r[CONFIG_HASH]))
        if str(r["key"]) == train_key and name is not None and str(r["variant"]) == name and r.get("status") == "ok":
            out[name][int(r["seed"])] = float(r["top1"])
    return out


def _sequential_step(recipe: Recipe, variants: list[Variant], hashes: Mapping[str, str], train_key: str,
                     rows: list[dict[str, Any]], done: set[tuple]) -> tuple[list[tuple[Variant, int]],
                                                                        dict[str, dict[str, Any]]]:
    """Sequential seeds, one step: the next seed of every row still open (and of the baseline where
    it lacks it), and per non-baseline variant its decision
    (:func:`~explore.stats.open_rows`) and the seeds it used.

    ``done`` holds the (key, variant, config hash, seed) of every row already run, failed ones
    included, so a seed whose run failed is not tried again.
    """
    results = _top1_by_seed(variants, hashes, train_key, rows)
    states = open_rows(results, recipe.baseline.name, ACC_MIN_EFFECT, recipe.budget.max_seeds or 0)
    base = recipe.baseline
    by_name = {v.name: v for v in variants}
    todo = []
    for name, state in states.items():
        untried = [s for s in range(recipe.budget.max_seeds or 0) if (train_key, name, hashes[name], s) not in done]
        if state != "open" or not untried:  # decided, or every seed up to MAX ran (some failed)
            continue
        todo.append((by_name[name], untried[0]))
        if (train_key, base.name, hashes[base.name], untried[0]) not in done:
            todo.append((base, untried[0]))
    unique = {(v.name, seed): (v, seed) for v, seed in todo}
    ordered = sorted(unique.values(), key=lambda item: (not item[0].baseline, item[1], item[0].name))
    return ordered, {name: {"state": state, "seeds": len(results[name])} for name, state in states.items()}


@dataclass(frozen=True)
class AblationRun:
    """Rows of one :func:`run_recipe`: ``variants`` (one per variant: params, MACs, config),
    ``training`` (one per variant x seed: top-1 %, seconds, status) and ``measurements`` (one per
    variant x protocol x resolution: ms per batch, img/s, IQR), plus run ``meta``."""

    recipe: Recipe
    variants: pd.DataFrame
    training: pd.DataFrame
    measurements: pd.DataFrame
    meta: dict[str, Any]


def run_recipe(recipe: Recipe, out: str | Path, *, device: str = "cpu",
               progress: Callable[[str], None] | None = None, remeasure: bool = False) -> AblationRun:
    """Run every variant of a recipe and write the rows into ``out``.

    Every variant is evaluated by :func:`explore.evaluate.evaluate_candidate`. Training (when
    ``recipe.budget.train``): every variant x seed with the proxy loop on ``device`` (AdamW, warm-up
    + cosine, label smoothing), on one data subset. Measurement:
    every protocol of ``recipe.measure`` at every resolution, on a 3-channel 1000-class copy of the
    variant; protocols for CUDA run only when ``device`` is CUDA (they are listed as skipped
    otherwise). Params and MACs (fvcore, norms not counted) at the first measurement resolution.

    With ``recipe.budget.max_seeds`` (``seeds = "auto:MAX"``) the seeds are sequential: after seeds 0
    and 1, each row whose paired interval of Δ top-1 is still open gets the next seed (the baseline
    too, where it lacks it), until every row is decided or has MAX seeds; ``run.json`` records each
    row's state and seeds under ``sequential``. A stopped run resumes where it stopped.

    Files in ``out``: ``variants.csv``, ``training.csv``, ``measurements.csv``, ``run.json``.
    A training row already there for the same variant config, seed and budget
    (:meth:`Recipe.training_key`), or a measurement row for the same config, protocol, resolution
    and settings, is reused, not re-run; rows of other budgets stay in the files. ``remeasure``
    measures again (e.g. on a machine that is now quiet) and replaces this run's measurement rows.

    Raises:
        DeviceError: ``device`` is unknown or unavailable.
        DataError: the dataset cannot be loaded.
    """
    say = progress or (lambda _msg: None)
    dev = resolve_device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    variants, variants_frame = _variants(recipe, say)
    variants_frame.to_csv(out / "variants.csv", index=False)
    hashes = {v.name: v.config.config_hash() for v in variants}
    used_training, data_meta = _training(recipe, variants, hashes, out / "training.csv", dev, say)
    used_measurements, skipped = _measurements(recipe, variants, hashes, out / "measurements.csv", dev, remeasure, say)
    meta = {
        "recipe": recipe.name, "title": recipe.title, "recipe_file": display_path(recipe.path, "studies"), "fingerprint": recipe.fingerprint(),
        "device": str(dev), "budget": dataclasses.asdict(recipe.budget), "measure": dataclasses.asdict(recipe.measure),
        "skipped_protocols": skipped, "seconds": round(time.time() - started, 1), **data_meta,
    }
    (out / "run.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    return AblationRun(recipe, variants_frame, pd.DataFrame(used_training), pd.DataFrame(used_measurements), meta)


def _variants(recipe: Recipe, say: Callable[[str], None]) -> tuple[list[Variant], pd.DataFrame]:
    """The variants as run (MACs matched to the baseline's where the recipe asks) and their rows:
    params and MACs at the first measurement resolution, attention share, match factor, config."""
    img0 = recipe.measure.img_sizes[0]
    variants = list(recipe.variants)
    factors = {v.name: 1.0 for v in variants}
    if recipe.match_field:
        target = evaluate_candidate(recipe.measure_config(recipe.baseline, img0)).macs
        for i, v in enumerate(variants):
            if not v.baseline:
                variants[i], factors[v.name] = _match_macs(recipe, v, target, img0)
                say(f"{v.name}: {recipe.match_field} x {factors[v.name]:.3f} to match the baseline's MACs")
    variant_rows = []
    for v in variants:
        counted = evaluate_candidate(recipe.measure_config(v, img0))
        attn_blocks = sum(s.depth for s in v.config.stages if s.token_mixer != "none")
        total_blocks = sum(s.depth for s in v.config.stages) or 1
        variant_rows.append({
            "variant": v.name, "label": v.label, "baseline": v.baseline, "x": v.x,
            "params": counted.params, "macs": counted.macs, "macs_img_size": img0,
            "attention_share": attn_blocks / total_blocks, "match_factor": factors[v.name],
            "overrides": json.dumps(v.overrides, sort_keys=True), "config": v.config.to_json(sort_keys=True),
            "paper": json.dumps(v.paper, sort_keys=True),
        })
    return variants, pd.DataFrame(variant_rows)


_TRAIN_FIELDS = ("key", "variant", CONFIG_HASH, "seed")
_MEASURE_FIELDS = ("key", "variant", CONFIG_HASH, "protocol", "img_size")


def _training(recipe: Recipe, variants: list[Variant], hashes: Mapping[str, str], path: Path, dev: Any,
              say: Callable[[str], None]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Proxy-train every variant x seed not in ``path`` yet (seeds added sequentially where the recipe
    asks); returns this budget's rows and what the run says about its data (and sequential states)."""
    train_key = recipe.training_key()
    training_rows = _read_rows(path)
    done = {_row_key(r, *_TRAIN_FIELDS) for r in training_rows}
    wanted = {(train_key, v.name, hashes[v.name], seed) for v in variants for seed in recipe.budget.seeds}
    if not recipe.budget.train:
        return [], {}
    b = recipe.budget
    data = b.load_data(b.data_seed)
    data_meta: dict[str, Any] = {"dataset": b.dataset, "train_images": len(data.train), "val_images": len(data.val),
                                 "task": b.task}
    todo = [(v, seed) for v in variants for seed in b.seeds]
    while todo:
        for v, seed in todo:
            wanted.add((train_key, v.name, hashes[v.name], seed))
            if (train_key, v.name, hashes[v.name], seed) in done:
                continue
            training_rows.append(_train_row(recipe, v, seed, hashes[v.name], data, dev))
            done.add((train_key, v.name, hashes[v.name], seed))
            _write_rows(path, training_rows)
            row = training_rows[-1]
            say(f"{v.name} seed {seed}: {'mIoU' if b.task == 'segmentation' else 'top-1'} {row['top1']:.2f} % "
                f"({row['status']})")
        todo = []
        if b.max_seeds:
            todo, data_meta["sequential"] = _sequential_step(recipe, variants, hashes, train_key, training_rows, done)
    if b.max_seeds:  # rows of seeds a resumed run added earlier
        wanted |= {_row_key(r, *_TRAIN_FIELDS) for r in training_rows if str(r["key"]) == train_key
                   and str(r[CONFIG_HASH]) == hashes.get(str(r["variant"])) and int(r["seed"]) < b.max_seeds}
    return [r for r in training_rows if _row_key(r, *_TRAIN_FIELDS) in wanted], data_meta


def _train_row(recipe: Recipe, v: Variant, seed: int, config_hash: str, data: Any, dev: Any) -> dict[str, Any]:
    """One training row: the accuracy column (top-1, or mIoU for segmentation), seconds, throughput, steps."""
    config = recipe.train_config(v, data.in_chans, data.num_classes)
    row = {"key": recipe.training_key(), "variant": v.name, CONFIG_HASH: config_hash, "seed": seed,
           "img_size": config.img_size}
    try:
        result = evaluate_candidate(config, seed=seed, count=False, data=data, recipe=recipe.budget.proxy_recipe(),
                                    device=dev).proxy
        row.update(status="ok", top1=result.score, train_seconds=result.train_seconds,
                   train_img_s=result.train_img_s, steps=result.steps)
    except NonFiniteLossError as exc:
        row.update(status="non-finite loss", top1=float("nan"), train_seconds=float("nan"),
                   train_img_s=float("nan"), steps=exc.step)
    return row


def _measurements(recipe: Recipe, variants: list[Variant], hashes: Mapping[str, str], path: Path, dev: Any,
                  remeasure: bool, say: Callable[[str], None]) -> tuple[list[dict[str, Any]], list[str]]:
    """Measure every variant with every protocol at every resolution not in ``path`` yet (all of this
    run's again with ``remeasure``); returns this run's rows and the protocols skipped (CUDA ones on a
    CPU run)."""
    measure_key = recipe.measurement_key()
    measurement_rows = _read_rows(path)
    if remeasure:
        this_run = {(measure_key, v.name, hashes[v.name], p, resolution_label(img)) for v in variants
                    for p in recipe.measure.protocols for img in recipe.measure.img_sizes}
        measurement_rows = [r for r in measurement_rows if _row_key(r, *_MEASURE_FIELDS) not in this_run]
    measured = {_row_key(r, *_MEASURE_FIELDS) for r in measurement_rows}
    cuda = {name for name in recipe.measure.protocols if PROTOCOLS[name].device.startswith("cuda")}
    skipped = [name for name in recipe.measure.protocols if name in cuda and dev.type != "cuda"]
    runnable = [name for name in recipe.measure.protocols if name not in skipped]
    wanted = set()
    for img in recipe.measure.img_sizes:
        height, width = resolution(img)
        protocols = {name: get_protocol(name, img_size=height, img_width=width if width != height else None,
                                        batch_size=recipe.measure.batch_size, repeats=recipe.measure.repeats,
                                        device=str(dev) if name in cuda else None)
                     for name in runnable}
        label = resolution_label(img)
        for v in variants:
            for name, protocol in protocols.items():
                row_key = (measure_key, v.name, hashes[v.name], name, label)
                wanted.add(row_key)
                if row_key in measured:
                    continue
                result = evaluate_candidate(recipe.measure_config(v, img), count=False, protocol=protocol).latency
                measurement_rows.append({
                    "key": measure_key, "variant": v.name, CONFIG_HASH: hashes[v.name], "protocol": name,
                    "img_size": label, "batch_size": result.batch_size, "median_ms": result.median_ms,
                    "iqr_ms": result.iqr_ms, "throughput_img_s": result.throughput_img_s,
                    "latency_ms_per_img": result.latency_ms_per_img, "device_name": result.device_name,
                })
                _write_rows(path, measurement_rows)
                say(f"{v.name} {name} @{label}: {result.median_ms:.2f} ms/batch of {result.batch_size}, "
                    f"{result.throughput_img_s:.1f} img/s")
    return [r for r in measurement_rows if _row_key(r, *_MEASURE_FIELDS) in wanted], skipped


def load_run(folder: str | Path) -> tuple[AblationRun, Recipe]:
    """The ablation run stored in ``folder`` (``run.json``, ``variants.csv``, ``training.csv``,
    ``measurements.csv``), as :func:`run_recipe` returned it, without training or timing anything.

    The recipe as run is the recipe named in ``run.json`` with the stored budget, measurement and
    variants (MACs-matched configs as stored); the rows are those of that budget, as
    :func:`run_recipe` selects them. Used to re-render a report from its data
    (``explore rerender``).

    Args:
        folder: an ablation run folder (for example ``reports/ablation_cga_table6_cpu``).

    Returns:
        (the run, the recipe as loaded from its file, for :func:`~explore.analysis.ablation.report_meta`).

    Raises:
        ConfigError: a file is missing or unreadable, or the recipe named in ``run.json`` cannot be loaded.
    """
    from explore.analysis.ablation.recipe import Budget, MeasureSpec, load_recipe

    folder = Path(folder)
    try:
        meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        variants_frame = pd.read_csv(folder / "variants.csv")
        training = pd.read_csv(folder / "training.csv") if (folder / "training.csv").exists() else pd.DataFrame()
        measurements = (pd.read_csv(folder / "measurements.csv") if (folder / "measurements.csv").exists()
                        else pd.DataFrame())
    except (OSError, ValueError) as exc:
        raise ConfigError("folder", str(folder), f"an ablation run with readable run.json and CSV files ({exc})") from None
    loaded = load_recipe(meta["recipe"])
    budget = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["budget"].items()}
    measure = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["measure"].items()}
    by_name = {v.name: v for v in loaded.variants}
    variants = tuple(dataclasses.replace(by_name[str(row["variant"])], config=ArchConfig.from_json(row["config"]))
                     for row in variants_frame.to_dict("records"))
    chosen = dataclasses.replace(loaded, budget=Budget(**budget), measure=MeasureSpec(**measure), variants=variants)
    hashes = {v.name: v.config.config_hash() for v in variants}
    if not training.empty:
        b = chosen.budget
        keep = (training["key"].astype(str) == chosen.training_key()) & (
            training[CONFIG_HASH].astype(str) == training["variant"].astype(str).map(hashes))
        keep &= training["seed"].astype(int) < b.max_seeds if b.max_seeds else training["seed"].astype(int).isin(b.seeds)
        training = training[keep].reset_index(drop=True)
    if not measurements.empty:
        skipped = set(meta.get("skipped_protocols") or ())
        labels = {resolution_label(img) for img in chosen.measure.img_sizes}
        keep = ((measurements["key"].astype(str) == chosen.measurement_key())
                & (measurements[CONFIG_HASH].astype(str) == measurements["variant"].astype(str).map(hashes))
                & measurements["protocol"].isin([p for p in chosen.measure.protocols if p not in skipped])
                & measurements["img_size"].astype(str).map(resolution_label).isin(labels))
        measurements = measurements[keep].reset_index(drop=True)
    return AblationRun(chosen, variants_frame, training, measurements, meta), loaded
