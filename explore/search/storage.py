"""Optuna storages for studies: which one a ``--storage`` value means, heartbeats, password masking.

A ``--storage`` value is either

* an RDB URL (``sqlite:///runs/cga/study.db``, ``postgresql://user:pw@host/db``): Optuna's
  ``RDBStorage``. PostgreSQL (or MySQL) lets any number of processes on any number of machines
  work on one study;
* a path without ``://`` (``runs/cga/journal.log``): Optuna's ``JournalStorage`` over a
  ``JournalFileBackend``, the storage of ``--workers N`` on one machine (the same convention as
  ``optuna-dashboard``, which opens an existing file path as a journal).

Heartbeats: every storage we open for running trials records a heartbeat per RUNNING trial every
``heartbeat_s`` seconds (Optuna's heartbeat for RDB storages; :class:`HeartbeatJournalStorage` adds
the same protocol to the journal storage, which has none of its own). A RUNNING trial whose last
heartbeat is older than ``3 * heartbeat_s`` belongs to a dead process (``kill -9``, a lost machine):
Optuna marks it FAIL and Optuna's :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback` (the
current name of ``RetryFailedTrialCallback``) enqueues its parameters again as a WAITING trial,
which the next free worker runs.

Passwords: a storage URL is shown, stored and written only through :func:`mask_password`;
:func:`scrub` removes the password from any other text (error messages, failure reasons).
"""

from __future__ import annotations

import importlib.util
import re
import time
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat  # the heartbeat protocol (no public alias)
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from explore.errors import ExploreError

__all__ = [
    "POSTGRES_INSTALL",
    "check_driver",
    "DEFAULT_HEARTBEAT_S",
    "MAX_RETRY",
    "HeartbeatJournalStorage",
    "is_journal",
    "make_storage",
    "mask_password",
    "scrub",
    "driver_url",
    "default_storage",
]

DEFAULT_HEARTBEAT_S = 10
"""Seconds between heartbeats of a RUNNING trial; a trial is stale after 3x this without one."""
MAX_RETRY = 3
"""How many times a stale trial's parameters are re-run before they are given up."""
_HEARTBEAT_ATTR = "explore:heartbeat"
_OPEN_ATTEMPTS = 4


def mask_password(url: str) -> str:
    """A storage URL with its password replaced by ``***``.

    ``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``; a password that
    itself holds ``@`` or ``/`` is masked whole, and so is a ``password=`` query parameter.

    Args:
        url: any storage URL or path (a path without a password is returned unchanged).
    """
    masked = url
    scheme = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url)
    if scheme:
        rest = url[scheme.end():]
        authority_end = len(rest.split("?", 1)[0])
        at = rest.rfind("@", 0, authority_end)
        if at >= 0 and ":" in rest[:at]:
            user = rest[:at].split(":", 1)[0]
            masked = url[: scheme.end()] + f"{user}:***" + rest[at:]
    return re.sub(r"(?i)(password=)[^&;\s]*", r"\1***", masked)


def _password(url: str) -> str | None:
    scheme = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url or "")
    if not scheme:
        return None
    rest = url[scheme.end():]
    at = rest.rfind("@", 0, len(rest.split("?", 1)[0]))
    if at < 0 or ":" not in rest[:at]:
        return None
    return rest[:at].split(":", 1)[1] or None


def scrub(text: str, url: str | None) -> str:
    """``text`` with the password of storage ``url`` (and the URL itself) replaced by ``***``."""
    if not url:
        return text
    text = text.replace(url, mask_password(url))
    password = _password(url)
    if password:
        text = text.replace(password, "***")
    return text


def is_journal(storage: str) -> bool:
    """Whether a ``--storage`` value names a journal file (a path) rather than an RDB URL."""
    return "://" not in storage


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage plus Optuna's heartbeat protocol.

    The heartbeat of a RUNNING trial is a trial system attribute (``explore:heartbeat``, Unix time
    in seconds) rewritten every ``heartbeat_interval`` seconds by Optuna's heartbeat thread; a
    trial is stale when neither it nor the trial's start is younger than ``grace_period``. Clocks
    of the processes sharing the file must agree (one machine, or NFS clients with NTP).

    Args:
        backend: the journal backend (a :class:`~optuna.storages.journal.JournalFileBackend`).
        heartbeat_interval: seconds between heartbeats (>= 1).
        grace_period: seconds without a heartbeat after which a RUNNING trial is stale.
        stale_trial_callback: called with (study, trial) for each trial made FAIL as stale.
    """

    def __init__(self, backend: Any, *, heartbeat_interval: int, grace_period: int,
                 stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> None:
        super().__init__(backend)
        self._heartbeat_interval = heartbeat_interval
        self._grace_period = grace_period
        self._stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        """Write the heartbeat of a RUNNING trial (a no-op once the trial has finished)."""
        try:
            self.set_trial_system_attr(trial_id, _HEARTBEAT_ATTR, time.time())
        except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
            pass

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            started = trial.datetime_start.timestamp() if isinstance(trial.datetime_start, datetime) else now
            # a retried trial inherits the stale heartbeat of its original: its start counts too
            last = max(float(trial.system_attrs.get(_HEARTBEAT_ATTR, 0.0)), started)
            if now - last > self._grace_period:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        """Seconds between heartbeats."""
        return self._heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        """The callback run for each trial failed as stale."""
        return self._stale_trial_callback

    def get_failed_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        """Name of :meth:`get_heartbeat_stale_trial_callback` in Optuna < 4.9."""
        return self._stale_trial_callback


POSTGRES_INSTALL = "pip install 'explore[postgres]'"
"""How to install the PostgreSQL driver (the ``postgres`` extra: psycopg 3, the driver SQLAlchemy 2.1
uses for ``postgresql://``)."""


def check_driver(storage: str) -> None:
    """Refuse a ``postgresql://`` storage when no PostgreSQL driver (psycopg 3, or psycopg2) can be
    imported, naming the extra to install (instead of SQLAlchemy's import error).

    Raises:
        ExploreError: field ``--storage`` (password masked).
    """
    scheme = storage.split("://", 1)[0].lower()
    if is_journal(storage) or not scheme.startswith("postgresql"):
        return
    if scheme == "postgresql" or scheme == "postgresql+psycopg":
        wanted = ("psycopg", "psycopg2") if scheme == "postgresql" else ("psycopg",)
    else:
        wanted = (scheme.split("+", 1)[1],)
    if any(importlib.util.find_spec(name) is not None for name in wanted):
        return
    raise ExploreError("--storage", mask_password(storage), f"needs a PostgreSQL driver ({' or '.join(wanted)}), which "
                                                            f"is not installed; install it with: {POSTGRES_INSTALL}")


def driver_url(url: str) -> str:
    """``postgresql://`` with the driver that is installed: SQLAlchemy 2.1 means psycopg 3 by it,
    2.0 meant psycopg2; pick psycopg 3 explicitly when psycopg2 is absent."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None \
            and importlib.util.find_spec("psycopg") is not None:
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def make_storage(storage: str, *, heartbeat_s: int | None = None, create_journal: bool = True) -> BaseStorage:
    """Open the storage that ``storage`` names.

    Args:
        storage: an RDB URL or a journal file path (see the module docstring).
        heartbeat_s: seconds between trial heartbeats; None opens it without heartbeats (to read).
        create_journal: whether a journal file may be created (False: it must exist).

    Returns:
        An Optuna storage.

    Raises:
        ExploreError: field ``--storage`` (value with the password masked): unknown scheme, missing
            driver, unreachable server, missing journal file.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY) if heartbeat_s else None
        if is_journal(storage):
            path = Path(storage)
            if not create_journal and not path.is_file():
                raise ExploreError("--storage", storage, "no such journal file")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                backend = JournalFileBackend(str(path))
                if heartbeat_s:
                    return HeartbeatJournalStorage(backend, heartbeat_interval=heartbeat_s,
                                                   grace_period=3 * heartbeat_s, stale_trial_callback=retry)
                return JournalStorage(backend)
            except OSError as exc:
                raise ExploreError("--storage", storage, f"cannot open the journal file: {exc}") from None
        check_driver(storage)
        url = driver_url(storage)
        engine_kwargs: dict[str, Any] = (
            {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
        )
        for attempt in range(_OPEN_ATTEMPTS):
            try:
                return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
                                  grace_period=3 * heartbeat_s if heartbeat_s else None,
                                  heartbeat_stale_trial_callback=retry)
            except ImportError as exc:  # Optuna re-raises SQLAlchemy's ImportError of a missing driver
                cause = exc.__cause__ if isinstance(exc.__cause__, ImportError) else exc
                name = getattr(cause, "name", None) or "the database driver"
                raise ExploreError("--storage", mask_password(storage),
                                   f"needs a database driver that imports ({name} does not); for PostgreSQL, "
                                   f"install it with: {POSTGRES_INSTALL}") from None
            except Exception as exc:  # noqa: BLE001 - SQLAlchemy/driver errors: one clear line, no password
                # workers that meet a new database at once race to create its tables: try again
                text = str(exc).lower()
                racing = "duplicate" in text or "already exists" in text or "unique" in text
                if racing and attempt + 1 < _OPEN_ATTEMPTS:
                    time.sleep(0.5 * (attempt + 1))
                    continue
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ExploreError("--storage", mask_password(storage),
                                   f"cannot open the storage: {scrub(first, storage)}") from None
        raise AssertionError("unreachable")


def default_storage(run_dir: Path, workers: int = 1) -> str:
    """The storage of a run folder: its ``journal.log`` or ``study.db`` if one exists, else a new
    journal file for ``workers > 1`` and a new SQLite file otherwise.

    Returns:
        A journal file path (``<run_dir>/journal.log``) or ``sqlite:///<run_dir>/study.db``.
    """
    journal, sqlite = run_dir / "journal.log", run_dir / "study.db"
    if journal.is_file() or (workers > 1 and not sqlite.is_file()):
        return journal.as_posix()
    return f"sqlite:///{sqlite.as_posix()}"
