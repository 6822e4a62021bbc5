"""The papers' speed-measurement protocols, as named, documented, parameter-recording functions.

=================  =======  =====  ==========  ==============  =======================================
protocol           device   batch  precision   memory format   unit, source
=================  =======  =====  ==========  ==============  =======================================
``gpu-throughput`` cuda     2048   fp16 amp    channels_last   img/s; arXiv:2305.07027 §4.1 (V100)
``gpu-latency``    cuda     1      fp16 amp    channels_last   ms per image
``cpu-latency``    cpu      16     fp32        contiguous      ms per batch, img/s; §4.1, 1 thread
``onnx-cpu``       cpu      16     fp32        contiguous      ONNX Runtime, 1 thread; §4.1
=================  =======  =====  ==========  ==============  =======================================

Every protocol runs a copy of the model in eval mode under ``torch.inference_mode`` in one of four
modes: ``eager`` (as built), ``fused`` (BatchNorm folded, the papers' deploy form), ``compile``
(fused + ``torch.compile``, the compiled graphs counted: a pass that ran eagerly makes the measurement
fail; a model measured again in the same process reuses its compiled forward, and dynamo is reset
only when the models compiled since the last reset would reach its recompile limit, see
:func:`explore.measure.runners.prepare_runner`) or ``cuda-graph`` (fused + CUDA-graph capture and
replay). It warms up, then times ``repeats`` runs and reports the median, the inter-quartile range
and the coefficient of variation. The input is built on the device, in the protocol's precision and
memory format.

What "fp16 amp" casts: conv and linear weights and biases, and the attention-bias tables, are cast
to fp16 once before timing (:func:`explore.measure.runners.cast_for_amp`), so the timed pass
launches no parameter casts; the input is fp16; norms keep fp32 parameters (in the fused modes only
those that fusion cannot fold, e.g. LayerNorm), and autocast runs its fp32 ops (norms, softmax) in
fp32.

On the CPU, every repeat is timed by the wall clock and by the measuring thread's CPU clock, and a
fixed reference workload is timed before and after the repeats: the figure is the median of the
repeats that were not preempted, a busy machine is waited out and measured again, and the result
records how busy it was (``contention_ratio``, ``clean_share``, ``contended``; see :func:`time_cpu`).
On CUDA, ``cudnn.benchmark`` is on (the warm-up autotunes), and the runs are timed with CUDA events
on the protocol's device (made current): each repeat times several back-to-back passes
(``passes_per_pair``, about 2 ms of GPU time) queued behind a short GPU sleep, so the figure is GPU
time per pass without the launch latency. A diagnosis pass times the host's kernel queueing while
the GPU is kept busy: when queueing takes >= 0.8 x the GPU's time for the pass, the figure is the
host's launch rate (``host_bound``; see :func:`explore.measure.runners.host_bound_rule`) and
``compile`` or ``cuda-graph`` give the GPU's.
A batch that runs out of memory (allocator, cuDNN or cuBLAS) is halved until it fits
(``oom_retries``, ``batch_size``): compare models by the per-image figures.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from explore.device import is_out_of_memory, on_device, release_memory, resolve_device
from explore.errors import ExploreError, OutOfMemory
from explore.measure.fusion import fuse_batchnorm
from explore.measure.runners import Runner, amp_dtype, forget_runner, host_bound_rule, prepare_runner, time_cuda
from explore.resources import write_atomically

__all__ = [
    "PROTOCOLS",
    "MODES",
    "Protocol",
    "Measurement",
    "get_protocol",
    "measure",
    "measure_batch",
    "make_input",
    "Timed",
    "library_versions",
    "device_name",
    "Contention",
    "clean_repeats",
    "time_cpu",
    "reference_workload",
    "CLEAN_RATIO",
    "RUN_SHARE",
    "CONTENTION_ATTEMPTS",
    "CONTENTION_PAUSE_ENV",
    "contention_pauses",
    "FIGURES",
    "REFERENCE_PRESET",
    "CALIBRATION_REPEATS",
    "SPREAD_LIMIT",
    "SLOWDOWN_LIMIT",
    "ReferenceCalibration",
    "CpuTiming",
    "time_cpu_paired",
    "reference_calibration",
    "calibration_file",
    "set_reference_calibration",
    "reference_calibrations",
    "reference_model",
    "pair_spread",
    "reference_group",
    "MIN_REFERENCE_REPEATS",
    "Pairing",
    "measure_pair",
]

MODES = ("eager", "fused", "compile", "cuda-graph")
FIGURES = ("normalised", "raw")
"""The latency figures a protocol can report (:attr:`Protocol.figure`)."""


@dataclass(frozen=True)
class Protocol:
    """A measurement protocol's parameters (all recorded with every result).

    Attributes:
        name: the protocol's name (see the module table).
        device: ``cpu`` or ``cuda[:N]``.
        batch_size: images per forward pass (the first try; halved on CUDA out-of-memory).
        img_size: input side in pixels (the height, when ``img_width`` is set).
        in_chans: input channels.
        img_width: input width in pixels for non-square inputs (e.g. 2048 for Cityscapes'
            1024 x 2048); None: square.
        amp: autocast dtype (``fp16``, ``bf16``) or None for fp32.
        channels_last: NHWC memory format for model and input.
        threads: CPU intra-op threads while measuring (None: leave as is).
        warmup: untimed runs first.
        repeats: timed runs (>= 2).
        mode: ``eager``, ``fused``, ``compile`` or ``cuda-graph``.
        onnx: run through ONNX Runtime (CPU) instead of PyTorch.
        compile_backend: the ``torch.compile`` backend of ``compile`` mode (``inductor``; the
            tests use the cheap ``eager`` backend, which exercises the same dynamo machinery).
        figure: the latency figure the result reports (``median_ms``, ``latency_ms_per_img``):
            ``normalised`` (CPU default: interleaved with the reference model and scaled to its
            calibration, see :func:`time_cpu_paired`) or ``raw`` (the wall time as timed; CUDA
            protocols always report it).
        reference_img_size, reference_in_chans: the reference model's input side and channels
            (None: the protocol's ``img_size``/``img_width`` and ``in_chans``); a latency table's
            units set them to the models' input, so all its entries share one reference.
    """

    name: str
    device: str
    batch_size: int
    img_size: int = 224
    in_chans: int = 3
    img_width: int | None = None
    amp: str | None = None
    channels_last: bool = False
    threads: int | None = None
    warmup: int = 10
    repeats: int = 30
    mode: str = "fused"
    onnx: bool = False
    compile_backend: str = "inductor"
    figure: str = "normalised"
    reference_img_size: int | None = None
    reference_in_chans: int | None = None

    def key(self) -> dict[str, Any]:
        """The parameters as a plain dict (for caches and trial attributes)."""
        return asdict(self)


PROTOCOLS: dict[str, Protocol] = {
    "gpu-throughput": Protocol("gpu-throughput", "cuda", 2048, amp="fp16", channels_last=True, warmup=10, repeats=30,
                               figure="raw"),
    "gpu-latency": Protocol("gpu-latency", "cuda", 1, amp="fp16", channels_last=True, warmup=50, repeats=200,
                            figure="raw"),
    "cpu-latency": Protocol("cpu-latency", "cpu", 16, threads=1, warmup=5, repeats=20),
    "onnx-cpu": Protocol("onnx-cpu", "cpu", 16, threads=1, warmup=5, repeats=20, onnx=True),
}
"""The named protocols with their default parameters."""


def get_protocol(name: str, **overrides: Any) -> Protocol:
    """A named protocol, with parameters overridden (e.g. ``img_size=64, mode="compile"``).

    On a CUDA device the figure is ``raw`` (the GPU protocols are unchanged); on the CPU it is
    ``normalised`` unless ``figure="raw"`` is given.

    Args:
        name: a protocol of :data:`PROTOCOLS`.
        **overrides: :class:`Protocol` fields to replace (None values are ignored).

    Returns:
        The protocol.

    Raises:
        ExploreError: unknown protocol (field ``--protocol``), unknown mode (``--mode``), a mode the
            protocol cannot run (``cuda-graph`` off CUDA, ``compile``/``cuda-graph`` with ONNX),
            a bad batch / repeats, an unknown figure or ``normalised`` on CUDA (``--latency-figure``).
    """
    if name not in PROTOCOLS:
        raise ExploreError("--protocol", name, f"expected one of {', '.join(PROTOCOLS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Protocol)}
    if unknown:
        raise ExploreError("protocol parameter", sorted(unknown)[0], "unknown protocol parameter")
    protocol = dataclasses.replace(PROTOCOLS[name], **overrides)
    if protocol.figure not in FIGURES:
        raise ExploreError("--latency-figure", protocol.figure, f"expected one of {', '.join(FIGURES)}")
    on_cuda = protocol.device.startswith("cuda") and not protocol.onnx
    if on_cuda and overrides.get("figure") == "normalised":
        raise ExploreError("--latency-figure", "normalised", "raw on CUDA: the reference-normalised figure is "
                                                              "the CPU protocols' (docs/protocols.md)")
    protocol = dataclasses.replace(protocol, figure="raw" if on_cuda else protocol.figure)
    if protocol.mode not in MODES:
        raise ExploreError("--mode", protocol.mode, f"expected one of {', '.join(MODES)}")
    if protocol.mode == "cuda-graph" and not protocol.device.startswith("cuda"):
        raise ExploreError("--mode", protocol.mode, f"CUDA graphs need a CUDA device; {name} runs on {protocol.device}")
    if protocol.onnx and protocol.mode not in ("eager", "fused"):
        raise ExploreError("--mode", protocol.mode, "onnx-cpu exports the eager or fused model: expected eager or fused")
    if protocol.onnx and not protocol.device == "cpu":
        raise ExploreError("--device", protocol.device, "onnx-cpu runs on the CPU")
    if protocol.batch_size < 1:
        raise ExploreError("--batch-size", protocol.batch_size, "expected >= 1")
    if protocol.repeats < 2:
        raise ExploreError("--repeats", protocol.repeats, "expected >= 2 timed runs")
    if protocol.amp not in (None, "fp16", "bf16"):
        raise ExploreError("amp", protocol.amp, "expected fp16, bf16 or none")
    return protocol


@dataclass(frozen=True)
class Measurement:
    """One protocol run.

    Attributes:
        protocol: the protocol's parameters (as run; ``batch_size`` there is the first try).
        device_name: e.g. ``NVIDIA H100 80GB HBM3`` or the CPU's name.
        batch_size: the batch that was timed (smaller than asked after out-of-memory retries).
        median_ms, iqr_ms: per forward pass of the batch (ms); cv: stdev / mean of the repeats.
        throughput_img_s: batch_size / median.
        latency_ms_per_img: median / batch_size.
        gpu_ms: CUDA only: the median of the timed repeats, GPU ms per pass (each repeat: CUDA
            events around ``passes_per_pair`` back-to-back passes queued behind a short GPU sleep, so
            the launch latency is not in the figure; equal to ``median_ms``).
        host_ms, gpu_exec_ms: CUDA only: the host's time to queue one pass and the GPU's time to
            run the queued pass, both measured with the GPU kept busy while the host queues (so
            neither waits for the other; see :func:`host_bound_rule`). None off CUDA, or when the
            launch queue filled up during the diagnosis.
        host_bound: ``host_ms >= 0.8 * gpu_exec_ms``: the GPU waits for the host, and the figure
            is the host's launch rate; ``compile`` or ``cuda-graph`` give the GPU's.
        oom_retries: how often the batch was halved.
        versions: library versions (torch, onnxruntime where used).
        compiled_graphs, compiled_calls: ``compile`` mode only: graphs dynamo compiled for this
            model (when it was first measured in this process: a re-measurement reuses its compiled
            forward), and compiled-graph executions over this measurement's runs (at least one per
            run, or the measurement raises).
        contention_ratio, clean_share, attempts, contended: CPU only: how busy the machine was
            (:class:`Contention`); ``median_ms``, ``iqr_ms`` and ``cv`` are then of the clean
            repeats, or of the scaled ones when ``contended``.
        times_ms: the timed runs behind ``median_ms`` (ms per forward pass of the batch), in order.
        passes_per_pair: CUDA only: forward passes timed between one pair of CUDA events
            (:func:`explore.measure.runners.passes_per_pair`).
        figure: which figure ``median_ms``, ``iqr_ms``, ``cv``, ``latency_ms_per_img`` and
            ``throughput_img_s`` are of: ``normalised`` (the pair ratios x the reference's
            calibration) or ``raw`` (the timed repeats).
        raw_median_ms, raw_ms_per_img: the raw figure (median of the repeats used; ms per
            batch, ms/img), whichever figure ranks.
        normalised_median_ms, normalised_ms_per_img: normalised CPU figures only (else None):
            median pair ratio x ``reference_calibration_ms`` (ms per batch, ms/img).
        pair_ratio, pair_spread, pair_ratios: the median candidate / reference ratio, its IQR / median,
            and every pair's ratio (in order).
        reference_name: the reference model (:data:`REFERENCE_PRESET`).
        reference_median_ms, reference_times_ms: the reference's repeats in this measurement (ms per batch).
        reference_slowdown: ``reference_median_ms`` / ``reference_calibration_ms``.
        reference_calibration_ms, reference_calibration_fastest_ms: the reference's calibration on
            this machine, median and fastest repeat (ms per batch), see :class:`ReferenceCalibration`.
        reference_calibration_times_ms, reference_calibration_contended: every calibration repeat
            (ms per batch), and whether the calibration was contended.
    """

    protocol: dict[str, Any]
    device_name: str
    batch_size: int
    median_ms: float
    iqr_ms: float
    cv: float
    throughput_img_s: float
    latency_ms_per_img: float
    gpu_ms: float | None
    host_ms: float | None
    host_bound: bool | None
    oom_retries: int
    versions: dict[str, str]
    gpu_exec_ms: float | None = None
    compiled_graphs: int | None = None
    compiled_calls: int | None = None
    contention_ratio: float | None = None
    clean_share: float | None = None
    attempts: int | None = None
    contended: bool | None = None
    times_ms: list[float] | None = None
    passes_per_pair: int | None = None
    figure: str | None = None
    raw_median_ms: float | None = None
    raw_ms_per_img: float | None = None
    normalised_median_ms: float | None = None
    normalised_ms_per_img: float | None = None
    pair_ratio: float | None = None
    pair_spread: float | None = None
    pair_ratios: list[float] | None = None
    reference_name: str | None = None
    reference_median_ms: float | None = None
    reference_slowdown: float | None = None
    reference_times_ms: list[float] | None = None
    reference_calibration_ms: float | None = None
    reference_calibration_fastest_ms: float | None = None
    reference_calibration_times_ms: list[float] | None = None
    reference_calibration_contended: bool | None = None

    def as_attrs(self, prefix: str = "latency_") -> dict[str, Any]:
        """Flat dict for Optuna user attributes (protocol parameters prefixed ``<prefix>protocol_``)."""
        out: dict[str, Any] = {f"{prefix}protocol_{k}": v for k, v in self.protocol.items()}
        for key, value in asdict(self).items():
            if key not in ("protocol", "versions", "times_ms", "reference_times_ms"):  # latency_ms_per_img stays latency_ms_per_img
                out[key if key.startswith(prefix) else f"{prefix}{key}"] = value
        out[f"{prefix}versions"] = ",".join(f"{k}={v}" for k, v in sorted(self.versions.items()))
        return out


def library_versions(onnx: bool = False) -> dict[str, str]:
    """Versions that change speed: torch (and its CUDA), onnxruntime when used."""
    versions = {"torch": torch.__version__}
    if torch.version.cuda:
        versions["cuda"] = str(torch.version.cuda)
    if onnx:
        versions["onnxruntime"] = _onnxruntime().__version__
    return versions


def _onnxruntime() -> Any:
    """``onnxruntime``, after checking that ``onnx`` (which ``torch.onnx.export`` needs) imports too.

    Raises:
        ExploreError: field ``--protocol``, value ``onnx-cpu``: a package is missing (names it
            and the install command).
    """
    try:
        import onnx  # noqa: F401 - torch.onnx.export imports it
        import onnxruntime
    except ImportError as exc:
        raise ExploreError("--protocol", "onnx-cpu", f"needs the packages onnx and onnxruntime ({exc}); install "
                                                     "them with: pip install onnx onnxruntime") from None
    return onnxruntime


@lru_cache(maxsize=8)
def _device_name(device: str) -> str:
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type != "cpu":
        return dev.type
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_name(device: torch.device | str) -> str:
    """The device's model name, as every measurement records it (``device_name``, the trials'
    ``latency_device_name``) and the latency cache keys it: the GPU's name
    (``NVIDIA H100 80GB HBM3``), or the CPU's model from ``/proc/cpuinfo`` (``AMD EPYC 7B13``)."""
    return _device_name(str(torch.device(device)))


def _stats(times_ms: list[float]) -> tuple[float, float, float]:
    quartiles = statistics.quantiles(times_ms, n=4)
    mean = statistics.fmean(times_ms)
    cv = statistics.stdev(times_ms) / mean if mean > 0 else 0.0
    return statistics.median(times_ms), quartiles[2] - quartiles[0], cv


CLEAN_RATIO = 1.3
"""The machine counts as quiet when the reference workload ran within this factor of its fastest time so
far (the baseline) both just before and just after a measurement (the lower of the two counts: a single
slow probe is noise, contention that lasts slows both)."""
RUN_SHARE = 0.9
"""A one-thread repeat is *clean* when the measuring thread ran (CPU time) for at least this share of
its wall time: it was not preempted by another process."""
CONTENTION_ATTEMPTS = 3
"""Measurements of one model before a contended figure is accepted, by default (a pause before each
measurement after the first: :func:`contention_pauses`)."""
CONTENTION_PAUSE_ENV = "EXPLORE_CONTENTION_PAUSE_S"
"""Environment variable: the pauses (s) before each further attempt of a contended CPU measurement,
comma-separated; their number is the number of further attempts (default ``1,3``: three attempts).
``none`` measures once and flags a contended result without measuring again: the test suite sets it,
because its measurements time tiny models, assert no figure, and share the two cores with its other
worker (the retry mechanism itself is tested with fake clocks)."""
_CONTENTION_PAUSE_S = (1.0, 3.0)


def contention_pauses() -> tuple[float, ...]:
    """The pauses (s) before each further attempt of a contended CPU measurement:
    ``$EXPLORE_CONTENTION_PAUSE_S`` (see :data:`CONTENTION_PAUSE_ENV`), else 1 s then 3 s (so
    :data:`CONTENTION_ATTEMPTS` attempts in all).

    Returns:
        The pauses (s), each >= 0; empty for ``none`` (one attempt).

    Raises:
        ExploreError: field ``EXPLORE_CONTENTION_PAUSE_S``: neither ``none`` nor comma-separated seconds >= 0.
    """
    text = os.environ.get(CONTENTION_PAUSE_ENV, "").strip()
    if not text:
        return _CONTENTION_PAUSE_S
    if text.lower() == "none":
        return ()
    try:
        pauses = tuple(float(part) for part in text.split(","))
    except ValueError:
        pauses = ()
    if not pauses or any(not (p >= 0.0 and p < float("inf")) for p in pauses):
        raise ExploreError(CONTENTION_PAUSE_ENV, text, "comma-separated seconds >= 0 (e.g. 1,3), or none")
    return pauses


@dataclass(frozen=True)
class Contention:
    """How busy the CPU was while a model was timed (see :func:`time_cpu` and :func:`time_cpu_paired`).

    Attributes:
        ratio: the reference workload's time just before and after the timed repeats (the faster of
            the two) / its baseline (1.0: quiet; 1.5: it ran 1.5x slower than on the quiet machine).
        clean_share: share of the repeats (of the attempt used; of all attempts when contended)
            that ran without preemption
            (thread CPU time >= :data:`RUN_SHARE` x wall time; 1.0 with several threads, where this
            cannot be told).
        attempts: measurements made (a contended one is repeated after each pause of
            :func:`contention_pauses`: :data:`CONTENTION_ATTEMPTS` by default).
        contended: True when no attempt was quiet with at least half of its repeats clean, or
            (paired) when the pair ratios spread more than :data:`SPREAD_LIMIT` or the reference
            model ran more than :data:`SLOWDOWN_LIMIT` x its calibration (bandwidth contention,
            which preemption checks do not see); the figure is then the median of the
            clean repeats of all attempts, or, with fewer than 3 of those, of the thread's CPU
            time per repeat (one thread: the time the work took while it ran).
        baseline_ms: the reference workload's uncontended time on this machine (ms): the fastest
            probe of this process so far (contention only slows it down).
        spread: paired only: IQR / median of the pair ratios used (:func:`pair_spread`).
        reference_slowdown: paired only: the reference model's median time in this measurement /
            its calibration (1.0: as on the quiet machine).
    """

    ratio: float
    clean_share: float
    attempts: int
    contended: bool
    baseline_ms: float
    spread: float | None = None
    reference_slowdown: float | None = None


class ReferenceWorkload:
    """A fixed CPU workload like a small model's layers (convolutions, a matmul), ~1 ms on one thread."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(1, 32, 32, 32, generator=gen)
        self.w = torch.randn(32, 32, 3, 3, generator=gen) * 0.05
        self.a = torch.randn(256, 192, generator=gen)
        self.b = torch.randn(192, 192, generator=gen)
        self.baseline: dict[int, float] = {}

    def _once(self) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            y = torch.conv2d(self.x, self.w, padding=1)
            torch.conv2d(torch.relu(y), self.w, padding=1).sum()
            (self.a @ self.b).relu_().sum()
        return (time.perf_counter() - t0) * 1e3

    def probe_ms(self, runs: int = 10) -> float:
        """The fastest of ``runs`` back-to-back runs (after one untimed), in ms; lowers the baseline."""
        self._once()
        best = min(self._once() for _ in range(runs))
        threads = torch.get_num_threads()
        self.baseline[threads] = min(self.baseline.get(threads, best), best)
        return best

    def baseline_ms(self) -> float:
        """The uncontended time at the current thread count: the fastest probe so far (30 at first)."""
        if torch.get_num_threads() not in self.baseline:
            self.probe_ms(30)
        return self.baseline[torch.get_num_threads()]


_REFERENCE: ReferenceWorkload | None = None


def reference_workload() -> ReferenceWorkload:
    """The process's reference workload (built once; its baseline is the fastest probe so far)."""
    global _REFERENCE
    if _REFERENCE is None:
        _REFERENCE = ReferenceWorkload()
    return _REFERENCE


def clean_repeats(wall_ms: list[float], cpu_ms: list[float] | None, run_share: float = RUN_SHARE) -> list[float]:
    """The wall times of the repeats that ran without preemption.

    Args:
        wall_ms: wall time per repeat (ms).
        cpu_ms: the measuring thread's CPU time per repeat (ms), or None when several threads work
            (then every repeat counts as clean).
        run_share: a repeat is clean when cpu >= run_share x wall.

    Returns:
        The clean repeats' wall times, in order.
    """
    if cpu_ms is None:
        return list(wall_ms)
    return [w for w, c in zip(wall_ms, cpu_ms) if c >= run_share * w]


REFERENCE_PRESET = "efficientvit_m0"
"""The reference model of normalised CPU latency: EfficientViT-M0 (arXiv:2305.07027 Table 1), built by
the generator at the measurement's input side and channels: a small preset whose layers (convolutions,
cascaded group attention, FFNs) are those of the candidates."""
CALIBRATION_REPEATS = 20
"""Timed runs of the reference model's calibration (once per machine, input and protocol; see
:func:`reference_calibration`)."""
SPREAD_LIMIT = 0.15
"""A paired measurement is flagged ``contended`` when the IQR of its pair ratios exceeds this share of
their median: a slowdown that hit some pairs and not others (contention that came and went)."""
SLOWDOWN_LIMIT = 1.2
"""A paired measurement is flagged ``contended`` when the reference model ran more than this factor
slower than its calibration: the machine was slowed as a whole (e.g. memory bandwidth taken by another
core). The normalised figure corrects for such a uniform slowdown; the flag says it happened."""


MIN_REFERENCE_REPEATS = 4
"""The fewest reference repeats of a paired measurement (when the candidate is much faster than the
reference, its repeats are paired in groups with one reference repeat each: :func:`reference_group`)."""


def reference_group(candidate_ms: float, reference_ms: float, repeats: int) -> int:
    """Candidate repeats paired with one reference repeat: about reference / candidate time (1 when the
    candidate is as slow as the reference or slower), so that the reference's repeats add at most
    about the candidate's own timing cost, and at most ``repeats`` / :data:`MIN_REFERENCE_REPEATS`.

    Args:
        candidate_ms: the candidate's time per pass (ms, e.g. its last warm-up run).
        reference_ms: the reference's time per pass (ms).
        repeats: the candidate's timed repeats.

    Returns:
        The group size (>= 1).
    """
    if not candidate_ms > 0:
        return 1
    most = max(1, repeats // MIN_REFERENCE_REPEATS)
    return max(1, min(most, int(reference_ms / candidate_ms)))


def pair_spread(ratios: list[float]) -> float:
    """IQR / median of pair ratios (0.0 with fewer than 2 ratios).

    Args:
        ratios: candidate / reference time per pair.

    Returns:
        The relative spread (0.05: the middle half of the ratios lies within 5 % of the median).
    """
    if len(ratios) < 2:
        return 0.0
    quartiles = statistics.quantiles(ratios, n=4, method="inclusive")
    median = statistics.median(ratios)
    return (quartiles[2] - quartiles[0]) / median if median > 0 else 0.0


@dataclass(frozen=True)
class ReferenceCalibration:
    """The reference model's latency on this machine, in the protocol it pairs with: what normalised
    latencies are scaled to (:func:`reference_calibration`).

    Attributes:
        reference: the reference model's preset (:data:`REFERENCE_PRESET`).
        key: what was timed (the reference's protocol fields, its batch and the machine), as JSON.
        device_name: the CPU's model.
        median_ms: the median of the clean calibration repeats, ms per batch: the scale.
        fastest_ms: the fastest calibration repeat, ms per batch.
        times_ms: the calibration repeats used (ms per batch), in order.
        contended: the calibration itself was flagged ``contended`` (:func:`time_cpu`): then the
            scale is too high by the machine's slowdown at calibration time.
    """

    reference: str
    key: str
    device_name: str
    median_ms: float
    fastest_ms: float
    times_ms: list[float]
    contended: bool

    def as_dict(self) -> dict[str, Any]:
        """The calibration as plain data (for a latency table file or a study's attributes)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceCalibration:
        """A calibration from :meth:`as_dict`.

        Args:
            data: the dict.

        Returns:
            The calibration.

        Raises:
            ExploreError: field ``reference calibration``: a field is missing.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise ExploreError("reference calibration", missing[0], "a calibration with every field "
                                                                    f"({', '.join(names)})")
        return cls(**{n: data[n] for n in names})


@dataclass(frozen=True)
class CpuTiming:
    """What :func:`time_cpu_paired` measured.

    Attributes:
        times: the candidate's repeats used (ms per pass), in order.
        reference_times: paired: the reference's repeat of each of those pairs (ms per pass); else empty.
        ratios: paired: candidate / reference time per pair used; else empty.
        contention: how busy the machine was.
    """

    times: list[float]
    reference_times: list[float]
    ratios: list[float]
    contention: Contention


def _timed_once(run: Callable[[], Any]) -> tuple[float, float]:
    """(wall ms, thread CPU ms) of one call."""
    c0, t0 = time.thread_time(), time.perf_counter()
    run()
    return (time.perf_counter() - t0) * 1e3, (time.thread_time() - c0) * 1e3


def time_cpu(run: Callable[[], Any], protocol: Protocol) -> tuple[list[float], Contention]:
    """Time ``run`` on the CPU and tell how busy the machine was: (times used, contention).

    Each repeat is timed by the wall clock and, with one thread, by the measuring thread's CPU clock:
    a repeat during which another process took the core shows less CPU than wall time, and is left
    out (contention only slows runs down). A fixed reference workload is timed just before and just
    after the repeats and compared with its baseline, which catches contention for caches and memory
    bandwidth too. A measurement that is not quiet (reference > :data:`CLEAN_RATIO` x baseline, or
    fewer than half the repeats clean) is repeated after each pause of :func:`contention_pauses`
    (:data:`CONTENTION_ATTEMPTS` attempts by default); the figures of the last attempt are then used and
    the result flagged ``contended``.

    Args:
        run: one forward pass.
        protocol: its ``warmup`` and ``repeats`` are used.

    Returns:
        (the repeats used in ms per pass, :class:`Contention`).
    """
    timed = time_cpu_paired(run, None, protocol)
    return timed.times, timed.contention


def time_cpu_paired(run: Callable[[], Any], reference: Callable[[], Any] | None, protocol: Protocol,
                    calibration_ms: float | None = None) -> CpuTiming:
    """Time ``run`` on the CPU with its repeats interleaved with repeats of ``reference``, pair by pair.

    Repeat i of the candidate and repeat i of the reference form pair i, timed back to back in the
    order R A, A R, R A, ... (ABBA: a slow drift falls on both sides alike). A candidate much faster
    than the reference is paired in groups: g of its repeats (:func:`reference_group`) with one
    reference repeat, each of the g ratios taken against that one (R A..A, A..A R, ...). Noise of a
    shared machine that lasts longer than one pair (another core streaming memory, a busy
    neighbour, a lower clock) slows both, and their ratio cancels it.

    A pair is used when its candidate repeat ran without preemption (:func:`clean_repeats`); a
    reference repeat that was preempted counts by its thread's CPU time (the time it ran: slowed
    by what slows the candidate, e.g. memory bandwidth, but not by the preemption). The checks of
    :func:`time_cpu` apply (a busy machine is waited out and measured again). The result is flagged
    ``contended`` too when its pair ratios spread more than :data:`SPREAD_LIMIT` (IQR / median: a
    slowdown that hit some pairs only) or, with ``calibration_ms``, when the reference's median
    exceeds :data:`SLOWDOWN_LIMIT` x the calibration (the machine slowed as a whole: the ratio
    corrects it); neither is measured again, which would multiply the cost on a machine that stays
    busy.

    Cost: one untimed reference run, then at most one reference repeat per candidate repeat, and no
    more of them than the candidate's time allows (groups; at least :data:`MIN_REFERENCE_REPEATS`):
    pairing at most about doubles the timing cost. The calibration adds
    :data:`CALIBRATION_REPEATS` reference runs once per machine and input.

    Args:
        run: the candidate's forward pass.
        reference: the reference model's forward pass (same protocol, same batch), or None: the
            candidate alone (:func:`time_cpu`).
        protocol: its ``warmup`` and ``repeats`` are used.
        calibration_ms: the reference's calibrated time (ms per pass, :class:`ReferenceCalibration`),
            or None: no slowdown check.

    Returns:
        :class:`CpuTiming`.
    """
    probe = reference_workload()
    cand_ms, ref_ms = 1.0, 1.0
    for _ in range(protocol.warmup):
        cand_ms = _timed_once(run)[0]
    if reference is not None:  # prepared and warmed once per process: one untimed run, and the group size
        cand_ms = _timed_once(run)[0]
        ref_ms = _timed_once(reference)[0]
    group = reference_group(cand_ms, ref_ms, protocol.repeats) if reference is not None else 1
    one_thread = torch.get_num_threads() == 1
    baseline = probe.baseline_ms()
    need = max(2, (protocol.repeats + 1) // 2)
    pauses = contention_pauses()
    attempt = 0
    pooled: list[tuple[float, float]] = []
    cpu_all: list[tuple[float, float]] = []
    while True:
        attempt += 1
        before = probe.probe_ms()
        walls, cpus, ref_walls, ref_cpus = [], [], [], []
        block = 0
        while len(walls) < protocol.repeats:
            n = min(group, protocol.repeats - len(walls))
            if reference is not None and block % 2 == 0:
                rw, rc = _timed_once(reference)
            timed = [_timed_once(run) for _ in range(n)]
            if reference is None:
                rw, rc = 1.0, 1.0
            elif block % 2 == 1:
                rw, rc = _timed_once(reference)
            for w, c in timed:
                walls.append(w)
                cpus.append(c)
                ref_walls.append(rw)
                ref_cpus.append(rc)
            block += 1
        after = probe.probe_ms()
        baseline = probe.baseline_ms()
        ratio = min(before, after) / baseline
        if one_thread:  # a preempted reference repeat counts by the time it ran (its thread's CPU time)
            clean = [(w, r if rc >= RUN_SHARE * r else rc) for w, c, r, rc in zip(walls, cpus, ref_walls, ref_cpus)
                     if c >= RUN_SHARE * w]
        else:
            clean = list(zip(walls, ref_walls))
        pooled += clean
        cpu_all += list(zip(cpus, ref_cpus))
        quiet = ratio <= CLEAN_RATIO and len(clean) >= need
        if quiet:
            used, share, contended = clean, len(clean) / len(walls), False
        elif attempt > len(pauses):
            share = len(pooled) / (attempt * len(walls))
            used = pooled if len(pooled) >= min(3, need) or not one_thread else cpu_all
            contended = True
        else:
            time.sleep(pauses[attempt - 1])
            continue
        times = [a for a, _ in used]
        if reference is None:
            return CpuTiming(times, [], [], Contention(ratio, share, attempt, contended, baseline))
        refs = [r for _, r in used]
        ratios = [a / r for a, r in used]
        slowdown = statistics.median(refs) / calibration_ms if calibration_ms else None
        spread = pair_spread(ratios)
        contended = contended or spread > SPREAD_LIMIT or (slowdown is not None and slowdown > SLOWDOWN_LIMIT)
        return CpuTiming(times, refs, ratios, Contention(ratio, share, attempt, contended, baseline, spread, slowdown))


_REFERENCE_MODELS: dict[tuple[int, int], nn.Module] = {}
_REFERENCE_RUNS: dict[str, Callable[[], Any]] = {}
_CALIBRATIONS: dict[str, ReferenceCalibration] = {}


def reference_model(img_size: int, in_chans: int) -> nn.Module:
    """The reference model of normalised latency (:data:`REFERENCE_PRESET`) at an input, built once per
    process.

    Args:
        img_size: input side (pixels).
        in_chans: input channels.

    Returns:
        The model, (B, in_chans, H, W) -> (B, 1000), in eval mode.
    """
    key = (img_size, in_chans)
    if key not in _REFERENCE_MODELS:
        from explore.arch import get_preset
        from explore.nn import build

        torch.manual_seed(0)
        _REFERENCE_MODELS[key] = build(get_preset(REFERENCE_PRESET, img_size=img_size, in_chans=in_chans)).eval()
    return _REFERENCE_MODELS[key]


def _reference_protocol(protocol: Protocol, batch: int) -> Protocol:
    """The protocol the reference model runs in next to ``protocol``: the same, at the reference's input;
    ``compile`` runs the reference ``fused`` (a compiled reference would take one of the compiled forwards
    between dynamo resets, :func:`explore.measure.runners.compile_budget`, and be compiled again after
    each reset; its calibrations are of the fused reference)."""
    mode = "fused" if protocol.mode == "compile" else protocol.mode
    if protocol.reference_img_size is None and protocol.reference_in_chans is None:
        return dataclasses.replace(protocol, batch_size=batch, mode=mode)
    return dataclasses.replace(protocol, batch_size=batch, mode=mode, img_size=protocol.reference_img_size or protocol.img_size,
                               img_width=None if protocol.reference_img_size else protocol.img_width,
                               in_chans=protocol.reference_in_chans or protocol.in_chans)


def _calibration_key(protocol: Protocol) -> str:
    """What a calibration is of: the reference protocol's fields that change its time, and the machine."""
    fields = {k: v for k, v in protocol.key().items()
              if k not in ("name", "warmup", "repeats", "figure", "reference_img_size", "reference_in_chans")}
    fields.update(reference=REFERENCE_PRESET, device_name=device_name(protocol.device))
    return json.dumps(fields, sort_keys=True)


def _reference_run(protocol: Protocol) -> Callable[[], Any]:
    """The reference model's forward pass in ``protocol`` (its input), prepared once per process."""
    key = _calibration_key(protocol)
    if key not in _REFERENCE_RUNS:
        model = reference_model(protocol.img_size, protocol.in_chans)
        device = torch.device("cpu")
        x = make_input(protocol, device, protocol.batch_size)
        if protocol.onnx:
            _REFERENCE_RUNS[key] = _onnx_run(model, protocol, x)
        else:
            runner = prepare_runner(model, protocol, device, x)
            _REFERENCE_RUNS[key] = runner.run
    return _REFERENCE_RUNS[key]


def calibration_file() -> Path:
    """The machine's file of reference calibrations: ``$EXPLORE_CALIBRATION_FILE``, else
    ``explore-reference-calibration.json`` in the temporary folder (beside the device locks of
    :func:`explore.device.lock_path`: one per machine)."""
    return Path(os.environ.get("EXPLORE_CALIBRATION_FILE")
                or os.path.join(tempfile.gettempdir(), "explore-reference-calibration.json"))


def _stored_calibrations() -> dict[str, Any]:
    try:
        data = json.loads(calibration_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _store_calibration(calibration: ReferenceCalibration) -> None:
    stored = _stored_calibrations()
    stored[calibration.key] = calibration.as_dict()
    text = json.dumps(stored, indent=1, sort_keys=True)
    try:
        write_atomically(calibration_file(), lambda tmp: tmp.write_text(text, encoding="utf-8"))
    except OSError:
        pass  # a read-only temporary folder: the calibration holds for this process only


def reference_calibration(protocol: Protocol) -> ReferenceCalibration:
    """The reference model's calibration for ``protocol`` (as the reference runs it, see
    :attr:`Protocol.reference_img_size`) on this machine: once per machine, kept across runs in
    :func:`calibration_file`, unless set by :func:`set_reference_calibration` (e.g. the one a
    latency table was built with).

    A calibration is :data:`CALIBRATION_REPEATS` repeats by :func:`time_cpu` (preempted repeats
    left out, a busy machine waited out); the scale is their median. The machine's stored one is
    used as it is, so that the normalised figures of every run on the machine share one scale; a
    stored calibration that was ``contended`` is replaced by the first one that is not (a process
    then calibrates again until one is quiet).

    Args:
        protocol: a CPU protocol; its batch is the reference's.

    Returns:
        The calibration.
    """
    reference = _reference_protocol(protocol, protocol.batch_size)
    key = _calibration_key(reference)
    if key in _CALIBRATIONS:
        return _CALIBRATIONS[key]
    stored = _stored_calibrations().get(key)
    known = None
    if isinstance(stored, dict):
        try:
            known = ReferenceCalibration.from_dict(stored)
        except (ExploreError, TypeError):
            known = None
    if known is not None and not known.contended:
        _CALIBRATIONS[key] = known
        return known
    run = _reference_run(reference)
    times, contention = time_cpu(run, dataclasses.replace(reference, repeats=CALIBRATION_REPEATS))
    fresh = ReferenceCalibration(REFERENCE_PRESET, key, device_name(reference.device), statistics.median(times),
                                 min(times), [float(t) for t in times], contention.contended)
    chosen = known if known is not None and fresh.contended else fresh
    if chosen is fresh:
        _store_calibration(fresh)
    _CALIBRATIONS[key] = chosen
    return chosen


def set_reference_calibration(calibration: ReferenceCalibration) -> None:
    """Use ``calibration`` for its key in this process instead of calibrating (a latency table's, so
    that its evaluation in a later run scales to the same figure).

    Args:
        calibration: from :meth:`ReferenceCalibration.from_dict` (or :func:`reference_calibration`).
    """
    _CALIBRATIONS[calibration.key] = calibration


def reference_calibrations() -> list[ReferenceCalibration]:
    """The calibrations this process holds (measured or set), in the order they were made."""
    return list(_CALIBRATIONS.values())


def _onnx_run(model: nn.Module, protocol: Protocol, x: torch.Tensor) -> Callable[[], Any]:
    """One ONNX Runtime pass of ``model`` on ``x`` (exported in the protocol's mode), one intra-op thread pool."""
    ort = _onnxruntime()

    net = copy.deepcopy(model).eval()
    if protocol.mode == "fused":
        fuse_batchnorm(net)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        with torch.inference_mode():
            torch.onnx.export(net, (x,), path, dynamo=False, input_names=["images"], output_names=["logits"],
                              opset_version=17)
        options = ort.SessionOptions()
        options.intra_op_num_threads = protocol.threads or 0
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {"images": x.numpy()}
    return lambda: session.run(None, feed)


@dataclass(frozen=True)
class Pairing:
    """The reference side of a normalised CPU measurement (:func:`time_cpu_paired`).

    Attributes:
        ratios: candidate / reference time per pair used.
        reference_times: the reference's repeats of those pairs (ms per pass).
        calibration: the reference's calibration the ratios are scaled to.
    """

    ratios: list[float]
    reference_times: list[float]
    calibration: ReferenceCalibration


@dataclass(frozen=True)
class Timed:
    """What timing one batch size gave: the times used (ms per pass), and per mode the CUDA diagnosis
    and passes per event pair, the compiled-graph counts or the CPU's contention and pairing."""

    times: list[float]
    host_ms: float | None = None
    gpu_exec_ms: float | None = None
    compiled_graphs: int | None = None
    compiled_calls: int | None = None
    contention: Contention | None = None
    passes: int | None = None
    pairing: Pairing | None = None


def make_input(protocol: Protocol, device: torch.device, batch: int) -> torch.Tensor:
    """The timed input, (batch, in_chans, H, W) of N(0, 1) values, built where it is used.

    On the protocol's device (no host tensor and no pageable copy: a batch sized from GPU memory fails
    on the GPU, as an out-of-memory the batch halving handles), in the autocast dtype when the
    protocol has ``amp`` (the first layer then casts nothing), in channels_last when the protocol
    says so. ONNX Runtime gets a float32 CPU tensor.
    """
    shape = (batch, protocol.in_chans, protocol.img_size, protocol.img_width or protocol.img_size)
    if protocol.onnx:
        return torch.randn(shape)
    dtype = amp_dtype(protocol.amp) or torch.float32
    layout = torch.channels_last if protocol.channels_last else torch.contiguous_format
    return torch.empty(shape, device=device, dtype=dtype, memory_format=layout).normal_()


def measure_batch(model: nn.Module, protocol: Protocol, device: torch.device, batch: int) -> Timed:
    """Time one batch size; raises whatever the run raises (out-of-memory included).

    On the CPU with ``figure="normalised"`` the repeats are paired with the reference model's
    (:func:`time_cpu_paired`; the reference is calibrated first, once per machine).

    Args:
        model: the model (copied, not changed).
        protocol: the protocol.
        device: its device, resolved.
        batch: the batch to time.

    Returns:
        :class:`Timed`.
    """
    x = make_input(protocol, device, batch)
    normalised = device.type == "cpu" and protocol.figure == "normalised"
    candidate = _onnx_run(model, protocol, x) if protocol.onnx else None
    runner = None if protocol.onnx else prepare_runner(model, protocol, device, x)  # out of memory: before the reference
    reference_run, calibration = None, None
    if normalised:
        reference = _reference_protocol(protocol, batch)
        calibration = reference_calibration(reference)
        reference_run = _reference_run(reference)
    if candidate is not None:
        timed = time_cpu_paired(candidate, reference_run, protocol, calibration.median_ms if calibration else None)
        return Timed(timed.times, contention=timed.contention, pairing=_pairing(timed, calibration))
    assert runner is not None
    try:
        return _time_runner(runner, protocol, device, reference_run, calibration)
    except BaseException:
        forget_runner(runner)  # e.g. out of memory: that batch is not measured again; its model copy is freed
        raise


def _time_runner(runner: Runner, protocol: Protocol, device: torch.device, reference_run: Callable[[], Any] | None,
                 calibration: ReferenceCalibration | None) -> Timed:
    """Time a prepared runner (CUDA events or the paired CPU loop); ``compile`` must have run compiled code
    in every pass of this measurement (a reused compiled forward compiles nothing and still counts its calls)."""
    if runner.counter is not None:  # compile: the first run compiles, the second must not
        protocol = dataclasses.replace(protocol, warmup=max(2, protocol.warmup))
    contention, pairing = None, None
    passes = None
    if device.type == "cuda":
        cuda = time_cuda(runner, protocol, device)
        times, host_ms, exec_ms, passes, runs = cuda.times, cuda.host_ms, cuda.gpu_exec_ms, cuda.passes, cuda.runs
    else:
        timed = time_cpu_paired(runner.run, reference_run, protocol, calibration.median_ms if calibration else None)
        times, contention, pairing, host_ms, exec_ms = timed.times, timed.contention, _pairing(timed, calibration), None, None
        runs = protocol.warmup + protocol.repeats
    counter = runner.counter
    if counter is None:
        return Timed(times, host_ms, exec_ms, contention=contention, passes=passes, pairing=pairing)
    calls = counter.calls - runner.calls_before
    if counter.graphs == 0 or calls < runs:
        raise ExploreError("--mode", "compile",
                           f"torch.compile ran {runs - calls} of {runs} forward passes eagerly "
                           f"({counter.graphs} graphs compiled): the measurement would not be of compiled code")
    return Timed(times, host_ms, exec_ms, counter.graphs, calls, contention, passes, pairing)


def _pairing(timed: CpuTiming, calibration: ReferenceCalibration | None) -> Pairing | None:
    if calibration is None or not timed.ratios:
        return None
    return Pairing(timed.ratios, timed.reference_times, calibration)


def measure(model: nn.Module, protocol: Protocol) -> Measurement:
    """Run ``protocol`` on a copy of ``model`` (the model itself is not changed).

    The protocol's device is made current for the whole measurement (CUDA events, streams and graph
    capture act on the current device), and on CUDA ``torch.backends.cudnn.benchmark`` is on (the
    caller's setting restored after): shapes are fixed, so the warm-up autotunes the convolutions
    and the timed (or captured) passes use the fastest algorithms, not cuDNN's heuristic ones. A batch that runs out of memory is halved until it fits:
    the failed attempt's references are dropped and the allocator's cache emptied before the next
    try, and out-of-memory errors of the allocator, cuDNN and cuBLAS all count (see
    :func:`explore.device.is_out_of_memory`). ``batch_size`` of the result is the batch that was
    timed, so per-image figures (``latency_ms_per_img``, ``throughput_img_s``) compare across
    models timed at different batches.

    Args:
        model: (B, in_chans, H, W) -> (B, K); any nn.Module, ours or a reference implementation.
        protocol: from :func:`get_protocol`.

    Returns:
        :class:`Measurement`.

    Raises:
        DeviceError: the protocol's device is unknown or not available here.
        OutOfMemory: even a batch of 1 does not fit in memory (field ``--batch-size``; an
            ``ExploreError`` and a ``MemoryError``, so a study prunes the trial as out of memory).
        ExploreError: ``compile`` mode ran some forward passes eagerly (field ``--mode``); onnx-cpu without
            its libraries (field ``--protocol``).
    """
    device = resolve_device(protocol.device)
    batch = protocol.batch_size
    retries = 0
    old_threads = torch.get_num_threads()
    old_benchmark = torch.backends.cudnn.benchmark
    if protocol.threads and device.type == "cpu":
        torch.set_num_threads(protocol.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: the warm-up autotunes, captures use the best
    try:
        with on_device(device):
            while True:
                oom = None
                try:
                    timed = measure_batch(model, protocol, device, batch)
                    break
                except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
                    if not is_out_of_memory(exc):
                        raise
                    oom = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                release_memory()  # outside the except block: the failed frames are gone
                if batch == 1:
                    raise OutOfMemory("--batch-size", protocol.batch_size, f"out of memory even at batch 1 ({oom})")
                batch, retries = max(1, batch // 2), retries + 1
    finally:
        torch.set_num_threads(old_threads)
        torch.backends.cudnn.benchmark = old_benchmark
    raw_median = statistics.median(timed.times)
    figures, figure = timed.times, "raw"
    pairing = timed.pairing
    if pairing is not None:
        figures, figure = [r * pairing.calibration.median_ms for r in pairing.ratios], "normalised"
    median, iqr, cv = _stats(figures)
    on_cuda = device.type == "cuda" and not protocol.onnx
    paired: dict[str, Any] = {}
    if pairing is not None:
        cal = pairing.calibration
        paired = dict(
            normalised_median_ms=median, normalised_ms_per_img=median / batch,
            pair_ratio=statistics.median(pairing.ratios), pair_spread=pair_spread(pairing.ratios),
            pair_ratios=[float(r) for r in pairing.ratios], reference_name=cal.reference,
            reference_median_ms=statistics.median(pairing.reference_times),
            reference_slowdown=timed.contention.reference_slowdown if timed.contention else None,
            reference_times_ms=[float(t) for t in pairing.reference_times],
            reference_calibration_ms=cal.median_ms, reference_calibration_fastest_ms=cal.fastest_ms,
            reference_calibration_times_ms=[float(t) for t in cal.times_ms],
            reference_calibration_contended=cal.contended)
    return Measurement(
        protocol=protocol.key(),
        device_name=device_name(device),
        batch_size=batch,
        median_ms=median,
        iqr_ms=iqr,
        cv=cv,
        throughput_img_s=batch / (median / 1e3),
        latency_ms_per_img=median / batch,
        gpu_ms=median if on_cuda else None,
        host_ms=timed.host_ms,
        host_bound=(host_bound_rule(timed.host_ms, timed.gpu_exec_ms)
                    if timed.host_ms is not None and timed.gpu_exec_ms is not None else None),
        oom_retries=retries,
        versions=library_versions(protocol.onnx),
        gpu_exec_ms=timed.gpu_exec_ms,
        compiled_graphs=timed.compiled_graphs,
        compiled_calls=timed.compiled_calls,
        contention_ratio=timed.contention.ratio if timed.contention else None,
        clean_share=timed.contention.clean_share if timed.contention else None,
        attempts=timed.contention.attempts if timed.contention else None,
        contended=timed.contention.contended if timed.contention else None,
        times_ms=[float(t) for t in timed.times],
        passes_per_pair=timed.passes,
        figure=figure,
        raw_median_ms=raw_median,
        raw_ms_per_img=raw_median / batch,
        **paired,
    )


def measure_pair(first: nn.Module, second: nn.Module, protocol: Protocol) -> CpuTiming:
    """Time two models repeat by repeat on the CPU (:func:`time_cpu_paired`, ``second`` in the
    reference's place, no calibration): e.g. ours against timm's model of the same name.

    Args:
        first: a model, (B, in_chans, H, W) -> anything (copied, not changed).
        second: the model it is compared with.
        protocol: a CPU protocol (its mode, batch, threads, warm-up and repeats are used).

    Returns:
        :class:`CpuTiming`: ``times`` are ``first``'s (ms per pass), ``reference_times``
        ``second``'s, ``ratios`` first / second per pair.

    Raises:
        ExploreError: the protocol's device is not the CPU (field ``--device``); as :func:`measure`.
    """
    device = resolve_device(protocol.device)
    if device.type != "cpu":
        raise ExploreError("--device", protocol.device, "the CPU: two models are paired repeat by repeat on the "
                                                        "CPU protocols only")
    old_threads = torch.get_num_threads()
    if protocol.threads:
        torch.set_num_threads(protocol.threads)
    try:
        x = make_input(protocol, device, protocol.batch_size)
        if protocol.onnx:
            runs = [_onnx_run(model, protocol, x) for model in (first, second)]
        else:
            runners = [prepare_runner(model, protocol, device, x) for model in (first, second)]
            runs = [runner.run for runner in runners]
        return time_cpu_paired(runs[0], runs[1], dataclasses.replace(protocol, warmup=max(2, protocol.warmup)))
    finally:
        torch.set_num_threads(old_threads)
