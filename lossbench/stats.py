"""Statistics for the lossbench report, each one a call into scipy, statsmodels, scikit-posthocs
or baycomp: t-intervals, bootstrap CIs, Wilcoxon with Holm, ranks, Friedman, Nemenyi, Bayesian
signed-rank."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

ALPHA = 0.05
LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 10_000
# Posterior draws of the Bayesian signed-rank test: its probabilities carry a Monte Carlo error of
# at most 0.005 (one standard error), below the two decimals the report prints.
BAYES_SAMPLES = 10_000
# Region of practical equivalence on the normalised score: 1% of the gap between the trivial
# baseline and the best loss of a problem.
ROPE = 0.01
# The exact two-sided Wilcoxon p is never below 0.0625 with 5 pairs: fewer than 6 is powerless.
MIN_PAIRS = 6


def finite(values: Sequence[float]) -> np.ndarray:
    """Drop NaN/inf so one broken run does not poison a mean."""
    import numpy as np

    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and Student-t CI over seeds; with one seed (or no spread) the CI is the mean."""
    arr = finite(values)
    if arr.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(arr.mean())
    if arr.size == 1 or bool((arr == arr[0]).all()):
        return mean, mean, mean
    from scipy import stats

    lo, hi = stats.t.interval(level, arr.size - 1, loc=mean, scale=stats.sem(arr))
    return mean, float(lo), float(hi)


def bootstrap_ci(values: Sequence[float], level: float = LEVEL, seed: int = 0,
                 statistic: Any = None) -> tuple[float, float]:
    """Seeded percentile bootstrap CI of the mean (scipy.stats.bootstrap).

    Percentile rather than BCa: with 3-5 seeds or a handful of data sets BCa's jackknife
    acceleration is unstable, and ranks are discrete. One value, or no spread, gives a point.
    """
    arr = finite(values)
    if arr.size == 0:
        return math.nan, math.nan
    if arr.size == 1 or bool((arr == arr[0]).all()):
        return float(arr[0]), float(arr[0])
    import numpy as np
    from scipy import stats

    res = stats.bootstrap((arr,), statistic or np.mean, confidence_level=level,
                          n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                          rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def wilcoxon_p(diffs: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p (scipy); all-zero differences give p = 1 (no evidence)."""
    arr = finite(diffs)
    if not arr[arr != 0].size:
        return 1.0
    from scipy import stats

    return float(stats.wilcoxon(arr).pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (statsmodels); NaNs pass through and are not counted."""
    import numpy as np
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    valid = np.isfinite(p)
    if valid.any():
        out[valid] = multipletests(p[valid], alpha=ALPHA, method="holm")[1]
    return out.tolist()


def ranks(scores: np.ndarray, mode: str) -> np.ndarray:
    """Ranks within each row (1 = best, ties share the average rank); -inf/+inf sort last.

    `scores` is problems x losses; mode 'max' means higher is better. A NaN cell would
    poison its row, so callers put the cells that must rank last at the worst infinity.
    """
    import numpy as np
    from scipy import stats

    worse_is_larger = np.asarray(scores, dtype=float) * (-1 if mode == "max" else 1)
    return stats.rankdata(worse_is_larger, method="average", axis=1)


def friedman(rank_matrix: np.ndarray) -> tuple[float, float] | None:
    """Friedman chi-square statistic and p over problems (rows) x losses (columns), tie-corrected
    (scipy.stats.friedmanchisquare); None when it is undefined (< 3 losses, < 2 problems, or every
    problem a full tie)."""
    import numpy as np
    from scipy import stats

    r = np.asarray(rank_matrix, dtype=float)
    if r.ndim != 2 or r.shape[1] < 3 or r.shape[0] < 2:
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-tied rows: 0/0, reported as None
        res = stats.friedmanchisquare(*r.T)
    if not (np.isfinite(res.statistic) and np.isfinite(res.pvalue)):
        return None
    return float(res.statistic), float(res.pvalue)


def nemenyi_cd(n_losses: int, n_problems: int, alpha: float = ALPHA) -> float:
    """Nemenyi critical difference of mean ranks (Demsar 2006, eq. 5): q_alpha sqrt(k(k+1)/6N),
    q_alpha the studentized range quantile for k groups and infinite df over sqrt(2) (scipy)."""
    from scipy import stats

    k, n = n_losses, n_problems
    if k < 2 or n < 1:
        return math.nan
    q = float(stats.studentized_range.ppf(1 - alpha, k, math.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6 * n))


def nemenyi_p(rank_matrix: np.ndarray, names: list[str]) -> pd.DataFrame:
    """All-pairs Nemenyi p-values after Friedman (scikit-posthocs), losses as index and columns."""
    import numpy as np
    import scikit_posthocs as sp

    p = sp.posthoc_nemenyi_friedman(np.asarray(rank_matrix, dtype=float))
    p.index, p.columns = names, names
    return p


def bayes_signed_rank(x: Sequence[float], y: Sequence[float], rope: float = ROPE,
                      seed: int = 0, nsamples: int = BAYES_SAMPLES) -> tuple[float, float, float]:
    """Bayesian signed-rank test (Benavoli et al. 2017; baycomp) on paired scores where higher is
    better: P(x better by more than rope), P(practically equal), P(y better)."""
    import baycomp
    import numpy as np

    probs = baycomp.SignedRankTest.probs(np.asarray(x, dtype=float), np.asarray(y, dtype=float),
                                         rope=rope, nsamples=nsamples, random_state=seed)
    px, peq, py = probs if rope > 0 else (probs[0], 0.0, probs[1])  # no ROPE: two outcomes
    return float(px), float(peq), float(py)


def paired_difference(a: pd.Series, b: pd.Series, seed: int = 0) -> dict[str, Any]:
    """a - b on their shared seeds (Series index = seed): mean, bootstrap CI, Wilcoxon p."""
    diff = (a - b).dropna().to_numpy(float)
    lo, hi = bootstrap_ci(diff, seed=seed)
    return {"n_pairs": int(diff.size), "mean_diff": float(diff.mean()) if diff.size else math.nan,
            "diff_lo": lo, "diff_hi": hi, "identical": bool(diff.size and not diff.any()),
            "p_wilcoxon": wilcoxon_p(diff) if diff.size else math.nan}

