"""Latency cache shared by every worker of a study, stored beside the study in its Optuna storage.

Measuring latency is the part of a trial that does not depend on training, and studies revisit
architectures (retried trials keep their parameters; a point is drawn again after its trial failed
or was pruned; a study never trains an architecture twice, see :mod:`explore.search.objective`). The
cache keeps one measurement per (architecture, latency protocol) and hands it to
every later trial with that key, whichever worker or machine runs it.

Where it lives: one study user attribute ``latency_cache:<key>`` per entry, in the study's own
storage (SQLite file, journal file or PostgreSQL). So the cache travels with the study: every
process that opens the storage shares it, it survives crashes and restarts, and deleting the
study deletes it. Two workers that measure the same key at the same moment both write; the entries
are measurements of the same thing, and the last write wins.

The key covers everything the number depends on: the config hash (which includes ``img_size``
and ``in_chans``), batch size, CPU threads, warm-up and timed repeats, the device's model name
(:func:`explore.measure.device_name`, the name measurements record) and the torch version.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

__all__ = ["LatencyKey", "LatencyCache", "CACHE_PREFIX"]

CACHE_PREFIX = "latency_cache:"
"""Prefix of the study user attributes that hold cache entries."""


@dataclass(frozen=True)
class LatencyKey:
    """What a latency measurement depends on.

    Attributes:
        config_hash: :meth:`explore.arch.ArchConfig.config_hash` (covers img_size, in_chans).
        batch_size: images per timed forward pass.
        threads: CPU intra-op threads during the measurement (None: torch's default).
        warmup, repeats: untimed and timed runs.
        device: device model name (:func:`explore.measure.device_name`).
        torch_version: ``torch.__version__``.
        protocol, mode: the measurement protocol and its mode (:mod:`explore.measure.protocols`).
    """

    config_hash: str
    batch_size: int | None
    threads: int | None
    warmup: int
    repeats: int
    device: str
    torch_version: str = torch.__version__
    protocol: str = "cpu-latency"
    mode: str = "fused"

    def digest(self) -> str:
        """Stable 16-hex-digit digest of every field (the attribute name's suffix)."""
        body = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha1(body.encode()).hexdigest()[:16]


class LatencyCache:
    """Latency measurements of one study, read from and written to its storage.

    Args:
        study: the ``optuna.Study`` whose user attributes hold the entries.
    """

    def __init__(self, study: Any) -> None:
        self._study = study

    def get(self, key: LatencyKey) -> dict[str, Any] | None:
        """The stored entry for ``key`` (``attrs``: the latency trial attributes; ``key``,
        ``measured_by_trial``, ``measured_by_worker``, ``measured_at``), or None."""
        entry = self._study.user_attrs.get(CACHE_PREFIX + key.digest())
        if not isinstance(entry, Mapping) or entry.get("key") != asdict(key):
            return None  # absent, or a digest collision: measure again
        return dict(entry)

    def put(self, key: LatencyKey, attrs: Mapping[str, Any], *, trial_number: int, worker: str) -> None:
        """Store a measurement.

        Args:
            key: what was measured.
            attrs: the latency trial attributes (``latency_median_ms`` ...), JSON-able values.
            trial_number: the trial that measured it.
            worker: ``host:pid`` of the process that measured it.
        """
        entry = {"key": asdict(key), "attrs": dict(attrs), "measured_by_trial": trial_number,
                 "measured_by_worker": worker, "measured_at": time.time()}
        self._study.set_user_attr(CACHE_PREFIX + key.digest(), entry)

    def entries(self) -> dict[str, dict[str, Any]]:
        """Every entry, by digest."""
        attrs = self._study.user_attrs
        return {k[len(CACHE_PREFIX):]: v for k, v in attrs.items() if k.startswith(CACHE_PREFIX)}
