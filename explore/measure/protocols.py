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
(fused + ``torch.compile``, dynamo reset per model and the compiled graphs counted: a pass that ran eagerly makes the measurement
fail) or ``cuda-graph`` (fused + CUDA-graph capture and replay). It warms up, then times ``repeats``
runs and reports the median, the inter-quartile range and the coefficient of variation. The input
is built on the device, in the protocol's precision and memory format.

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
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Callable

import torch
from torch import nn

from explore.device import is_out_of_memory, on_device, release_memory, resolve_device
from explore.errors import ExploreError, OutOfMemory
from explore.measure.fusion import fuse_batchnorm
from explore.measure.runners import amp_dtype, host_bound_rule, prepare_runner, time_cuda

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
]

MODES = ("eager", "fused", "compile", "cuda-graph")


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

    def key(self) -> dict[str, Any]:
        """The parameters as a plain dict (for caches and trial attributes)."""
        return asdict(self)


PROTOCOLS: dict[str, Protocol] = {
    "gpu-throughput": Protocol("gpu-throughput", "cuda", 2048, amp="fp16", channels_last=True, warmup=10, repeats=30),
    "gpu-latency": Protocol("gpu-latency", "cuda", 1, amp="fp16", channels_last=True, warmup=50, repeats=200),
    "cpu-latency": Protocol("cpu-latency", "cpu", 16, threads=1, warmup=5, repeats=20),
    "onnx-cpu": Protocol("onnx-cpu", "cpu", 16, threads=1, warmup=5, repeats=20, onnx=True),
}
"""The named protocols with their default parameters."""


def get_protocol(name: str, **overrides: Any) -> Protocol:
    """A named protocol, with parameters overridden (e.g. ``img_size=64, mode="compile"``).

    Raises:
        ExploreError: unknown protocol (field ``--protocol``), unknown mode (``--mode``), a mode the
            protocol cannot run (``cuda-graph`` off CUDA, ``compile``/``cuda-graph`` with ONNX),
            or a bad batch / repeats.
    """
    if name not in PROTOCOLS:
        raise ExploreError("--protocol", name, f"expected one of {', '.join(PROTOCOLS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Protocol)}
    if unknown:
        raise ExploreError("protocol parameter", sorted(unknown)[0], "unknown protocol parameter")
    protocol = dataclasses.replace(PROTOCOLS[name], **overrides)
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
            model, and compiled-graph executions over all runs (at least one per run, or the
            measurement raises).
        contention_ratio, clean_share, attempts, contended: CPU only: how busy the machine was
            (:class:`Contention`); ``median_ms``, ``iqr_ms`` and ``cv`` are then of the clean
            repeats, or of the scaled ones when ``contended``.
        times_ms: the timed runs behind ``median_ms`` (ms per forward pass of the batch), in order.
        passes_per_pair: CUDA only: forward passes timed between one pair of CUDA events
            (:func:`explore.measure.runners.passes_per_pair`).
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

    def as_attrs(self, prefix: str = "latency_") -> dict[str, Any]:
        """Flat dict for Optuna user attributes (protocol parameters prefixed ``<prefix>protocol_``)."""
        out: dict[str, Any] = {f"{prefix}protocol_{k}": v for k, v in self.protocol.items()}
        for key, value in asdict(self).items():
            if key not in ("protocol", "versions", "times_ms"):  # latency_ms_per_img stays latency_ms_per_img
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
"""Measurements of one model before a contended figure is accepted (with a pause between them)."""
_CONTENTION_PAUSE_S = (1.0, 3.0)


@dataclass(frozen=True)
class Contention:
    """How busy the CPU was while a model was timed (see :func:`time_cpu`).

    Attributes:
        ratio: the reference workload's time just before and after the timed repeats (the faster of
            the two) / its baseline (1.0: quiet; 1.5: it ran 1.5x slower than on the quiet machine).
        clean_share: share of the repeats (of the attempt used; of all attempts when contended)
            that ran without preemption
            (thread CPU time >= :data:`RUN_SHARE` x wall time; 1.0 with several threads, where this
            cannot be told).
        attempts: measurements made (a contended one is repeated after a pause, up to
            :data:`CONTENTION_ATTEMPTS`).
        contended: True when no attempt was quiet with at least half of its repeats clean; the
            figure is then the median of the clean repeats of all attempts, or, with fewer than 3
            of those, of the thread's CPU time per repeat (one thread: the time the work took
            while it ran).
        baseline_ms: the reference workload's uncontended time on this machine (ms): the fastest
            probe of this process so far (contention only slows it down).
    """

    ratio: float
    clean_share: float
    attempts: int
    contended: bool
    baseline_ms: float


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


def time_cpu(run: Callable[[], Any], protocol: Protocol) -> tuple[list[float], Contention]:
    """Time ``run`` on the CPU and tell how busy the machine was: (times used, contention).

    Each repeat is timed by the wall clock and, with one thread, by the measuring thread's CPU clock:
    a repeat during which another process took the core shows less CPU than wall time, and is left
    out (contention only slows runs down). A fixed reference workload is timed just before and just
    after the repeats and compared with its baseline, which catches contention for caches and memory
    bandwidth too. A measurement that is not quiet (reference > :data:`CLEAN_RATIO` x baseline, or
    fewer than half the repeats clean) is repeated after a pause, up to :data:`CONTENTION_ATTEMPTS`
    times; the figures of the last attempt are then used and the result flagged ``contended``.
    """
    reference = reference_workload()
    for _ in range(protocol.warmup):
        run()
    one_thread = torch.get_num_threads() == 1
    baseline = reference.baseline_ms()
    need = max(2, (protocol.repeats + 1) // 2)
    attempt = 0
    pooled: list[float] = []
    cpu_all: list[float] = []
    while True:
        attempt += 1
        before = reference.probe_ms()
        walls, cpus = [], []
        for _ in range(protocol.repeats):
            c0, t0 = time.thread_time(), time.perf_counter()
            run()
            walls.append((time.perf_counter() - t0) * 1e3)
            cpus.append((time.thread_time() - c0) * 1e3)
        after = reference.probe_ms()
        baseline = reference.baseline_ms()
        ratio = min(before, after) / baseline
        clean = clean_repeats(walls, cpus if one_thread else None)
        pooled += clean
        cpu_all += cpus
        if ratio <= CLEAN_RATIO and len(clean) >= need:
            return clean, Contention(ratio, len(clean) / len(walls), attempt, False, baseline)
        if attempt >= CONTENTION_ATTEMPTS:
            share = len(pooled) / (attempt * len(walls))
            figures = pooled if len(pooled) >= min(3, need) or not one_thread else cpu_all
            return figures, Contention(ratio, share, attempt, True, baseline)
        time.sleep(_CONTENTION_PAUSE_S[min(attempt - 1, len(_CONTENTION_PAUSE_S) - 1)])


def _time_onnx(model: nn.Module, protocol: Protocol, x: torch.Tensor) -> tuple[list[float], Contention]:
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
    return time_cpu(lambda: session.run(None, feed), protocol)


@dataclass(frozen=True)
class Timed:
    """What timing one batch size gave: the times used (ms per pass), and per mode the CUDA diagnosis
    and passes per event pair, the compiled-graph counts or the CPU's contention."""

    times: list[float]
    host_ms: float | None = None
    gpu_exec_ms: float | None = None
    compiled_graphs: int | None = None
    compiled_calls: int | None = None
    contention: Contention | None = None
    passes: int | None = None


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
    """Time one batch size; raises whatever the run raises (out-of-memory included)."""
    x = make_input(protocol, device, batch)
    if protocol.onnx:
        times, contention = _time_onnx(model, protocol, x)
        return Timed(times, contention=contention)
    runner = prepare_runner(model, protocol, device, x)
    if runner.counter is not None:  # compile: the first run compiles, the second must not
        protocol = dataclasses.replace(protocol, warmup=max(2, protocol.warmup))
    contention = None
    passes = None
    if device.type == "cuda":
        cuda = time_cuda(runner, protocol, device)
        times, host_ms, exec_ms, passes, runs = cuda.times, cuda.host_ms, cuda.gpu_exec_ms, cuda.passes, cuda.runs
    else:
        (times, contention), host_ms, exec_ms = time_cpu(runner.run, protocol), None, None
        runs = protocol.warmup + protocol.repeats
    counter = runner.counter
    if counter is None:
        return Timed(times, host_ms, exec_ms, contention=contention, passes=passes)
    if counter.graphs == 0 or counter.calls < runs:
        raise ExploreError("--mode", "compile",
                           f"torch.compile ran {runs - counter.calls} of {runs} forward passes eagerly "
                           f"({counter.graphs} graphs compiled): the measurement would not be of compiled code")
    return Timed(times, host_ms, exec_ms, counter.graphs, counter.calls, contention, passes)


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
    median, iqr, cv = _stats(timed.times)
    on_cuda = device.type == "cuda" and not protocol.onnx
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
    )
