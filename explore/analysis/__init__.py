"""Analysis: Taylor importance and reallocation, ablation recipes, proxy validity, benchmarks and
the acceptance run of a machine. Each computes tables from evaluated candidates
(:mod:`explore.evaluate`) and studies (:mod:`explore.search`); :mod:`explore.report` renders them.

Follows: arXiv:2305.07027 §3.3 (importance), Table 6, Fig. 3, Fig. 7 (ablations);
arXiv:2205.14756 §3-4 (ablation, latency against resolution and tokens).
"""

from explore.analysis.acceptance import SIZES, AcceptanceRun, CheckResult, run_acceptance
from explore.analysis.proxy_validity import ProxyValidity, sample_architectures, validate_proxy
from explore.analysis.ranks import kendall_tau, spearman_rho

__all__ = ["SIZES", "AcceptanceRun", "CheckResult", "run_acceptance", "ProxyValidity", "sample_architectures",
           "validate_proxy", "kendall_tau", "spearman_rho"]
