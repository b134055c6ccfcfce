"""Small statistics helpers for the lossbench report: t-intervals, bootstrap, Wilcoxon, Holm."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 10_000


def finite(values: Sequence[float]) -> np.ndarray:
    """Drop NaN/inf so one broken run does not poison a mean."""
    import numpy as np

    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t CI over seeds; with one seed the CI collapses onto the mean."""
    arr = finite(values)
    if arr.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(arr.mean())
    if arr.size == 1:
        return mean, mean, mean
    from scipy import stats

    sem = float(arr.std(ddof=1)) / math.sqrt(arr.size)
    half = float(stats.t.ppf(0.5 + level / 2, arr.size - 1)) * sem
    return mean, mean - half, mean + half


def bootstrap_mean_ci(values: Sequence[float], level: float = 0.95,
                      seed: int = 0) -> tuple[float, float]:
    """Seeded percentile bootstrap of the mean: reproducible and fine for tiny samples."""
    arr = finite(values)
    if arr.size == 0:
        return math.nan, math.nan
    if arr.size == 1 or bool((arr == arr[0]).all()):
        return float(arr[0]), float(arr[0])
    import numpy as np

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(BOOTSTRAP_RESAMPLES, arr.size))
    means = arr[idx].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def wilcoxon_p(diffs: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p; all-zero differences give p = 1 (no evidence)."""
    arr = finite(diffs)
    arr = arr[arr != 0]
    if arr.size == 0:
        return 1.0
    from scipy import stats

    return float(stats.wilcoxon(arr).pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjustment; NaN p-values are passed through and not counted."""
    import numpy as np

    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = valid.size
    running = 0.0
    for rank, i in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


# Exact two-sided Wilcoxon p can never drop below 0.0625 with 5 pairs, so fewer than 6 is powerless.
MIN_PAIRS = 6
PAIRED_RULE = (
    f"`indistinguishable_from_best` is true for the best loss itself, when fewer than {MIN_PAIRS} "
    f"seeds pair up (the Wilcoxon test cannot reach p < {ALPHA} then), or when the Holm-adjusted "
    f"Wilcoxon p >= {ALPHA} (Holm over the losses of one setting). Differences are loss minus "
    "best on shared seeds (negative = worse for max-mode metrics); CI: seeded bootstrap.")


def compare_to_best(scores: dict[Hashable, pd.Series], best: Hashable) -> dict[Hashable, dict]:
    """Paired differences to the best entry on shared seeds (Series index = seed)."""
    rows = {}
    for key, series in scores.items():
        diff = (series - scores[best]).dropna().to_numpy(float)
        lo, hi = bootstrap_mean_ci(diff)
        mean = float(diff.mean()) if diff.size else math.nan
        rows[key] = {"n_pairs": diff.size, "mean_diff": mean, "diff_lo": lo, "diff_hi": hi,
                     "is_best": key == best,
                     "p_wilcoxon": wilcoxon_p(diff) if key != best and diff.size else math.nan}
    adjusted = holm([r["p_wilcoxon"] for r in rows.values()])
    for row, p in zip(rows.values(), adjusted, strict=True):
        row["p_holm"] = p
        row["indistinguishable_from_best"] = bool(
            row["is_best"] or row["n_pairs"] < MIN_PAIRS or not p < ALPHA)
    return rows
