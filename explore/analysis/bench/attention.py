"""Benchmark: latency of one attention layer against the number of tokens, for every kind.

``explore bench attention [--device cpu|cuda] [--out reports/attention_scaling]``.

Each token mixer of the generator is built alone (C channels, batch B) and timed in eval mode on
square maps of growing side, so N = side^2 tokens: softmax attention over all tokens (our MHSA,
PyTorch ``scaled_dot_product_attention``), CGA over the whole map and in 7x7 windows (the CGA
paper's setting), ReLU linear attention and multi-scale ReLU linear attention (the MIT paper's
LiteMLA). The growth exponent of each kind is the slope of log(latency) against log(N) over the
larger half of the sizes (1 = linear in tokens, 2 = quadratic). The MIT paper's claim
(arXiv:2205.14756 §3.1): ReLU linear attention is linear in N where softmax attention is
quadratic. Timed with the measurement protocols (``cpu-latency`` on the CPU, ``gpu-latency`` on
CUDA, both eager and fp32 here). A table, not a timed test: these machines are noisy.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from explore.arch import StageConfig
from explore.device import resolve_device
from explore.measure import get_protocol, time_model
from explore.nn import make_token_mixer

__all__ = ["KINDS", "build_mixer", "run", "growth_exponent", "growth_exponents"]

KINDS: dict[str, dict] = {
    "softmax (SDPA, global)": dict(token_mixer="mhsa", window_size=0),
    "CGA (global)": dict(token_mixer="cga", window_size=0),
    "CGA (7x7 windows)": dict(token_mixer="cga", window_size=7),
    "ReLU linear": dict(token_mixer="linear"),
    "multi-scale ReLU linear (5)": dict(token_mixer="msla", scales=(5,)),
}


def build_mixer(kind: str, channels: int, side: int, heads: int = 4, head_dim: int = 16) -> torch.nn.Module:
    """The token mixer ``kind`` (a key of :data:`KINDS`) for (B, channels, side, side) inputs."""
    stage = StageConfig(width=channels, depth=1, heads=heads, qk_dim=head_dim, kernels=(5,) * heads, **KINDS[kind])
    mixer = make_token_mixer(stage, side, "bn", "relu")
    assert mixer is not None
    return mixer.eval()


def growth_exponent(tokens: list[int], ms: list[float]) -> float:
    """Least-squares slope of log(ms) on log(tokens) over the larger half of the points."""
    points = list(zip(tokens, ms))[len(tokens) // 2:]
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else float("nan")


def growth_exponents(tokens: list[int], results: dict[str, list[float]]) -> dict[str, float]:
    """:func:`growth_exponent` of every kind."""
    return {kind: growth_exponent(tokens, ms) for kind, ms in results.items()}


def run(device: str = "cpu", sides: tuple[int, ...] = (8, 16, 24, 32, 48, 64), channels: int = 64,
        batch: int = 1, repeats: int = 10, threads: int | None = None) -> tuple[list[int], dict[str, list[float]]]:
    """Time every kind at every side (eager, fp32; ``threads`` CPU threads, None: torch's default).

    Returns:
        (token counts N, {kind: median latency in ms per N}).

    Raises:
        DeviceError: the device is unknown or unavailable.
    """
    dev = resolve_device(device)
    name = "gpu-latency" if dev.type == "cuda" else "cpu-latency"
    results: dict[str, list[float]] = {}
    for kind in KINDS:
        times = []
        for side in sides:
            protocol = get_protocol(name, device=str(dev), batch_size=batch, img_size=side, in_chans=channels,
                                    warmup=3, repeats=repeats, mode="eager")
            protocol = dataclasses.replace(protocol, threads=threads, amp=None, channels_last=False)
            times.append(time_model(build_mixer(kind, channels, side), protocol).median_ms)
        results[kind] = times
    return [s * s for s in sides], results
