"""Ablations: the papers' design-choice studies as recipes (``studies/*.toml``), one runner, and the
analysis of a run (Δs, Kendall τ, verdicts, findings).

Follows: arXiv:2305.07027 Table 6, Fig. 3 and Fig. 7 (CGA ablations); arXiv:2205.14756 §4 (the MIT
ablation of multi-scale aggregation and global attention, latency against resolution).
"""

from explore.analysis.ablation.recipe import (
    MEASURE_IMG,
    Budget,
    Finding,
    MeasureSpec,
    Recipe,
    RecipeError,
    Variant,
    load_recipe,
    resolve_recipe_path,
    with_overrides,
)
from explore.analysis.ablation.runner import AblationRun, load_run, run_recipe
from explore.analysis.ablation.summary import SPEED_MIN_EFFECT_PCT, check_findings, report_meta, summarise
from explore.arch import PAPER_SPEED_COLUMNS

__all__ = [
    "MEASURE_IMG", "Budget", "Finding", "MeasureSpec", "Recipe", "RecipeError", "Variant", "load_recipe",
    "resolve_recipe_path", "with_overrides", "AblationRun", "load_run", "run_recipe", "SPEED_MIN_EFFECT_PCT", "check_findings",
    "summarise", "report_meta", "PAPER_SPEED_COLUMNS",
]
