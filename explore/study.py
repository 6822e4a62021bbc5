"""The Optuna study: sample an architecture, measure it, train it briefly, record everything.

Objectives (multi-objective, Optuna's Pareto front): maximise proxy top-1 (%) and minimise
measured latency (ms per batch). Every trial stores, as user attributes, the config (JSON), its
hash, params, MACs, the latency protocol and spread, and the proxy training figures. Infeasible
sampled points are never built: the trial is PRUNED with the reason in ``pruned_reason``.

Storage defaults to an SQLite file in the run directory (``runs/<study-name>/study.db``); any
Optuna storage URL works with ``storage=``. Running the same study again resumes it: it goes on
until ``trials`` trials are COMPLETE.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from explore.config import ArchConfig
from explore.data import DatasetBundle, check_dataset, load_dataset
from explore.device import resolve_device
from explore.errors import ConfigError, ExploreError, NonFiniteLossError
from explore.measure import count_macs, count_params, measure_latency
from explore.models import build
from explore.space import SearchSpace, load_space
from explore.train import ProxyRecipe, seed_everything, train_proxy

__all__ = [
    "StudySettings",
    "StudySummary",
    "prepare_study",
    "run_study",
    "open_study",
    "trials_frame",
    "default_storage",
    "OBJECTIVES",
]

OBJECTIVES = ("top1", "latency_ms")
"""Metric names, in Optuna's order: top-1 (%, maximise) and latency (ms, minimise)."""
_DIRECTIONS = ("maximize", "minimize")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SAMPLERS = ("tpe", "nsga2", "random")


@dataclass(frozen=True)
class StudySettings:
    """Everything a study run needs; stored on the study so that a resumed run can be checked.

    Attributes:
        space: space name or file (``cga`` or a path).
        study_name: Optuna study name; also the run folder name (letters, digits, ``._-``).
        trials: number of COMPLETE trials to reach (pruned/failed ones do not count).
        out: parent folder of run folders.
        storage: Optuna storage URL; None -> ``sqlite:///<out>/<study_name>/study.db``.
        dataset, data_root, max_train, max_val: proxy data (see :mod:`explore.data`).
        device: ``cpu`` or ``cuda[:N]`` for both training and latency.
        seed: sampler seed; trial k trains with seed ``seed + k``.
        sampler: ``tpe`` (default, multivariate), ``nsga2`` or ``random``.
        epochs, batch_size, lr: proxy training budget (see :class:`explore.train.ProxyRecipe`).
        latency_batch, latency_threads, latency_repeats: latency protocol (CPU: the CGA paper's
            batch 16, one thread).
    """

    space: str = "cga"
    study_name: str = "cga"
    trials: int = 8
    out: str = "runs"
    storage: str | None = None
    dataset: str = "fashion_mnist"
    data_root: str | None = None
    max_train: int | None = 10000
    max_val: int | None = 2000
    device: str = "cpu"
    seed: int = 0
    sampler: str = "tpe"
    epochs: float = 2.0
    batch_size: int = 128
    lr: float = 2e-3
    latency_batch: int = 16
    latency_threads: int | None = 1
    latency_repeats: int = 20

    @property
    def run_dir(self) -> Path:
        """The run folder: ``<out>/<study_name>``."""
        return Path(self.out) / self.study_name

    @property
    def storage_url(self) -> str:
        """The storage URL in use (the default SQLite file in the run folder if none given)."""
        return self.storage or default_storage(self.run_dir)

    def validate(self) -> None:
        """Check the settings that can be checked without side effects.

        Raises:
            ExploreError: a bad study name, trial count, sampler or budget (names the option).
        """
        if not _NAME_RE.match(self.study_name):
            raise ExploreError("--study-name", self.study_name,
                               "expected 1-100 letters, digits, '.', '_' or '-', not starting with '.', '_' or '-'")
        if self.trials < 1:
            raise ExploreError("--trials", self.trials, "expected >= 1")
        if self.sampler not in SAMPLERS:
            raise ExploreError("--sampler", self.sampler, f"expected one of {', '.join(SAMPLERS)}")
        if not self.epochs > 0:
            raise ExploreError("--epochs", self.epochs, "expected > 0")
        if self.latency_batch < 1:
            raise ExploreError("--latency-batch", self.latency_batch, "expected >= 1")


def default_storage(run_dir: Path) -> str:
    """SQLite URL of ``<run_dir>/study.db``."""
    return f"sqlite:///{(run_dir / 'study.db').as_posix()}"


def _make_sampler(settings: StudySettings) -> optuna.samplers.BaseSampler:
    if settings.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=settings.seed)
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=settings.seed)
    return optuna.samplers.TPESampler(seed=settings.seed, multivariate=True, n_startup_trials=8)


@dataclass(frozen=True)
class StudySummary:
    """Counts at the end of a run: states over the whole study, and the wall time of this run (s)."""

    study_name: str
    run_dir: str
    storage: str
    complete: int
    pruned: int
    failed: int
    wall_seconds: float


def prepare_study(settings: StudySettings) -> tuple[SearchSpace, Any]:
    """Validate every input before anything is written: settings, device, space, dataset.

    Returns:
        (space, torch.device).

    Raises:
        ExploreError: (or a subclass) naming the offending option and value.
    """
    settings.validate()
    device = resolve_device(settings.device)
    space = load_space(settings.space)
    check_dataset(settings.dataset, settings.data_root)
    return space, device


def _open(settings: StudySettings, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if settings.storage is None:
        settings.run_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=settings.study_name,
        storage=settings.storage_url,
        directions=list(_DIRECTIONS),
        sampler=sampler,
        load_if_exists=True,
    )
    return study


def _check_resume(study: optuna.Study, settings: StudySettings, space: SearchSpace) -> None:
    """A resumed study must keep its space and data; other settings may change (and are recorded)."""
    stored = study.user_attrs.get("settings")
    if stored is None:
        with warnings.catch_warnings():  # set_metric_names is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(OBJECTIVES))
        stored = asdict(settings)
        if stored["storage"]:
            stored["storage"] = mask_password(stored["storage"])
        study.set_user_attr("settings", stored)
        study.set_user_attr("space_name", space.name)
        study.set_user_attr("space_file", str(space.path))
        return
    for key in ("dataset", "max_train", "max_val"):
        if stored.get(key) != getattr(settings, key):
            raise ExploreError(f"--{key.replace('_', '-')}", getattr(settings, key),
                               f"study {settings.study_name!r} was run with {stored.get(key)!r}; "
                               "use another --study-name for a different setting")
    if study.user_attrs.get("space_name") != space.name:
        raise ExploreError("--space", settings.space,
                           f"study {settings.study_name!r} was run with space {study.user_attrs.get('space_name')!r}")


def _count(study: optuna.Study, state: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=(state,)))


def make_objective(space: SearchSpace, data: DatasetBundle, settings: StudySettings,
                   device: Any) -> Callable[[optuna.Trial], tuple[float, float]]:
    """The Optuna objective: sample -> validate -> build -> params/MACs -> latency -> proxy top-1.

    Raises (inside the trial, handled by Optuna):
        optuna.TrialPruned: infeasible point or non-finite training loss (reason stored on the trial).
    """
    recipe = ProxyRecipe(epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        try:
            config = space.sample(trial, in_chans=data.in_chans, num_classes=data.num_classes)
        except ConfigError as exc:
            trial.set_user_attr("pruned_reason", f"infeasible: {exc}")
            raise optuna.TrialPruned(str(exc)) from None
        trial.set_user_attr("config", config.to_json(sort_keys=True))
        trial.set_user_attr("config_hash", config.config_hash())
        seed = settings.seed + trial.number
        seed_everything(seed)
        model = build(config)
        trial.set_user_attr("params", count_params(model))
        trial.set_user_attr("macs", count_macs(model, config.img_size, config.in_chans))
        latency = measure_latency(model, config.img_size, config.in_chans, batch_size=settings.latency_batch,
                                  device=device, repeats=settings.latency_repeats, threads=settings.latency_threads)
        for key, value in latency.as_attrs().items():
            trial.set_user_attr(key, value)
        try:
            result = train_proxy(model, data, img_size=config.img_size, recipe=recipe, device=str(device), seed=seed)
        except NonFiniteLossError as exc:
            trial.set_user_attr("pruned_reason", f"non-finite loss: {exc}")
            raise optuna.TrialPruned(str(exc)) from None
        for key, value in asdict(result).items():
            trial.set_user_attr(f"proxy_{key}", value)
        return result.top1, latency.median_ms

    return objective


def run_study(settings: StudySettings, *, on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
              prepared: tuple[SearchSpace, Any] | None = None) -> StudySummary:
    """Run (or resume) a study until ``settings.trials`` trials are COMPLETE.

    Args:
        settings: the run's settings.
        on_trial: called after every finished trial (progress display).
        prepared: the result of :func:`prepare_study` if the caller already validated.

    Returns:
        :class:`StudySummary`.

    Raises:
        ExploreError: bad input, before anything is written.
    """
    space, device = prepared or prepare_study(settings)
    data = load_dataset(settings.dataset, settings.data_root, max_train=settings.max_train,
                        max_val=settings.max_val, seed=settings.seed)
    start = time.perf_counter()
    study = _open(settings, _make_sampler(settings))
    _check_resume(study, settings, space)
    objective = make_objective(space, data, settings, device)
    remaining = settings.trials - _count(study, TrialState.COMPLETE)

    def notify(study: optuna.Study, trial: FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(study, trial)

    if remaining > 0:
        callbacks = [optuna.study.MaxTrialsCallback(settings.trials, states=(TrialState.COMPLETE,)), notify]
        # pruned (infeasible) trials are cheap; cap the attempts so a space with no feasible point ends
        study.optimize(_with_failure_reason(objective), n_trials=50 * remaining, callbacks=callbacks,
                       catch=(Exception,))
    return StudySummary(
        study_name=settings.study_name,
        run_dir=str(settings.run_dir),
        storage=mask_password(settings.storage_url),
        complete=_count(study, TrialState.COMPLETE),
        pruned=_count(study, TrialState.PRUNED),
        failed=_count(study, TrialState.FAIL),
        wall_seconds=time.perf_counter() - start,
    )


def _with_failure_reason(objective: Callable[[optuna.Trial], Any]) -> Callable[[optuna.Trial], Any]:
    """Store the exception text on a trial that fails, so reports can say why."""

    def wrapped(trial: optuna.Trial) -> Any:
        try:
            return objective(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            raise

    return wrapped


def mask_password(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)


def open_study(study: str, storage: str | None = None) -> optuna.Study:
    """Open an existing study for reading: a run folder (``runs/cga``) or a study name with ``storage``.

    Raises:
        ExploreError: no such run folder, or no such study in the storage.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is None:
        run_dir = Path(study)
        db = run_dir / "study.db"
        if not db.is_file():
            raise ExploreError("STUDY", study, "expected a run folder holding study.db (e.g. runs/cga), "
                                               "or a study name with --storage URL")
        storage, name = default_storage(run_dir), None
    else:
        name = study
    try:
        if name is None:
            summaries = optuna.get_all_study_summaries(storage)
            if len(summaries) != 1:
                raise ExploreError("STUDY", study, f"the storage holds {len(summaries)} studies; name one with --storage")
            name = summaries[0].study_name
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise ExploreError("STUDY", study, f"no such study in {mask_password(storage)}") from None


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, objectives, params (count), MACs, latency and its spread,
    proxy figures, reasons, the config (JSON) and the sampled knobs (``p.<name>`` columns).

    Columns ``top1`` (%) and ``latency_ms`` are NaN for trials that did not complete; ``pareto`` is
    True for the Pareto-optimal COMPLETE trials (``study.best_trials``).
    """
    pareto = {t.number for t in study.best_trials} if _count(study, TrialState.COMPLETE) else set()
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "top1": t.values[0] if t.values else float("nan"),
            "latency_ms": t.values[1] if t.values else float("nan"),
            "pareto": t.number in pareto,
            "params": attrs.get("params"),
            "macs": attrs.get("macs"),
        }
        for key in sorted(attrs):
            if key not in row and key != "config":
                row[key] = attrs[key]
        config = attrs.get("config")
        row["summary"] = ArchConfig.from_json(config).summary() if config else ""
        row["config"] = config
        row["duration_s"] = t.duration.total_seconds() if t.duration else float("nan")
        row.update({f"p.{k}": v for k, v in t.params.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.sort_values("number").reset_index(drop=True)
    return frame


def study_meta(study: optuna.Study) -> dict[str, Any]:
    """The study's stored settings and space (for report headers)."""
    return {
        "study_name": study.study_name,
        "space_name": study.user_attrs.get("space_name"),
        "space_file": study.user_attrs.get("space_file"),
        "settings": json.loads(json.dumps(study.user_attrs.get("settings", {}))),
    }
