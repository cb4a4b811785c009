"""Statistics against hand-computed values, and bootstrap coverage."""
from __future__ import annotations

import math

import numpy as np
import pytest

from clipaudit.stats import (adjust_pvalues, benjamini_hochberg, bootstrap_ci, ci_from_draws, format_ci,
                             grouped_rates_bootstrap, holm, minimum_detectable_difference, permutation_test,
                             proportion_ci, rate_ci, rate_ratio, rate_ratio_ci, spearman)


def test_holm_and_bh_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005, 0.01, 0.03, 0.04 -> holm: 4*0.005=0.02, 3*0.01=0.03, 2*0.03=0.06, 1*0.04 -> max(0.06,0.04)=0.06
    assert np.allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    # BH: 0.005*4/1=0.02, 0.01*4/2=0.02, 0.03*4/3=0.04, 0.04*4/4=0.04
    assert np.allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])
    assert holm([]).size == 0


def test_exact_permutation_by_hand():
    # x={3,4}, y={1,2}: 6 splits; mean differences: (3,4)->2, (1,2)->-2, others in {0,0,-1,1}... ±2 twice
    obs, p, exact = permutation_test([3, 4], [1, 2])
    assert exact and obs == 2.0 and math.isclose(p, 2 / 6)
    _, p_one, _ = permutation_test([3, 4], [1, 2], alternative="greater")
    assert math.isclose(p_one, 1 / 6)


def test_monte_carlo_permutation_never_zero():
    rng = np.random.default_rng(0)
    _, p, exact = permutation_test(rng.normal(5, 1, 40), rng.normal(0, 1, 40), n_permutations=999)
    assert not exact and p == pytest.approx(1 / 1000)


def test_permutation_has_no_power_on_identical_distributions():
    rng = np.random.default_rng(1)
    ps = [permutation_test(rng.normal(size=20), rng.normal(size=20), n_permutations=300, seed=i)[1] for i in range(40)]
    assert 0.3 < np.mean(ps) < 0.7


def _bootstrap_mean_coverage(alpha: float, reps: int = 1500) -> float:
    rng = np.random.default_rng(2)
    hits = 0
    for i in range(reps):
        x = rng.normal(1.0, 1.0, size=50)
        lo, hi = bootstrap_ci(x, np.mean, n_resamples=400, alpha=alpha, seed=i)
        hits += lo <= 1.0 <= hi
    return hits / reps


def test_bootstrap_coverage():
    """95% percentile CIs of a mean cover the true mean in 93-97% of 1500 samples; the window
    is tight enough (binomial sd 0.6 points) that a 90% interval fails it, which the test checks."""
    assert 0.93 <= _bootstrap_mean_coverage(0.05) <= 0.97
    assert not 0.93 <= _bootstrap_mean_coverage(0.10) <= 0.97


def test_paired_bootstrap_and_proportions():
    a = np.arange(10.0)
    lo, hi = bootstrap_ci([a, a + 1], lambda x, y, axis: (y - x).mean(axis), n_resamples=200)
    assert lo == hi == 1.0
    lo, hi = proportion_ci(50, 100)
    assert 0.39 < lo < 0.42 and 0.58 < hi < 0.61


def test_grouped_rates_bootstrap_shapes_and_means():
    draws = grouped_rates_bootstrap(np.array([10, 90]), np.array([100, 100]), n_resamples=3000, seed=0)
    assert draws.shape == (3000, 2)
    assert np.allclose(draws.mean(0), [0.1, 0.9], atol=0.01)
    unstrat = grouped_rates_bootstrap(np.array([10, 90]), np.array([100, 100]), n_resamples=3000, stratified=False)
    assert np.allclose(np.nanmean(unstrat, 0), [0.1, 0.9], atol=0.01)
    with pytest.raises(ValueError):
        grouped_rates_bootstrap(np.array([5]), np.array([3]))


def test_spearman_and_mdd():
    assert spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    small, big = minimum_detectable_difference(50, 0.1), minimum_detectable_difference(5000, 0.1)
    assert small > big > 0


def test_ci_from_draws_is_the_equal_tailed_percentile_interval():
    """alpha = 0.05 -> the 2.5th and 97.5th percentiles (a 5th/95th pair would be a 90% CI)."""
    draws = np.arange(1001) / 1000.0  # the q-quantile is q exactly
    lo, hi = ci_from_draws(draws)
    assert lo == pytest.approx(0.025) and hi == pytest.approx(0.975)
    lo, hi = ci_from_draws(draws, alpha=0.10)
    assert lo == pytest.approx(0.05) and hi == pytest.approx(0.95)
    lo, hi = ci_from_draws(np.stack([draws, 2 * draws], axis=1), axis=0)
    assert lo == pytest.approx([0.025, 0.05]) and hi == pytest.approx([0.975, 1.95])
    with pytest.raises(ValueError, match="alpha"):
        ci_from_draws(draws, alpha=1.5)


def test_ci_from_draws_coverage_by_simulation():
    """Bootstrap draws of a mean through ci_from_draws cover the truth 93-97% of the time."""
    rng = np.random.default_rng(5)
    hits = {0.05: 0, 0.10: 0}
    reps = 1500
    for _ in range(reps):
        x = rng.normal(0.0, 1.0, size=50)
        draws = x[rng.integers(0, 50, size=(400, 50))].mean(1)
        for a in hits:
            lo, hi = ci_from_draws(draws, alpha=a)
            hits[a] += lo <= 0.0 <= hi
    assert 0.93 <= hits[0.05] / reps <= 0.97
    assert not 0.93 <= hits[0.10] / reps <= 0.97


def test_proportion_ci_has_width_at_zero_and_n():
    lo, hi = proportion_ci(0, 10)
    assert lo == 0.0 and hi > 0.2  # Wilson upper bound for 0/10: z^2 / (n + z^2) = 0.2775
    z2 = 1.959963984540054 ** 2
    assert hi == pytest.approx(z2 / (10 + z2))
    lo, hi = proportion_ci(10, 10)
    assert hi == 1.0 and lo == pytest.approx(10 / (10 + z2))
    # Clopper-Pearson: for 0 successes the upper bound solves (1 - p)^n = alpha / 2
    lo, hi = proportion_ci(0, 10, method="beta")
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 10))
    assert np.isnan(proportion_ci(0, 0)).all()
    with pytest.raises(ValueError, match="valid: wilson"):
        proportion_ci(1, 10, method="wald")
    with pytest.raises(ValueError, match="successes"):
        proportion_ci(11, 10)


def test_wilson_matches_the_closed_form():
    """Wilson (1927): (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), derived by hand."""
    z, k, n = 1.959963984540054, 7, 30
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo, hi = proportion_ci(k, n)
    assert lo == pytest.approx((centre - half) / (1 + z * z / n)) and hi == pytest.approx((centre + half) / (1 + z * z / n))
    r = rate_ci(k, n)
    assert (r.rate, r.lo, r.hi, r.k, r.n) == pytest.approx((p, lo, hi, k, n))
    assert math.isnan(rate_ci(0, 0).rate)


def _proportion_coverage(alpha: float, method: str = "wilson") -> float:
    """Simulated coverage over a grid of true rates and sizes (fixed seed)."""
    rng = np.random.default_rng(3)
    hits = total = 0
    for n in (20, 50, 100):
        bounds = np.array([proportion_ci(k, n, alpha=alpha, method=method) for k in range(n + 1)])
        for p in np.linspace(0.05, 0.95, 19):
            lo, hi = bounds[rng.binomial(n, p, size=400)].T
            hits += int(((lo <= p) & (p <= hi)).sum())
            total += len(lo)
    return hits / total


def test_proportion_ci_coverage_by_simulation():
    """Averaged over rates 0.05..0.95 and n in {20, 50, 100}, Wilson 95% covers 93-97% (a 90%
    interval does not), and Clopper-Pearson covers at least 95%."""
    assert 0.93 <= _proportion_coverage(0.05) <= 0.97
    assert not 0.93 <= _proportion_coverage(0.10) <= 0.97
    assert _proportion_coverage(0.05, "beta") >= 0.95


def test_rate_ratio_zero_convention():
    r = rate_ratio_ci(0, 10, 0, 20)
    assert math.isnan(r.ratio) and (r.lo, r.hi) == (0.0, math.inf) and r.note == "no events in either group"
    r = rate_ratio_ci(20, 100, 0, 300)
    assert r.ratio == math.inf and r.hi == math.inf and 1.0 < r.lo < math.inf
    assert r.note == "no events in the reference group"
    r = rate_ratio_ci(0, 100, 5, 100)
    assert r.ratio == 0.0 and r.lo == 0.0 and 0 < r.hi < math.inf
    r = rate_ratio_ci(0, 0, 1, 10)
    assert math.isnan(r.ratio) and math.isnan(r.lo) and r.note == "empty group"
    assert np.array_equal(rate_ratio(np.array([0, 2, 0, 2]), 10, np.array([0, 0, 3, 4]), 10),
                          np.array([np.nan, np.inf, 0.0, 0.5]), equal_nan=True)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        rate_ratio_ci(5, 3, 1, 10)


def test_rate_ratio_ci_agrees_with_statsmodels_and_covers():
    from statsmodels.stats.proportion import confint_proportions_2indep

    r = rate_ratio_ci(12, 80, 5, 90)
    ref = confint_proportions_2indep(12, 80, 5, 90, method="score", compare="ratio")
    assert r.ratio == pytest.approx((12 / 80) / (5 / 90)) and (r.lo, r.hi) == pytest.approx(ref)
    rng = np.random.default_rng(4)
    hits = {0.05: 0, 0.10: 0}
    reps = 1500
    for _ in range(reps):
        k1, k0 = rng.binomial(150, 0.2), rng.binomial(150, 0.1)
        for a in hits:
            c = rate_ratio_ci(int(k1), 150, int(k0), 150, alpha=a)
            hits[a] += c.lo <= 2.0 <= c.hi
    assert 0.93 <= hits[0.05] / reps <= 0.97
    assert not 0.93 <= hits[0.10] / reps <= 0.97


def test_adjust_pvalues_matches_statsmodels_and_skips_missing():
    import pandas as pd
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, np.nan, 0.03, 0.005, 0.2]
    df = pd.DataFrame({"p": p}, index=list("abcdef"))
    ok = [x for x in p if not np.isnan(x)]
    for method, sm in (("holm", "holm"), ("bh", "fdr_bh")):
        out = adjust_pvalues(df, "p", method)
        assert list(out.index) == list("abcdef") and np.isnan(out["c"])
        assert out.dropna().to_numpy() == pytest.approx(multipletests(ok, method=sm)[1])
    with pytest.raises(ValueError, match="valid: holm, bh"):
        adjust_pvalues(df, "p", "bonferroni")
    with pytest.raises(ValueError, match="no column"):
        adjust_pvalues(df, "q")


def test_format_ci():
    assert format_ci(0.12345, 0.1, 0.2) == "0.123 [0.100, 0.200]"
    assert format_ci(float("inf"), 1.5, float("inf"), digits=2) == "inf [1.50, inf]"
    assert format_ci(float("nan"), 0.0, float("inf"), digits=1) == "n/a [0.0, inf]"


def test_grouped_rate_ci_keeps_width_where_every_item_succeeded():
    from clipaudit.stats import grouped_rate_ci

    table = grouped_rate_ci(["a"] * 7 + ["b"] * 4, [True] * 7 + [True, False, False, False]).set_index("group")
    z = 1.959963984540054
    n = 7  # Wilson with k = n: lower bound n / (n + z^2), derived by hand from the score interval
    assert table.loc["a", "rate"] == 1.0 and table.loc["a", "ci_high"] == pytest.approx(1.0)
    assert table.loc["a", "ci_low"] == pytest.approx(n / (n + z * z), abs=1e-9)
    assert table.loc["b", "n"] == 4 and table.loc["b", "k"] == 1 and table.loc["b", "ci_low"] > 0


def test_attack_tables_by_class_use_intervals_with_width():
    import pandas as pd

    from clipaudit.attacks.adversarial_audit import by_class_table

    images = pd.DataFrame({"true_class": ["apple"] * 7 + ["ipod"] * 5, "correct_clean": [True] * 12,
                           "correct_adv": [True] * 7 + [False] * 5, "success": [False] * 7 + [True] * 5,
                           "norm": [0.01] * 12})
    table = by_class_table(images, seed=0).set_index("class")
    assert table.loc["apple", "ci_low"] < 0.7 < table.loc["apple", "ci_high"]  # not [1.0, 1.0]
    assert table.loc["ipod", "ci_low"] == 0.0 and table.loc["ipod", "ci_high"] > 0.3  # not [0.0, 0.0]
