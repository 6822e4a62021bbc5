"""Statistics, in one place: rank agreement of two lists (Kendall's tau, Spearman's rho), the paired
and the unpaired (Welch) interval of a Δ top-1, and when a row is decided.

A base module: search (front seeds, the schedule comparison), measure (latency tables) and analysis
(ablations, proxy validity, importance) use it; it imports only scipy.

Rank agreement (:func:`kendall_tau`, :func:`spearman_rho`) is taken over the finite pairs of two
lists: the proxy against a longer budget (validate-proxy), our ablation Δs against the paper's, the
FFN's retained share against the block index (importance), predicted against measured latency
(latency tables) and one rung's top-1 against the next (schedule comparison).

Paired statistics: Δ vs the baseline per seed, its confidence interval, and when a row is decided.

In the paired design every variant is trained once per seed, and a seed fixes the data order, the
augmentation draws and (where shapes agree) the initial weights (:func:`explore.train.train_proxy`
seeds its batch generator from the seed alone). The seed-to-seed swing that all variants share then
cancels in the per-seed difference ``top1(variant, s) - top1(baseline, s)``, and the interval of the
mean difference is narrower than the unpaired interval of the difference of means (Welch), which
treats the two sets of runs as independent. Both are reported; ``variance_reduction`` is the
squared ratio of their standard errors (> 1: pairing helped).

A row is *decided* when its interval excludes 0 (the sign of the effect is known) or lies inside
``±margin`` (the effect is smaller than anything worth reporting: an equivalence test in the
two-one-sided-tests sense, at the same level); otherwise more seeds may decide it
(:func:`open_rows`).

Sequential seeds look at a row after every seed, and stop as soon as it is decided. Looking again
after every seed at a fixed 95 % would decide "effect" on rows without one far more often than
5 % of the time (in the simulation of ``tests/test_stats.py``, 15 % over 5 looks), so each look uses
the level that *alpha spending* over the planned looks gives it: with ``K`` planned looks (pairs
2, 3, ..., ``max_seeds``: ``K = max_seeds - 1``), each look spends ``alpha / K`` (Bonferroni
spending; by the union bound the chance that any look wrongly decides is at most ``alpha``,
whatever the stopping rule does; :func:`look_level`). It is conservative next to the group-
sequential boundaries of Pocock or O'Brien-Fleming, which need the correlation between looks, but
it holds for t intervals with small n, where those boundaries' normal approximations do not. A run
with fixed seeds looks once (``K = 1``: the plain interval).

Follows: the paired t interval (Student 1908; e.g. Wasserman, *All of Statistics*, §10) via scipy;
the equivalence rule of Schuirmann (1987); alpha spending over planned looks (Jennison & Turnbull,
*Group Sequential Methods with Applications to Clinical Trials*, 2000, §7; here with the Bonferroni
spending function); Kendall's tau-b and Spearman's rho via scipy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats

__all__ = ["kendall_tau", "spearman_rho", "mean_std", "mean_interval", "difference_se", "ACC_MIN_EFFECT", "DeltaCI",
           "t_interval", "ratio_interval", "paired_delta", "decision", "open_rows", "planned_looks", "look_level"]

ACC_MIN_EFFECT = 0.2
"""Smallest top-1 change (points) an ablation verdict calls; also the equivalence margin of
:func:`decision` in ablations."""


@dataclass(frozen=True)
class DeltaCI:
    """Δ = variant − baseline (top-1 points) over the seeds both ran, paired and unpaired.

    Attributes:
        pairs: seeds both ran (the paired sample size).
        mean: mean of the per-seed differences (= difference of the means over those seeds).
        low, high: the paired t interval of the mean difference (NaN with fewer than 2 pairs).
        unpaired_low, unpaired_high: Welch's interval of the difference of the two means, each over
            all of its own seeds (NaN with fewer than 2 seeds on a side).
        variance_reduction: (unpaired standard error / paired standard error)²; NaN where either is
            undefined, inf when every per-seed difference is the same.
        level: the confidence level.
    """

    pairs: int
    mean: float
    low: float
    high: float
    unpaired_low: float
    unpaired_high: float
    variance_reduction: float
    level: float


def t_interval(mean: float, se: float, dof: float, level: float) -> tuple[float, float]:
    """Student's t interval ``mean ± t(level, dof) · se`` (NaN where ``dof`` <= 0 or ``se`` is not finite)."""
    if not (dof > 0 and math.isfinite(se)):
        return float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, dof)) * se
    return mean - half, mean + half


def ratio_interval(ratios: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """The geometric mean of paired ratios with a t interval on their logarithms: (ratio, low, high).

    Ratios of two models timed pair by pair are skewed (a slow spell makes one large), their logarithms
    close to symmetric; exp of the t interval of the mean log ratio is the interval of the geometric
    mean ratio.

    Args:
        ratios: one ratio per pair (> 0).
        level: confidence level (0.95: a 95 % interval).

    Returns:
        (geometric mean, low, high); the bounds are NaN with fewer than 2 ratios.

    Raises:
        ValueError: a ratio <= 0, or none.
    """
    if not ratios or min(ratios) <= 0:
        raise ValueError("ratio_interval needs positive ratios")
    mean, _, low, high = mean_interval([math.log(r) for r in ratios], level)
    return math.exp(mean), (math.exp(low) if math.isfinite(low) else low), (math.exp(high) if math.isfinite(high) else high)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation) of ``values``; the std is NaN for fewer than 2 values, and
    both are NaN for none."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def mean_interval(values: Sequence[float], level: float) -> tuple[float, float, float, float]:
    """(mean, sample std, t-interval low, high) of ``values`` at confidence ``level`` (NaN where undefined:
    the interval needs 2 values)."""
    mean, sd = mean_std(values)
    if not len(values) >= 2:
        return mean, sd, float("nan"), float("nan")
    return (mean, sd, *t_interval(mean, sd / math.sqrt(len(values)), len(values) - 1, level))


def difference_se(sd_a: float, n_a: int, sd_b: float, n_b: int) -> float:
    """Standard error of the difference of two means (Welch): sqrt(sd_a² / n_a + sd_b² / n_b); a std
    that is undefined (one run: NaN) counts as 0, and a count below 1 as 1."""
    def term(sd: float, n: int) -> float:
        return (sd if math.isfinite(sd) else 0.0) ** 2 / max(1, n)

    return math.sqrt(term(sd_a, n_a) + term(sd_b, n_b))


def paired_delta(baseline: Mapping[int, float], variant: Mapping[int, float], level: float = 0.95) -> DeltaCI:
    """Paired and unpaired intervals of Δ top-1 (points) from per-seed results.

    Args:
        baseline: seed -> top-1 (%) of the baseline's runs.
        variant: seed -> top-1 (%) of the variant's runs.
        level: confidence level in (0, 1).

    Returns:
        :class:`DeltaCI`.

    Raises:
        ValueError: ``level`` outside (0, 1) or no seed in common.
    """
    if not 0 < level < 1:
        raise ValueError(f"level = {level}: expected a confidence level in (0, 1)")
    common = sorted(set(baseline) & set(variant))
    if not common:
        raise ValueError("the baseline and the variant have no seed in common: nothing to pair")
    diffs = [variant[s] - baseline[s] for s in common]
    n = len(diffs)
    mean = sum(diffs) / n
    if n >= 2:
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
        se_paired = sd / math.sqrt(n)
        low, high = (mean, mean) if se_paired == 0 else t_interval(mean, se_paired, n - 1, level)
    else:
        se_paired, low, high = float("nan"), float("nan"), float("nan")

    a, b = list(variant.values()), list(baseline.values())
    if len(a) >= 2 and len(b) >= 2:
        va = sum((x - sum(a) / len(a)) ** 2 for x in a) / (len(a) - 1) / len(a)
        vb = sum((x - sum(b) / len(b)) ** 2 for x in b) / (len(b) - 1) / len(b)
        se_unpaired = math.sqrt(va + vb)
        # Welch-Satterthwaite degrees of freedom
        dof = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1) if va else 0.0) + (vb ** 2 / (len(b) - 1) if vb else 0.0)
                                ) if (va or vb) else float("inf")
        diff_means = sum(a) / len(a) - sum(b) / len(b)
        u_low, u_high = ((diff_means, diff_means) if se_unpaired == 0
                         else t_interval(diff_means, se_unpaired, dof, level))
    else:
        se_unpaired, u_low, u_high = float("nan"), float("nan"), float("nan")
    if math.isfinite(se_paired) and math.isfinite(se_unpaired):
        reduction = float("inf") if se_paired == 0 else (se_unpaired / se_paired) ** 2
    else:
        reduction = float("nan")
    return DeltaCI(n, mean, low, high, u_low, u_high, reduction, level)


def decision(ci: DeltaCI, margin: float) -> str:
    """``"effect"`` (interval excludes 0), ``"negligible"`` (interval inside ±margin), or ``"open"``.

    Args:
        ci: a paired interval (:func:`paired_delta`).
        margin: the smallest effect worth reporting (top-1 points, >= 0).
    """
    if not (math.isfinite(ci.low) and math.isfinite(ci.high)):
        return "open"
    if ci.low > 0 or ci.high < 0:
        return "effect"
    if -margin < ci.low and ci.high < margin:
        return "negligible"
    return "open"


def planned_looks(max_seeds: int | None) -> int:
    """How many times a sequential run looks at a row: after 2, 3, ..., ``max_seeds`` paired seeds
    (``max_seeds - 1`` looks); a run with fixed seeds (``None`` or < 3) looks once."""
    return max(1, (max_seeds or 0) - 1)


def look_level(level: float, looks: int) -> float:
    """The confidence level of each of ``looks`` planned looks that keeps the whole sequential
    procedure's error rate at ``1 - level`` (Bonferroni alpha spending: each look spends
    ``(1 - level) / looks``; see the module docstring).

    Raises:
        ValueError: ``level`` outside (0, 1) or ``looks`` < 1.
    """
    if not 0 < level < 1 or looks < 1:
        raise ValueError(f"level = {level}, looks = {looks}: expected a level in (0, 1) and at least one look")
    return 1 - (1 - level) / looks


def open_rows(results: Mapping[str, Mapping[int, float]], baseline: str, margin: float, max_seeds: int,
              level: float = 0.95) -> dict[str, str]:
    """Which variants need another seed, and why each of the others stopped.

    Args:
        results: variant -> seed -> top-1 (%), the baseline included.
        baseline: the baseline's name.
        margin: as :func:`decision`.
        max_seeds: the most seeds any row may use.
        level: the confidence level of the whole procedure; each look uses
            ``look_level(level, planned_looks(max_seeds))``.

    Returns:
        variant -> ``"open"`` (add a seed), ``"effect"``, ``"negligible"`` or ``"max seeds"``
        (undecided at ``max_seeds``); the baseline is not listed. A variant with fewer than 2 seeds
        in common with the baseline is open (below ``max_seeds``).

    Raises:
        KeyError: no results for ``baseline``.
    """
    base = results[baseline]
    each = look_level(level, planned_looks(max_seeds))
    out = {}
    for name, runs in results.items():
        if name == baseline:
            continue
        common = set(base) & set(runs)
        state = decision(paired_delta(base, runs, each), margin) if len(common) >= 2 else "open"
        if state == "open" and len(common) >= max_seeds:
            state = "max seeds"
        out[name] = state
    return out


def _pairs(a: Sequence[float | None], b: Sequence[float | None]) -> tuple[list[float], list[float]]:
    kept = [(float(x), float(y)) for x, y in zip(a, b) if x is not None and y is not None
            and math.isfinite(x) and math.isfinite(y)]
    return [x for x, _ in kept], [y for _, y in kept]


def kendall_tau(a: Sequence[float | None], b: Sequence[float | None], min_points: int = 3) -> float:
    """Kendall's tau-b of the finite pairs; NaN with fewer than ``min_points`` pairs or a constant side."""
    xs, ys = _pairs(a, b)
    if len(xs) < min_points:
        return float("nan")
    with warnings.catch_warnings():  # a constant side: scipy warns and returns NaN
        warnings.simplefilter("ignore")
        return float(stats.kendalltau(xs, ys).statistic)


def spearman_rho(a: Sequence[float | None], b: Sequence[float | None], min_points: int = 2) -> float:
    """Spearman's rho (Pearson on average ranks) of the finite pairs; NaN with fewer than
    ``min_points`` pairs or a constant side."""
    xs, ys = _pairs(a, b)
    if len(xs) < min_points or len(set(xs)) < 2 or len(set(ys)) < 2:
        return float("nan")
    return float(stats.spearmanr(xs, ys).statistic)
