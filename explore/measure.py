"""Measurement: parameters, MACs (fvcore) and measured latency on a device.

* params: trainable and non-trainable parameters (buffers not counted), as a plain count.
* MACs: fvcore's ``FlopCountAnalysis`` (which counts one multiply-accumulate per "flop") on a
  batch-1 input, with normalisation layers not counted, as in the papers' tables
  (arXiv:2305.07027 Table 1 reports MACs with BN folded away). Convolutions, linear layers and
  the attention matmuls are counted (fused ``scaled_dot_product_attention`` through a handle of
  ours); elementwise ops (activations, residual adds, softmax) are not.
* latency: wall-clock time of ``model(x)`` in eval mode under ``torch.inference_mode``, after
  warm-up, over repeated timed runs; reported as median with the inter-quartile range and the
  coefficient of variation. CUDA runs synchronise before and after each timed run.
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn

from explore.device import resolve_device

__all__ = ["count_params", "count_macs", "LatencyResult", "measure_latency"]

_NORM_OPS = ("aten::batch_norm", "aten::layer_norm", "aten::group_norm", "aten::instance_norm")


def count_params(model: nn.Module) -> int:
    """Number of parameters (elements of ``model.parameters()``)."""
    return sum(p.numel() for p in model.parameters())


def _not_counted(inputs, outputs) -> int:  # fvcore handle signature
    return 0


def _sdpa_macs(inputs, outputs) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention``: Q K^T and A V products,
    B*h*N*M*d + B*h*N*M*d_v MACs for q (B, h, N, d), k (B, h, M, d), v (B, h, M, d_v)."""
    from fvcore.nn.jit_handles import get_shape

    q, v = get_shape(inputs[0]), get_shape(inputs[2])
    batch = 1
    for dim in q[:-2]:
        batch *= dim
    n, d = q[-2], q[-1]
    m, dv = v[-2], v[-1]
    return batch * n * m * (d + dv)


def count_macs(model: nn.Module, img_size: int, in_chans: int = 3) -> int:
    """Multiply-accumulates of one forward pass on one (1, in_chans, img_size, img_size) image.

    The model is traced on CPU in eval mode (its train/eval state is restored afterwards).
    Normalisation ops are not counted.

    Returns:
        MACs as a plain integer count.
    """
    with warnings.catch_warnings():  # fvcore's import touches the deprecated torch.jit.script
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis  # heavy import, only where used

    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        x = torch.zeros(1, in_chans, img_size, img_size, device=device)
        analysis = FlopCountAnalysis(model, x)
        for op in _NORM_OPS:
            analysis.set_op_handle(op, _not_counted)
        analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_macs)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return int(analysis.total())
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class LatencyResult:
    """Measured latency of one forward pass of a batch.

    Attributes:
        median_ms: median over the timed repeats, milliseconds per batch.
        iqr_ms: inter-quartile range (p75 - p25), milliseconds.
        cv: coefficient of variation (stdev / mean) of the repeats, a fraction.
        throughput_img_s: batch_size / median, images per second.
        batch_size, img_size, device, threads, warmup, repeats: the protocol's parameters.
    """

    median_ms: float
    iqr_ms: float
    cv: float
    throughput_img_s: float
    batch_size: int
    img_size: int
    device: str
    threads: int
    warmup: int
    repeats: int

    def as_attrs(self, prefix: str = "latency_") -> dict[str, float | int | str]:
        """Flat dict for Optuna user attributes."""
        return {f"{prefix}{k}": v for k, v in asdict(self).items()}


def measure_latency(model: nn.Module, img_size: int, in_chans: int = 3, *, batch_size: int = 16,
                    device: str | torch.device = "cpu", warmup: int = 5, repeats: int = 20,
                    threads: int | None = None) -> LatencyResult:
    """Measure the forward latency of ``model`` on (batch_size, in_chans, img_size, img_size) inputs.

    Follows the CPU protocol of arXiv:2305.07027 §4.1 (eval mode, fixed batch, fixed threads) in its
    plain eager form; the fused/compiled GPU protocols build on it.

    Args:
        model: any module; it is put in eval mode (and restored) and moved to ``device``.
        img_size: input side in pixels.
        batch_size: images per forward pass.
        device: ``"cpu"``, ``"cuda"`` or a ``torch.device``.
        warmup: untimed runs first.
        repeats: timed runs (>= 2).
        threads: CPU intra-op threads during the measurement (restored afterwards); None keeps
            the current setting.

    Returns:
        :class:`LatencyResult` (ms per batch).

    Raises:
        DeviceError: bad or unavailable device.
        ValueError: ``repeats`` < 2 or ``batch_size`` < 1.
    """
    if repeats < 2:
        raise ValueError(f"repeats = {repeats}: need >= 2 timed runs for a spread")
    if batch_size < 1:
        raise ValueError(f"batch_size = {batch_size}: expected >= 1")
    dev = resolve_device(device) if isinstance(device, str) else device
    old_threads = torch.get_num_threads()
    if threads is not None and dev.type == "cpu":
        torch.set_num_threads(threads)
    was_training = model.training
    model.eval().to(dev)
    x = torch.randn(batch_size, in_chans, img_size, img_size, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            sync()
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                sync()
                times.append((time.perf_counter() - start) * 1e3)
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)
    q = statistics.quantiles(times, n=4)
    median = statistics.median(times)
    mean = statistics.fmean(times)
    return LatencyResult(
        median_ms=median,
        iqr_ms=q[2] - q[0],
        cv=statistics.stdev(times) / mean if mean > 0 else 0.0,
        throughput_img_s=batch_size / (median / 1e3),
        batch_size=batch_size,
        img_size=img_size,
        device=str(dev),
        threads=torch.get_num_threads() if threads is None or dev.type != "cpu" else threads,
        warmup=warmup,
        repeats=repeats,
    )
