"""Statistics against hand-computed values, and bootstrap coverage."""
from __future__ import annotations

import math

import numpy as np
import pytest

from clipaudit.stats import (benjamini_hochberg, bootstrap_ci, grouped_rates_bootstrap, holm,
                             minimum_detectable_difference, permutation_test, proportion_ci, spearman)


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


def test_bootstrap_coverage():
    """95% percentile CIs of a mean cover the true mean in roughly 95% of samples."""
    rng = np.random.default_rng(2)
    hits = 0
    for i in range(200):
        x = rng.exponential(1.0, size=60)
        lo, hi = bootstrap_ci(x, np.mean, n_resamples=500, seed=i)
        hits += lo <= 1.0 <= hi
    assert 0.88 <= hits / 200 <= 0.99


def test_paired_bootstrap_and_proportions():
    a = np.arange(10.0)
    lo, hi = bootstrap_ci([a, a + 1], lambda x, y, axis: (y - x).mean(axis), n_resamples=200)
    assert lo == hi == 1.0
    lo, hi = proportion_ci(50, 100, n_resamples=5000)
    assert 0.39 < lo < 0.42 and 0.58 < hi < 0.61
    assert proportion_ci(0, 10) == (0.0, 0.0)


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
