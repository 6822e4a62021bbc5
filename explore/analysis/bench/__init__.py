"""Benchmarks: our presets against timm, attention cost against tokens, the proxy loop against a
plain DataLoader loop, and a study's latency repeatability under load. Each computes tables;
:mod:`explore.report.bench` renders them.
"""

from explore.analysis.bench import attention, models, proxy, repeatability
from explore.analysis.bench.models import BenchRow, bench, reference_model

__all__ = ["attention", "models", "proxy", "repeatability", "BenchRow", "bench", "reference_model"]
