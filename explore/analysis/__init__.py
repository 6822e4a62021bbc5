"""Analysis: Taylor importance and reallocation, ablation recipes, proxy validity and benchmarks.
Each computes tables from evaluated candidates (:mod:`explore.evaluate`) and studies
(:mod:`explore.search`); :mod:`explore.report` renders them.

Follows: arXiv:2305.07027 §3.3 (importance), Table 6, Fig. 3, Fig. 7 (ablations);
arXiv:2205.14756 §3-4 (ablation, latency against resolution and tokens).
"""

from explore.analysis.proxy_validity import ProxyValidity, validate_proxy
from explore.analysis.supernet_validity import SupernetValidity, validate_supernet

__all__ = ["ProxyValidity", "validate_proxy", "SupernetValidity", "validate_supernet"]
