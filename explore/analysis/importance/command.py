"""``explore importance``: resolve, validate, train (or load), score, prune, reallocate, measure,
enqueue; and the command line that reproduces a run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from explore.analysis.importance.plan import PruningPlan, check_target, plan_pruning
from explore.analysis.importance.realloc import paper_trend, retained_frame, sensitivity_frame, suggest_config
from explore.analysis.importance.scores import taylor_scores
from explore.analysis.importance.surgery import prune_model
from explore.analysis.importance.units import Unit, find_units
from explore.arch import ArchConfig, ModelSpec, resolve_arch
from explore.device import resolve_device
from explore.errors import ExploreError
from explore.evaluate import RunBudget, evaluate_candidate
from explore.measure import count_model, device_name, get_protocol, time_model
from explore.nn import FFN, CascadedGroupAttention, MBConv, MultiHeadSelfAttention, build
from explore.records import importance_attrs
from explore.reproduce import command_line as _command_line
from explore.resources import safe_name
from explore.search import open_study, study_space, trial_config
from explore.space import space_params
from explore.train import check_dataset, evaluate, load_dataset, to_model_input

__all__ = ["ImportanceSettings", "PreparedImportance", "ImportanceResult", "resolve_model", "prepare_importance",
           "run_importance", "command_line", "save_checkpoint"]


def resolve_model(spec: str) -> ModelSpec:
    """``--model``: a preset name, a config file (.json/.toml) or ``RUN_DIR:TRIAL`` of a study
    (:func:`explore.arch.resolve_arch` with :func:`explore.search.trial_config`).

    Returns:
        (config, a short name for folders and titles, whether it is a preset: presets are built
        at 224 x 224 and take the command's image size).

    Raises:
        ExploreError: field ``--model``: none of the three, no such trial, or a trial without a
            stored config; ConfigError from an invalid config file.
    """
    return resolve_arch(spec, "--model", load_trial=trial_config)


@dataclass(frozen=True, kw_only=True)
class ImportanceSettings(RunBudget):
    """Everything ``explore importance`` needs.

    Attributes:
        model: preset, config file or ``RUN_DIR:TRIAL``.
        dataset, data_root, max_train, max_val, epochs, batch_size, lr, seed, device: the shared
            budget (:class:`explore.evaluate.RunBudget`; this command's defaults: 1 epoch over 5000
            training images, top-1 on 1000); the suggested architecture trains with the same;
            latency always follows the ``cpu-latency`` protocol.
        target: fraction of the prunable params (``by="params"``) or MACs to remove, in (0, 1).
        by: ``params`` or ``macs``.
        rank: ``per-cost`` or ``score`` (see :func:`explore.analysis.importance.plan_pruning`).
        img_size: input side; None: 64 for presets, the config's own otherwise.
        score_batches: batches (of ``batch_size`` training images, no augmentation) the Taylor
            scores are summed over.
        checkpoint: a state dict (``torch.save``) to load instead of training.
        save_checkpoint: write ``checkpoint.pt`` of the trained model into ``out``.
        retrain: train the suggested architecture with the same budget for its top-1.
        latency_repeats: timed runs of each latency measurement (CPU, batch 16, one thread).
        out: output folder; None: ``runs/importance-<name>``.
        enqueue: a study run folder to enqueue the suggested architecture into.
    """

    model: str
    max_train: int | None = 5000
    max_val: int | None = 1000
    epochs: float = 1.0
    target: float = 0.5
    by: str = "params"
    rank: str = "per-cost"
    img_size: int | None = None
    score_batches: int = 8
    checkpoint: str | None = None
    save_checkpoint: bool = False
    retrain: bool = True
    latency_repeats: int = 20
    out: str | None = None
    enqueue: str | None = None


@dataclass(frozen=True)
class PreparedImportance:
    """Validated inputs: the config to analyse, its name, the output folder, the loaded checkpoint
    state (or None) and the study to enqueue into (or None)."""

    config: ArchConfig
    name: str
    out: Path
    state_dict: Mapping[str, torch.Tensor] | None
    study: Any | None


def prepare_importance(settings: ImportanceSettings) -> PreparedImportance:
    """Check every input before anything runs or is written.

    Raises:
        ExploreError: named by option: ``--model`` (unknown, bad STUDY:TRIAL), ``--target``,
            ``--by``, ``--img-size``, ``--score-batches``, ``--latency-repeats``, ``--dataset`` /
            ``--data-root``, ``--device``, ``--checkpoint`` (missing, unreadable, or not this
            model's state dict), ``--enqueue`` (not a study, or a space the model does not fit);
            ConfigError for an invalid config.
    """
    check_target(settings.target, settings.by, settings.rank)
    for name, value, low in (("--score-batches", settings.score_batches, 1),
                             ("--latency-repeats", settings.latency_repeats, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ExploreError(name, value, f"expected an integer >= {low}")
    if settings.img_size is not None and (isinstance(settings.img_size, bool) or not isinstance(settings.img_size, int)
                                          or settings.img_size < 16):
        raise ExploreError("--img-size", settings.img_size, "expected an integer >= 16 (pixels)")
    settings.proxy_recipe().validate()
    config, name, is_preset = resolve_model(settings.model)
    check_dataset(settings.dataset, settings.data_root)
    resolve_device(settings.device)
    # the dataset fixes channels and classes; peek at them cheaply (synthetic: tiny draw)
    meta = load_dataset(settings.dataset, settings.data_root, max_train=1, max_val=1)
    img_size = settings.img_size or (64 if is_preset else config.img_size)
    config = config.replace(img_size=img_size, in_chans=meta.in_chans, num_classes=meta.num_classes)
    if not any(isinstance(m, (CascadedGroupAttention, MultiHeadSelfAttention, FFN, MBConv))
               for m in build(config).modules()):
        raise ExploreError("--model", settings.model, "has no prunable attention, FFN or MBConv")
    state_dict = None
    if settings.checkpoint is not None:
        path = Path(settings.checkpoint)
        if not path.is_file():
            raise ExploreError("--checkpoint", settings.checkpoint, "no such file")
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is bad input here
            raise ExploreError("--checkpoint", settings.checkpoint, f"not a readable state dict ({exc})") from None
        try:
            build(config).load_state_dict(state_dict)
        except (RuntimeError, TypeError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExploreError("--checkpoint", settings.checkpoint, f"does not fit this model: {first}") from None
    study = None
    if settings.enqueue is not None:
        try:
            study = open_study(settings.enqueue)
            space = study_space(study, settings.enqueue)
        except ExploreError as exc:
            raise ExploreError("--enqueue", settings.enqueue, f"{exc.field} = {exc.value!r}: {exc.expected}"
                               if exc.field == "space_file" else exc.expected) from None
        space_params(config, space, in_chans=meta.in_chans, num_classes=meta.num_classes)  # fits at all?
    out = Path(settings.out) if settings.out else Path("runs") / safe_name(f"importance-{name}", fallback="model")
    return PreparedImportance(config=config, name=name, out=out, state_dict=state_dict, study=study)


@dataclass
class ImportanceResult:
    """Everything :func:`run_importance` computed (rendered by :func:`explore.report.write_importance_report`).

    Attributes:
        settings, config, name: the inputs (config with the dataset's image size, channels, classes).
        units, scores, plan, retained: the analysis (see the functions of this module).
        backends: unit path -> surgery back-end.
        suggested: the reallocated config.
        comparison: rows original / pruned / suggested: params, MACs, latency (ms), top-1 (%).
        trend: :func:`paper_trend` of ``retained``.
        sensitivity: :func:`sensitivity_frame` (the trend under both rankings and other targets).
        device_name, seconds: where and how long (seconds per phase).
        enqueued: the enqueue outcome (params, notes, the config the study will build), or None.
        enqueue_error: why the suggested point could not be enqueued (the report is still written).
        trained_state: the trained model's state dict (for ``--save-checkpoint``).
    """

    settings: ImportanceSettings
    config: ArchConfig
    name: str
    units: list[Unit]
    scores: pd.DataFrame
    plan: PruningPlan
    retained: pd.DataFrame
    backends: dict[str, str]
    suggested: ArchConfig
    comparison: pd.DataFrame
    trend: dict[str, Any]
    sensitivity: pd.DataFrame
    device_name: str
    seconds: dict[str, float]
    enqueued: dict[str, Any] | None = None
    enqueue_error: str | None = None
    trained_state: dict[str, torch.Tensor] | None = None


def _score_batches(data: Any, img_size: int, batch_size: int, n_batches: int, seed: int,
                   device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``n_batches`` batches of training images (a seeded permutation, no augmentation)."""
    n = len(data.train.labels)
    gen = torch.Generator().manual_seed(int(seed) + 1)
    perm = torch.randperm(n, generator=gen)
    size = min(batch_size, n)
    for i in range(n_batches):
        idx = perm[(i * size) % n : (i * size) % n + size]
        if idx.numel() == 0:
            break
        x = to_model_input(data.train.images[idx].to(device), img_size, data.mean, data.std)
        yield x, data.train.labels[idx].to(device)


def run_importance(settings: ImportanceSettings, prepared: PreparedImportance,
                   log: Callable[[str], None] = lambda _msg: None) -> ImportanceResult:
    """Train (or load) the model, score, prune, reallocate, measure, and optionally enqueue.

    Steps: proxy-train the model (:func:`explore.evaluate.evaluate_candidate`, or load ``--checkpoint``);
    Taylor scores over ``score_batches`` training batches; :func:`plan_pruning` to the target;
    :func:`prune_model`; the retained widths and :func:`suggest_config`; params, MACs (fvcore),
    latency (``cpu-latency`` protocol: CPU, batch 16, one thread, BN fused) and top-1 of the
    original, the pruned model (no fine-tuning) and the suggested architecture (trained from
    scratch with the same budget and seed, unless ``retrain`` is off); then
    ``study.enqueue_trial(params, skip_if_exists=True)`` when ``enqueue`` is set.

    Args:
        settings: the command's settings.
        prepared: from :func:`prepare_importance`.
        log: called with one line per finished phase.

    Returns:
        :class:`ImportanceResult`.

    Raises:
        ExploreError: a training failure on bad input (e.g. the data), or a suggested point the
            study's space cannot hold (``--enqueue``).
        NonFiniteLossError: the training loss diverged.
    """
    config = prepared.config
    device = resolve_device(settings.device)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    data = settings.load_data(settings.seed, img_size=config.img_size)
    model, top1 = _train_or_load(settings, prepared, data, device, log)
    seconds["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    units = find_units(model, config.img_size, config.in_chans)
    batches = _score_batches(data, config.img_size, settings.batch_size, settings.score_batches, settings.seed, device)
    scores = taylor_scores(model, units, batches)
    plan = plan_pruning(scores, units, settings.target, settings.by, settings.rank)
    pruned = prune_model(model.cpu(), units, plan, config.img_size, config.in_chans)
    retained = retained_frame(units, plan, scores)
    suggested = suggest_config(config, retained, name=f"{prepared.name}-realloc")
    trend = paper_trend(retained)
    sensitivity = sensitivity_frame(scores, units, settings.by)
    seconds["score_prune"] = time.perf_counter() - t0
    fallback = int((scores.drop_duplicates("unit")["source"] == "magnitude").sum())
    log(f"scored {len(scores)} groups in {len(units)} units ({fallback} by magnitude); removed "
        f"{plan.removed_params:,} of {plan.prunable_params:,} prunable params")

    t0 = time.perf_counter()
    rows = _comparison(settings, prepared, (model, top1), pruned.model, suggested, data, device, log)
    seconds["measure_retrain"] = time.perf_counter() - t0
    enqueued, enqueue_error = _enqueue(settings, prepared, suggested, log)
    trained_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()} if settings.save_checkpoint else None
    return ImportanceResult(
        settings=settings, config=config, name=prepared.name, units=units, scores=scores, plan=plan,
        retained=retained, backends=pruned.backends, suggested=suggested, comparison=pd.DataFrame(rows),
        trend=trend, sensitivity=sensitivity, device_name=device_name(device), seconds=seconds, enqueued=enqueued, enqueue_error=enqueue_error,
        trained_state=trained_state)


def _train_or_load(settings: ImportanceSettings, prepared: PreparedImportance, data: Any, device: torch.device,
                   log: Callable[[str], None]) -> tuple[nn.Module, float]:
    """The model to analyse and its top-1 (%): proxy-trained with the command's budget and seed, or
    the ``--checkpoint`` loaded (then evaluated); on ``device``."""
    config = prepared.config
    loaded = prepared.state_dict is not None
    original = evaluate_candidate(config, seed=settings.seed, count=False, data=None if loaded else data,
                                  recipe=settings.proxy_recipe(), device=device)
    model = original.model
    if loaded:
        model.load_state_dict(prepared.state_dict)
        top1 = evaluate(model, data.val, img_size=config.img_size, mean=data.mean, std=data.std, device=device)
        log(f"loaded {settings.checkpoint}: top-1 {top1:.2f}%")
    else:
        top1 = original.proxy.top1
        log(f"trained {prepared.name}: top-1 {top1:.2f}% in {original.proxy.train_seconds:.0f} s")
    model.to(device)
    return model, top1


def _comparison(settings: ImportanceSettings, prepared: PreparedImportance, original: tuple[nn.Module, float],
                pruned: nn.Module, suggested: ArchConfig, data: Any, device: torch.device,
                log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Rows original / pruned (no fine-tuning) / suggested (trained from scratch unless ``retrain`` is
    off): params, MACs, latency (``cpu-latency``: CPU, batch 16, one thread, BN fused; ms), top-1 (%)."""
    config = prepared.config
    protocol = get_protocol("cpu-latency", img_size=config.img_size, in_chans=config.in_chans,
                            repeats=settings.latency_repeats, warmup=min(5, settings.latency_repeats))
    rows = []

    def add_row(label: str, net: nn.Module, top: float | None, note: str) -> None:
        net = net.cpu()
        params, macs = count_model(net, config.img_size, config.in_chans)
        latency = time_model(net, protocol)
        rows.append({"model": label, "params": params, "macs": macs, "latency_ms": latency.median_ms,
                     "latency_iqr_ms": latency.iqr_ms, "top1": float("nan") if top is None else top, "note": note})

    add_row("original", original[0], original[1], "trained" if prepared.state_dict is None else "checkpoint")
    pruned_top1 = evaluate(pruned, data.val, img_size=config.img_size, mean=data.mean, std=data.std, device=device)
    add_row("pruned", pruned, pruned_top1, "no fine-tuning")
    realloc = evaluate_candidate(suggested, seed=settings.seed, protocol=protocol,
                                 data=data if settings.retrain else None, recipe=settings.proxy_recipe(), device=device)
    suggested_top1 = realloc.proxy.top1 if realloc.proxy is not None else None
    if suggested_top1 is not None:
        log(f"trained the suggested architecture: top-1 {suggested_top1:.2f}%")
    rows.append({"model": "suggested", "params": realloc.params, "macs": realloc.macs,
                 "latency_ms": realloc.latency.median_ms, "latency_iqr_ms": realloc.latency.iqr_ms,
                 "top1": float("nan") if suggested_top1 is None else suggested_top1,
                 "note": "trained from scratch" if settings.retrain else "not trained"})
    return rows


def _enqueue(settings: ImportanceSettings, prepared: PreparedImportance, suggested: ArchConfig,
             log: Callable[[str], None]) -> tuple[dict[str, Any] | None, str | None]:
    """Enqueue the suggested architecture into the ``--enqueue`` study (``skip_if_exists``): (what was
    enqueued, None), or (None, why the study's space cannot hold it: the report is still worth keeping),
    or (None, None) without ``--enqueue``."""
    if prepared.study is None:
        return None, None
    config = prepared.config
    space = study_space(prepared.study, settings.enqueue)
    try:
        params, built, notes = space_params(suggested, space, in_chans=config.in_chans, num_classes=config.num_classes)
    except ExploreError as exc:
        return None, str(exc)
    prepared.study.enqueue_trial(params, user_attrs=importance_attrs(prepared.name), skip_if_exists=True)
    log(f"enqueued into {settings.enqueue} ({len(notes)} values snapped)")
    return {"run_dir": settings.enqueue, "params": params, "notes": notes, "config": built.to_dict()}, None


def command_line(settings: ImportanceSettings) -> str:
    """The ``explore importance`` command line that reproduces a run (defaults left out)."""
    defaults = ImportanceSettings(model=settings.model)
    options: list[tuple[str, Any]] = []
    for attr in ("dataset", "data_root", "target", "by", "rank", "img_size", "epochs", "batch_size", "max_train",
                 "max_val", "score_batches", "seed", "device", "checkpoint", "latency_repeats", "out", "enqueue"):
        value = getattr(settings, attr)
        if value != getattr(defaults, attr):
            options.append((f"--{attr.replace('_', '-')}", 0 if value is None else value))
    options += [("--save-checkpoint", settings.save_checkpoint), ("--no-retrain", not settings.retrain)]
    return _command_line(["explore", "importance", "--model", settings.model], options)


def save_checkpoint(result: ImportanceResult, out_dir: Path) -> Path | None:
    """Write the trained model's state dict to ``out_dir/checkpoint.pt`` (``--save-checkpoint``;
    loadable with ``--checkpoint``, ``torch.load(..., weights_only=True)``); None when not asked."""
    if result.trained_state is None:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "checkpoint.pt"
    torch.save(result.trained_state, path)
    return path
