"""lossbench.stats against published values: Demsar (2006), scipy's documented examples, and
results a reader can work out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lossbench.stats import (
    bayes_signed_rank,
    bootstrap_ci,
    friedman,
    holm,
    nemenyi_cd,
    nemenyi_p,
    paired_difference,
    ranks,
    t_interval,
    wilcoxon_p,
)

# Demsar 2006 (JMLR 7), Table 6: AUC of C4.5, C4.5+m, C4.5+cf, C4.5+m+cf on 14 data sets. The
# voting row's C4.5+cf is 0.9751 (printed 0.975) so that its rank, 2, is the paper's.
DEMSAR_AUC = np.array([
    [0.763, 0.768, 0.771, 0.798], [0.599, 0.591, 0.590, 0.569], [0.954, 0.971, 0.968, 0.967],
    [0.628, 0.661, 0.654, 0.657], [0.882, 0.888, 0.886, 0.898], [0.936, 0.931, 0.916, 0.931],
    [0.661, 0.668, 0.609, 0.685], [0.583, 0.583, 0.563, 0.625], [0.775, 0.838, 0.866, 0.875],
    [1.000, 1.000, 1.000, 1.000], [0.940, 0.962, 0.965, 0.962], [0.619, 0.666, 0.614, 0.669],
    [0.972, 0.981, 0.9751, 0.975], [0.957, 0.978, 0.946, 0.970]])
DEMSAR_NAMES = ["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"]


def test_demsar_mean_ranks_with_shared_ties() -> None:
    r = ranks(DEMSAR_AUC, "max")
    # Paper: average ranks 3.143, 2.000, 2.893, 1.964; iris, lung cancer and mushroom hold ties.
    assert r.mean(axis=0) == pytest.approx([3.143, 2.000, 2.893, 1.964], abs=5e-4)
    assert list(r[9]) == [2.5, 2.5, 2.5, 2.5]  # mushroom: all four AUC 1.000
    assert list(r[5]) == [1, 2.5, 4, 2.5]  # iris: 0.936, 0.931, 0.916, 0.931


def test_demsar_friedman() -> None:
    stat, p = friedman(ranks(DEMSAR_AUC, "max"))
    # Demsar's chi2_F = 9.28 has no tie correction; with it (scipy, checked there against R and
    # MATLAB) the statistic is 10.2283 and p = 0.016722.
    assert stat == pytest.approx(10.2283464566929, rel=1e-9)
    assert p == pytest.approx(0.0167215803284414, rel=1e-9)
    assert stat > 9.28


def test_demsar_nemenyi() -> None:
    # Demsar section 3.2.2: "CD = 2.569 sqrt(4*5 / (6*14)) = 1.25" at alpha 0.05, and Table 5(a)
    # q_0.05 = 1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164 for k = 2..10.
    assert nemenyi_cd(4, 14) == pytest.approx(1.25, abs=0.005)
    for k, q in zip(range(2, 11), [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164],
                    strict=True):
        assert nemenyi_cd(k, 6) / math.sqrt(k * (k + 1) / 36) == pytest.approx(q, abs=1e-3)
    # With CD 1.25 no pair differs at 0.05; at 0.10 the CD is 1.12, which C4.5's distance to
    # C4.5+m (1.143) and to C4.5+m+cf (1.179) exceeds.
    p = nemenyi_p(ranks(DEMSAR_AUC, "max"), DEMSAR_NAMES)
    assert (p.to_numpy()[~np.eye(4, dtype=bool)] > 0.05).all()
    assert p.at["C4.5", "C4.5+m"] < 0.10 and p.at["C4.5", "C4.5+m+cf"] < 0.10
    assert p.at["C4.5+m", "C4.5+m+cf"] > 0.9
    assert nemenyi_cd(4, 14, alpha=0.10) == pytest.approx(1.12, abs=0.005)


def test_friedman_undefined() -> None:
    assert friedman(np.array([[1.0, 2.0], [2.0, 1.0]])) is None  # two losses: not defined
    assert friedman(np.array([[1.0, 2.0, 3.0]])) is None  # one problem
    assert friedman(np.full((3, 3), 2.0)) is None  # every problem a full tie


def test_ranks_ties_and_last_places() -> None:
    assert list(ranks(np.array([[0.9, 0.9, 0.8]]), "max")[0]) == [1.5, 1.5, 3]
    assert list(ranks(np.array([[3.0, 1.0, 2.0]]), "min")[0]) == [3, 1, 2]
    # Two diverged cells (at the worst infinity) share the last two places.
    row = np.array([[0.7, -np.inf, 0.9, -np.inf]])
    assert list(ranks(row, "max")[0]) == [2, 3.5, 1, 3.5]


def test_wilcoxon_scipy_documented_example() -> None:
    # scipy.stats.wilcoxon docs: Fisher's data on Darwin's cross- and self-fertilised plants.
    d = [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75]
    assert wilcoxon_p(d) == pytest.approx(0.041259765625, rel=1e-12)
    assert wilcoxon_p([0.0, 0.0, 0.0]) == 1.0
    # Exact two-sided p with n positive differences and no ties is 2 / 2**n.
    assert wilcoxon_p([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == pytest.approx(2 / 64)
    assert wilcoxon_p([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2 / 32)


def test_holm_by_hand() -> None:
    # Sorted 0.01, 0.03, 0.04 -> 3 * 0.01, 2 * 0.03, max(0.06, 1 * 0.04).
    adjusted = holm([0.01, 0.04, 0.03, float("nan")])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[3])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_t_interval_from_the_t_table() -> None:
    assert t_interval([3.0]) == (3.0, 3.0, 3.0)
    mean, lo, hi = t_interval([1.0, 2.0, 3.0, float("nan")])
    # t_{0.975, 2} = 4.302653 (any t table); sd 1, so half-width 4.302653 / sqrt(3).
    assert mean == 2.0 and lo == pytest.approx(2 - 4.302653 / math.sqrt(3), rel=1e-6)
    assert hi == pytest.approx(4 - lo)


def test_bootstrap_ci_matches_normal_theory_on_a_large_sample() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(10.0, 2.0, size=400)
    lo, hi = bootstrap_ci(x)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert lo == pytest.approx(x.mean() - half, abs=0.1 * half)
    assert hi == pytest.approx(x.mean() + half, abs=0.1 * half)
    assert bootstrap_ci(x) == (lo, hi)  # seeded
    assert bootstrap_ci([1.0, 1.0]) == (1.0, 1.0)
    assert bootstrap_ci([2.0]) == (2.0, 2.0)


def test_paired_difference_on_shared_seeds() -> None:
    import pandas as pd

    a = pd.Series([10.0, 11.0, 12.0, 13.0], index=[0, 1, 2, 3])
    b = pd.Series([12.0, 13.5, 15.0], index=[0, 1, 2])  # seed 3 missing
    out = paired_difference(a, b)
    assert out["n_pairs"] == 3 and out["mean_diff"] == pytest.approx(-2.5)
    assert out["diff_lo"] <= -2.5 <= out["diff_hi"] and out["p_wilcoxon"] == pytest.approx(0.25)
    same = paired_difference(a, a)
    assert same["identical"] and same["p_wilcoxon"] == 1.0


def test_bayes_signed_rank_direction_and_rope() -> None:
    x = np.linspace(0.5, 0.9, 12)
    better, equal, worse = bayes_signed_rank(x + 0.05, x, rope=0.01)
    assert better > 0.99 and better + equal + worse == pytest.approx(1.0)
    assert bayes_signed_rank(x, x + 0.05, rope=0.01) == pytest.approx((worse, equal, better))
    # Differences far inside the ROPE: practically equal.
    _, equal, _ = bayes_signed_rank(x + 0.001, x, rope=0.01)
    assert equal > 0.99
    better, equal, worse = bayes_signed_rank(x + 0.001, x, rope=0)  # no ROPE: better or worse
    assert equal == 0 and better > 0.99 and better + worse == pytest.approx(1.0)
