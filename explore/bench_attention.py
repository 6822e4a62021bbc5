"""Benchmark: latency of one attention layer against the number of tokens, for every kind.

Run: ``python -m explore.bench_attention [--device cpu|cuda] [--out reports/attention_scaling]``.

Each token mixer of the generator is built alone (C channels, batch B) and timed in eval mode on
square maps of growing side, so N = side^2 tokens: softmax attention over all tokens (our MHSA,
PyTorch ``scaled_dot_product_attention``), CGA over the whole map and in 7x7 windows (the CGA
paper's setting), ReLU linear attention and multi-scale ReLU linear attention (the MIT paper's
LiteMLA). It prints and writes a table of milliseconds, and the growth exponent of each kind: the
slope of log(latency) against log(N) over the larger half of the sizes (1 = linear in tokens,
2 = quadratic). The MIT paper's claim (arXiv:2205.14756 §3.1): ReLU linear attention is linear in
N where softmax attention is quadratic. A table, not a timed test: these machines are noisy.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
from pathlib import Path

import torch

from explore.config import StageConfig
from explore.device import resolve_device
from explore.measure import measure_latency
from explore.models import make_token_mixer

__all__ = ["KINDS", "build_mixer", "run", "growth_exponent", "main"]

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


def run(device: str = "cpu", sides: tuple[int, ...] = (8, 16, 24, 32, 48, 64), channels: int = 64,
        batch: int = 1, repeats: int = 10, threads: int | None = None) -> tuple[list[int], dict[str, list[float]]]:
    """Time every kind at every side.

    Returns:
        (token counts N, {kind: median latency in ms per N}).
    """
    dev = resolve_device(device)
    results: dict[str, list[float]] = {}
    for kind in KINDS:
        times = []
        for side in sides:
            mixer = build_mixer(kind, channels, side)
            result = measure_latency(mixer, side, channels, batch_size=batch, device=dev, warmup=3, repeats=repeats,
                                     threads=threads)
            times.append(result.median_ms)
        results[kind] = times
    return [s * s for s in sides], results


def _markdown(tokens: list[int], results: dict[str, list[float]], header: str) -> str:
    lines = [header, "", "| kind | " + " | ".join(f"N={n}" for n in tokens) + " | growth exponent |",
             "|---|" + "---|" * (len(tokens) + 1)]
    for kind, ms in results.items():
        lines.append(f"| {kind} | " + " | ".join(f"{t:.3f}" for t in ms) + f" | {growth_exponent(tokens, ms):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: print the table and write ``attention_scaling_<device>.{md,csv}``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sides", default="8,16,24,32,48,64", help="map sides; N = side^2 tokens")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch default)")
    parser.add_argument("--out", default=None, help="folder for the .md and .csv (default: print only)")
    args = parser.parse_args(argv)
    sides = tuple(int(s) for s in args.sides.split(","))
    tokens, results = run(args.device, sides, args.channels, args.batch, args.repeats, args.threads or None)
    dev = resolve_device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    header = (f"One attention layer, C={args.channels}, batch {args.batch}, 4 heads of 16, median of "
              f"{args.repeats} runs, ms; device {dev.type} ({name}), threads {args.threads or 'default'}, "
              f"torch {torch.__version__}. Command: `python -m explore.bench_attention "
              f"{' '.join(argv if argv is not None else sys.argv[1:])}`")
    text = _markdown(tokens, results, header)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"attention_scaling_{dev.type}.md").write_text(text, encoding="utf-8")
        rows = ["kind,tokens,latency_ms"] + [f'"{k}",{n},{t:.6f}' for k, ms in results.items() for n, t in zip(tokens, ms)]
        (out / f"attention_scaling_{dev.type}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
