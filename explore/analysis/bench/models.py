"""``explore bench`` (``explore bench models``): our presets against the reference implementations
(timm) of the same names, measured in one run with the same protocol and mode, with the papers'
figures beside.

Ours and timm's model of each name are measured alternately, mode by mode (eager vs eager, fused
vs fused, compiled vs compiled), so that drifts of a noisy machine hit both. The ratio is
ours / timm in images per second: >= 1.0 means ours is at least as fast. On the CPU protocols the
two are also timed repeat by repeat (:func:`explore.measure.time_pair`, order ABBA), and the ratio
that decides is the geometric mean of the pair ratios (timm's time / ours) with a 95 % t interval on
their logarithms (:func:`explore.stats.ratio_interval`): ``faster`` or ``slower`` when the interval
excludes 1.0, else ``undecided``. The per-model figures there are raw (as timed), not normalised. The papers' figures were
measured on other hardware (V100, an Intel CPU): they are context, not a target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
from torch import nn

from explore.arch import PRESETS, paper_throughput
from explore.errors import ExploreError
from explore.measure import time_model, time_pair
from explore.measure import MODES, Measurement, get_protocol
from explore.nn import build
from explore.stats import ratio_interval

__all__ = ["BenchRow", "COMPILE_BACKENDS", "PairedRatio", "reference_model", "bench", "model_names", "short_name",
           "paired_ratio"]


@dataclass(frozen=True)
class PairedRatio:
    """Ours against timm timed pair by pair: the throughput ratio ours / timm (timm's time / ours per
    pair), its geometric mean over the pairs and 95 % interval (t interval on the log ratios).

    Attributes:
        ratio: geometric mean of the pair ratios (>= 1: ours at least as fast).
        low: the interval's lower bound.
        high: its upper bound.
        pairs: pairs used.
        verdict: ``faster`` (low > 1), ``slower`` (high < 1) or ``undecided``.
    """

    ratio: float
    low: float
    high: float
    pairs: int
    verdict: str


def paired_ratio(ours_ms: list[float], timm_ms: list[float]) -> PairedRatio:
    """The paired ratio of repeat-by-repeat times (:class:`PairedRatio`).

    Args:
        ours_ms: our model's time per pair (ms).
        timm_ms: timm's time in the same pairs (ms).

    Returns:
        :class:`PairedRatio`.
    """
    ratio, low, high = ratio_interval([t / o for o, t in zip(ours_ms, timm_ms)], 0.95)
    verdict = "faster" if low > 1.0 else "slower" if high < 1.0 else "undecided"
    return PairedRatio(ratio, low, high, len(ours_ms), verdict)


def short_name(name: str) -> str:
    """A preset's short name for tables: ``efficientvit_m0`` -> ``M0`` (others unchanged)."""
    prefix = "efficientvit_"
    return name[len(prefix):].upper() if name.startswith(prefix) else name


@dataclass(frozen=True)
class BenchRow:
    """One (model, mode) comparison.

    ``*_graphs`` (``compile`` mode only) counts the graphs torch.compile compiled for the model: at
    least 1, or the measurement would have raised (see :class:`explore.measure.GraphCounter`).
    """

    model: str
    protocol: str
    mode: str
    ours: Measurement
    reference: Measurement | None
    paired: PairedRatio | None = None

    def as_row(self) -> dict[str, Any]:
        """Flat dict for a DataFrame / CSV."""
        ref = self.reference
        return {
            "model": self.model,
            "protocol": self.protocol,
            "mode": self.mode,
            "compile_backend": self.ours.protocol.get("compile_backend") if self.mode == "compile" else None,
            "batch": self.ours.batch_size,
            "ours_img_s": round(self.ours.throughput_img_s, 1),
            "ours_cv": round(self.ours.cv, 4),
            "timm_img_s": round(ref.throughput_img_s, 1) if ref else None,
            "timm_cv": round(ref.cv, 4) if ref else None,
            "ratio_ours_timm": round(self.ours.throughput_img_s / ref.throughput_img_s, 3) if ref else None,
            "ratio_paired": round(self.paired.ratio, 3) if self.paired else None,
            "ratio_low": round(self.paired.low, 3) if self.paired else None,
            "ratio_high": round(self.paired.high, 3) if self.paired else None,
            "pairs": self.paired.pairs if self.paired else None,
            "verdict": self.paired.verdict if self.paired else None,
            "ours_host_bound": self.ours.host_bound,
            "timm_host_bound": ref.host_bound if ref else None,
            "ours_graphs": self.ours.compiled_graphs,
            "timm_graphs": ref.compiled_graphs if ref else None,
            "paper_img_s": paper_throughput(self.model, self.protocol),
            "device": self.ours.device_name,
            "versions": ",".join(f"{k}={v}" for k, v in sorted(self.ours.versions.items())),
        }


def model_names(spec: str) -> list[str]:
    """``--models``: ``all`` presets, ``m`` (M0-M5), ``b`` (B0-B3), or comma-separated names."""
    groups = {"all": list(PRESETS), "m": [n for n in PRESETS if "_m" in n], "b": [n for n in PRESETS if "_b" in n]}
    return groups.get(spec, [item.strip() for item in spec.split(",") if item.strip()])


COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")
"""``torch.compile`` backends the bench accepts: inductor (the default: generated kernels), and the two
capture-only backends of torch's own tests (``aot_eager``: dynamo and AOTAutograd; ``eager``: dynamo)."""


def reference_model(name: str) -> nn.Module:
    """timm's model of the same name, randomly initialised (no download).

    Raises:
        ExploreError: timm is not installed (it is the optional extra ``timm``).
    """
    try:
        import timm
    except ImportError:
        raise ExploreError("--reference", "timm", "timm is not installed: pip install 'explore[timm]'") from None
    return timm.create_model(name, pretrained=False)


def bench(models: list[str], protocol: str = "cpu-latency", modes: tuple[str, ...] = ("eager", "fused"), *,
          device: str | None = None, batch_size: int | None = None, repeats: int | None = None,
          warmup: int | None = None, img_size: int | None = None, reference: bool = True,
          compile_backend: str = "inductor", on_row: Callable[[BenchRow], None] | None = None) -> pd.DataFrame:
    """Measure every preset in every mode, ours then timm's, with one protocol (raw figures); on the
    CPU also the two paired repeat by repeat (:class:`PairedRatio`).

    Args:
        models: preset names (``efficientvit_m0`` ...).
        protocol: a name from :data:`explore.measure.PROTOCOLS`.
        modes: any of ``eager``, ``fused``, ``compile``, ``cuda-graph``.
        device: protocol override (None: the protocol's), as are the next four.
        batch_size: images per forward pass.
        repeats: timed runs.
        warmup: untimed runs first.
        img_size: input side in pixels.
        reference: also measure timm's model (needs timm).
        compile_backend: the ``torch.compile`` backend of ``compile`` rows (``inductor``, what a user
            deploys; ``eager`` runs dynamo's capture only, which is what CPU CI needs to see that a
            model compiles without inductor's minutes of C++ code generation).
        on_row: called with each finished row (progress).

    Returns:
        One row per (model, mode); see :meth:`BenchRow.as_row`.

    Raises:
        ExploreError: unknown model, protocol, mode or compile backend; timm missing; device unavailable.
    """
    for name in models:
        if name not in PRESETS:
            raise ExploreError("--models", name, f"unknown preset; expected some of {', '.join(PRESETS)}")
    for mode in modes:
        if mode not in MODES:
            raise ExploreError("--modes", mode, f"expected some of {', '.join(MODES)}")
    if compile_backend not in COMPILE_BACKENDS:
        raise ExploreError("--compile-backend", compile_backend, f"expected one of {', '.join(COMPILE_BACKENDS)}")
    protocols = {mode: get_protocol(protocol, device=device, batch_size=batch_size, repeats=repeats, warmup=warmup,
                                    img_size=img_size, mode=mode, figure="raw", compile_backend=compile_backend)
                 for mode in modes}
    if reference:
        reference_model(models[0])  # fail early when timm is missing
    rows = []
    for name in models:
        ours = build(PRESETS[name])
        ref = reference_model(name) if reference else None
        for mode, proto in protocols.items():
            paired = None
            if ref is not None and proto.device == "cpu":
                timed = time_pair(ours, ref, proto)
                paired = paired_ratio(timed.times, timed.reference_times)
            row = BenchRow(name, protocol, mode, time_model(ours, proto), time_model(ref, proto) if ref is not None else None,
                           paired)
            rows.append(row.as_row())
            if on_row is not None:
                on_row(row)
    return pd.DataFrame(rows)
