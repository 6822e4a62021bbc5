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
(fused + ``torch.compile``) or ``cuda-graph`` (fused + CUDA-graph capture and replay). It warms up,
then times ``repeats`` runs and reports the median, the inter-quartile range and the coefficient of
variation. On CUDA, each run is timed twice: with CUDA events (the GPU's time) and on the host
around the call (the time to queue the kernels); when queueing takes about as long as running
(host >= 0.8 x GPU), the figure is the host's, not the GPU's, and the result says so
(``host_bound``): small models at small batches need ``compile`` or ``cuda-graph`` there.
A batch that does not fit in GPU memory is halved until it does (``oom_retries``,
``batch_size``).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import nn

from explore.device import resolve_device
from explore.errors import DeviceError, ExploreError
from explore.nn.layers import fuse_batchnorm

__all__ = [
    "PROTOCOLS",
    "MODES",
    "Protocol",
    "Measurement",
    "get_protocol",
    "measure",
    "peak_memory_mib",
    "library_versions",
]

MODES = ("eager", "fused", "compile", "cuda-graph")


@dataclass(frozen=True)
class Protocol:
    """A measurement protocol's parameters (all recorded with every result).

    Attributes:
        name: the protocol's name (see the module table).
        device: ``cpu`` or ``cuda[:N]``.
        batch_size: images per forward pass (the first try; halved on CUDA out-of-memory).
        img_size: input side in pixels; in_chans: input channels.
        amp: autocast dtype (``fp16``, ``bf16``) or None for fp32.
        channels_last: NHWC memory format for model and input.
        threads: CPU intra-op threads while measuring (None: leave as is).
        warmup: untimed runs first; repeats: timed runs (>= 2).
        mode: ``eager``, ``fused``, ``compile`` or ``cuda-graph``.
        onnx: run through ONNX Runtime (CPU) instead of PyTorch.
    """

    name: str
    device: str
    batch_size: int
    img_size: int = 224
    in_chans: int = 3
    amp: str | None = None
    channels_last: bool = False
    threads: int | None = None
    warmup: int = 10
    repeats: int = 30
    mode: str = "fused"
    onnx: bool = False

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
        gpu_ms, host_ms: CUDA only: medians of the GPU's time (CUDA events) and of the host's time
            to queue one forward pass; host_bound: host_ms >= 0.8 * gpu_ms.
        oom_retries: how often the batch was halved.
        versions: library versions (torch, onnxruntime where used).
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

    def as_attrs(self, prefix: str = "latency_") -> dict[str, Any]:
        """Flat dict for Optuna user attributes (protocol parameters prefixed ``<prefix>protocol_``)."""
        out: dict[str, Any] = {f"{prefix}protocol_{k}": v for k, v in self.protocol.items()}
        for key, value in asdict(self).items():
            if key not in ("protocol", "versions"):
                out[f"{prefix}{key}"] = value
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


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _amp_dtype(amp: str | None) -> torch.dtype | None:
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(amp or "")


def _stats(times_ms: list[float]) -> tuple[float, float, float]:
    quartiles = statistics.quantiles(times_ms, n=4)
    mean = statistics.fmean(times_ms)
    cv = statistics.stdev(times_ms) / mean if mean > 0 else 0.0
    return statistics.median(times_ms), quartiles[2] - quartiles[0], cv


def _prepare(model: nn.Module, protocol: Protocol, device: torch.device, x: torch.Tensor) -> Callable[[], Any]:
    """The callable that runs one forward pass of ``x`` in the protocol's mode."""
    net = copy.deepcopy(model).eval()
    if protocol.mode != "eager":
        fuse_batchnorm(net)
    net = net.to(device)
    if protocol.channels_last:
        net = net.to(memory_format=torch.channels_last)
    amp = _amp_dtype(protocol.amp)

    def autocast():
        return torch.autocast(device.type, dtype=amp, enabled=amp is not None)

    if protocol.mode == "compile":
        net = torch.compile(net)
    if protocol.mode == "cuda-graph":
        static_x = x.clone()
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream), torch.inference_mode(), autocast():
            for _ in range(3):  # warm-up on a side stream before capture
                net(static_x)
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), autocast(), torch.cuda.graph(graph):
            net(static_x)
        return graph.replay

    def forward() -> Any:
        with torch.inference_mode(), autocast():
            return net(x)

    return forward


def _time_torch(run: Callable[[], Any], protocol: Protocol, device: torch.device) -> tuple[list[float], list[float]]:
    """(wall or GPU ms per run, host ms per run (CUDA only, else empty))."""
    for _ in range(protocol.warmup):
        run()
    if device.type != "cuda":
        times = []
        for _ in range(protocol.repeats):
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1e3)
        return times, []
    torch.cuda.synchronize(device)
    gpu, host = [], []
    for _ in range(protocol.repeats):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        t0 = time.perf_counter()
        run()
        host.append((time.perf_counter() - t0) * 1e3)
        end.record()
        end.synchronize()
        gpu.append(begin.elapsed_time(end))
    return gpu, host


def _time_onnx(model: nn.Module, protocol: Protocol, x: torch.Tensor) -> list[float]:
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
    for _ in range(protocol.warmup):
        session.run(None, feed)
    times = []
    for _ in range(protocol.repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def measure(model: nn.Module, protocol: Protocol) -> Measurement:
    """Run ``protocol`` on a copy of ``model`` (the model itself is not changed).

    Args:
        model: (B, in_chans, H, W) -> (B, K); any nn.Module, ours or a reference implementation.
        protocol: from :func:`get_protocol`.

    Returns:
        :class:`Measurement`.

    Raises:
        DeviceError: the protocol's device is unknown or not available here.
        ExploreError: even a batch of 1 does not fit in GPU memory.
    """
    device = resolve_device(protocol.device)
    batch = protocol.batch_size
    retries = 0
    old_threads = torch.get_num_threads()
    if protocol.threads and device.type == "cpu":
        torch.set_num_threads(protocol.threads)
    try:
        while True:
            x = torch.randn(batch, protocol.in_chans, protocol.img_size, protocol.img_size)
            try:
                if protocol.onnx:
                    times, host = _time_onnx(model, protocol, x), []
                else:
                    x = x.to(device)
                    if protocol.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    times, host = _time_torch(_prepare(model, protocol, device, x), protocol, device)
                break
            except torch.cuda.OutOfMemoryError:
                del x
                torch.cuda.empty_cache()
                if batch == 1:
                    raise ExploreError("--batch-size", protocol.batch_size,
                                       "out of GPU memory even at batch 1") from None
                batch, retries = max(1, batch // 2), retries + 1
    finally:
        torch.set_num_threads(old_threads)
    median, iqr, cv = _stats(times)
    host_ms = statistics.median(host) if host else None
    return Measurement(
        protocol=protocol.key(),
        device_name=_device_name(device),
        batch_size=batch,
        median_ms=median,
        iqr_ms=iqr,
        cv=cv,
        throughput_img_s=batch / (median / 1e3),
        latency_ms_per_img=median / batch,
        gpu_ms=median if host else None,
        host_ms=host_ms,
        host_bound=(host_ms >= 0.8 * median) if host_ms is not None else None,
        oom_retries=retries,
        versions=library_versions(protocol.onnx),
    )


def peak_memory_mib(model: nn.Module, protocol: Protocol) -> dict[str, float]:
    """Peak GPU memory (MiB) of one inference pass and of one training step (forward, backward,
    SGD update) at the protocol's batch, precision and memory format.

    Raises:
        DeviceError: the protocol's device is not CUDA.
    """
    device = resolve_device(protocol.device)
    if device.type != "cuda":
        raise DeviceError("--device", protocol.device, "peak GPU memory needs a CUDA device")
    amp = _amp_dtype(protocol.amp)
    result = {}
    for phase in ("inference", "train_step"):
        net = copy.deepcopy(model).to(device)
        if protocol.channels_last:
            net = net.to(memory_format=torch.channels_last)
        x = torch.randn(protocol.batch_size, protocol.in_chans, protocol.img_size, protocol.img_size, device=device)
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        if phase == "inference":
            net.eval()
            with torch.inference_mode(), torch.autocast("cuda", dtype=amp, enabled=amp is not None):
                net(x)
        else:
            net.train()
            optimizer = torch.optim.SGD(net.parameters(), lr=0.0)
            with torch.autocast("cuda", dtype=amp, enabled=amp is not None):
                loss = net(x).float().logsumexp(-1).mean()
            loss.backward()
            optimizer.step()
        torch.cuda.synchronize(device)
        result[f"{phase}_mib"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        del net, x
    return result
