"""Statistics every audit reports with: bootstrap CIs, permutation tests, multiplicity control.

Why here: a rate without an interval, or fifty group tests without correction, is not evidence.
All functions take an explicit ``seed`` and are vectorised (10,000 resamples in one array op).

- :func:`bootstrap_ci`: percentile bootstrap of any statistic of one or more aligned arrays.
- :func:`proportion_ci`: percentile bootstrap of a rate, drawn exactly as Binomial(n, p)/n
  (the distribution of a resampled mean of 0/1 data), so it costs O(resamples) not O(n x resamples).
- :func:`grouped_rates_bootstrap`: resampled per-group rates for many groups at once.
- :func:`permutation_test`: difference in means with group sizes kept; exact enumeration when
  the number of splits is small, else Monte Carlo with p = (count + 1) / (n + 1), never 0.
- :func:`holm`, :func:`benjamini_hochberg`: adjusted p-values.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import numpy as np


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def bootstrap_ci(data: np.ndarray | Sequence[np.ndarray], statistic: Callable[..., np.ndarray] = np.mean,
                 n_resamples: int = 2000, alpha: float = 0.05, seed: int | None = 0,
                 chunk: int = 500, method: str = "linear") -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over rows of ``data``.

    Args:
        data: one array (n, ...) or a sequence of aligned arrays resampled together (paired).
        statistic: called as ``statistic(*arrays_resampled, axis=1)`` on arrays of shape
            (chunk, n, ...); must reduce axis 1. numpy reductions (np.mean) work as they are.
        n_resamples: number of bootstrap resamples.
        alpha: 1 - coverage.
        method: numpy quantile method. ``inverted_cdf`` takes order statistics without
            interpolating, which keeps a bound finite next to infinite resamples (ratios).

    Returns:
        (low, high). NaN when there is no data.
    """
    _check_alpha(alpha)
    arrays = [np.asarray(data)] if isinstance(data, np.ndarray) or np.isscalar(data[0]) else [np.asarray(a) for a in data]
    n = len(arrays[0])
    if n == 0:
        return (float("nan"), float("nan"))
    if any(len(a) != n for a in arrays):
        raise ValueError("bootstrap_ci: paired arrays must have the same length")
    rng = _rng(seed)
    stats = []
    for start in range(0, n_resamples, chunk):
        m = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(m, n))
        stats.append(np.asarray(statistic(*[a[idx] for a in arrays], axis=1), dtype=float))
    allstats = np.concatenate(stats)
    lo, hi = np.nanquantile(allstats, [alpha / 2, 1 - alpha / 2], method=method)
    return (float(lo), float(hi))


def proportion_ci(successes: int, n: int, n_resamples: int = 2000, alpha: float = 0.05,
                  seed: int | None = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the rate ``successes / n`` (exact Binomial resampling)."""
    _check_alpha(alpha)
    if n <= 0:
        return (float("nan"), float("nan"))
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n]; got {successes} of {n}")
    draws = _rng(seed).binomial(n, successes / n, size=n_resamples) / n
    lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def grouped_rates_bootstrap(successes: np.ndarray, totals: np.ndarray, n_resamples: int = 2000,
                            seed: int | None = 0, stratified: bool = True) -> np.ndarray:
    """Resampled rates for G groups at once: array (n_resamples, G).

    ``stratified`` keeps each group's size (resample within groups: Binomial per group);
    otherwise the whole sample is resampled (Multinomial over group x outcome cells), so group
    sizes vary too, as in a plain bootstrap of the dataset.
    """
    succ = np.asarray(successes, dtype=np.int64)
    tot = np.asarray(totals, dtype=np.int64)
    if succ.shape != tot.shape or np.any(succ > tot) or np.any(succ < 0):
        raise ValueError("successes and totals must be aligned with 0 <= successes <= totals")
    rng = _rng(seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        if stratified:
            p = np.where(tot > 0, succ / np.maximum(tot, 1), 0.0)
            return rng.binomial(tot, p, size=(n_resamples, len(tot))) / np.where(tot > 0, tot, np.nan)
        n = int(tot.sum())
        cells = np.concatenate([succ, tot - succ]) / max(n, 1)
        counts = rng.multinomial(n, cells, size=n_resamples)
        g = len(tot)
        s, f = counts[:, :g], counts[:, g:]
        return s / np.where(s + f > 0, s + f, np.nan)


def ci_from_draws(draws: np.ndarray, alpha: float = 0.05, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of resampled statistics along ``axis`` (NaNs ignored)."""
    _check_alpha(alpha)
    lo, hi = np.nanquantile(draws, [alpha / 2, 1 - alpha / 2], axis=axis)
    return lo, hi


def permutation_test(x: Sequence[float], y: Sequence[float],
                     statistic: Callable[[np.ndarray, np.ndarray], float] | None = None,
                     n_permutations: int = 10000, alternative: str = "two-sided",
                     seed: int | None = 0, exact_limit: int = 20000) -> tuple[float, float, bool]:
    """Permutation test of ``statistic(x, y)`` (default: mean(x) - mean(y)), group sizes kept.

    Returns:
        (observed statistic, p-value, exact). ``exact`` is True when every split of the pooled
        sample into sizes (len(x), len(y)) was enumerated (at most ``exact_limit`` splits); the
        observed split is among them, so p > 0. Otherwise p = (count + 1) / (n_permutations + 1).
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be two-sided, greater or less; got {alternative!r}")
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xa) == 0 or len(ya) == 0:
        raise ValueError("permutation_test needs at least one value in each group")
    pooled = np.concatenate([xa, ya])
    n, nx = len(pooled), len(xa)
    vectorised = statistic is None

    def stat_many(mask: np.ndarray) -> np.ndarray:  # mask (P, n) True = in x
        if vectorised:
            sx = (mask * pooled).sum(1) / nx
            sy = (~mask * pooled).sum(1) / (n - nx)
            return sx - sy
        return np.array([statistic(pooled[m], pooled[~m]) for m in mask])

    observed = float(xa.mean() - ya.mean()) if vectorised else float(statistic(xa, ya))
    n_splits = math.comb(n, nx)
    exact = n_splits <= exact_limit
    if exact:
        mask = np.zeros((n_splits, n), dtype=bool)
        for row, combo in enumerate(itertools.combinations(range(n), nx)):
            mask[row, list(combo)] = True
    else:
        rng = _rng(seed)
        keys = rng.random((n_permutations, n))
        order = np.argsort(keys, axis=1)
        mask = np.zeros((n_permutations, n), dtype=bool)
        np.put_along_axis(mask, order[:, :nx], True, axis=1)
    perm = stat_many(mask)
    tol = 1e-12 * max(1.0, abs(observed))
    if alternative == "two-sided":
        count = int(np.sum(np.abs(perm) >= abs(observed) - tol))
    elif alternative == "greater":
        count = int(np.sum(perm >= observed - tol))
    else:
        count = int(np.sum(perm <= observed + tol))
    p = count / n_splits if exact else (count + 1) / (n_permutations + 1)
    return observed, float(max(p, 1.0 / (n_splits if exact else n_permutations + 1))), exact


def permutation_test_counts(k_x: int, n_x: int, k_y: int, n_y: int,
                            alternative: str = "two-sided") -> tuple[float, float, bool]:
    """Exact permutation test of a rate difference for 0/1 outcomes, from counts alone.

    Same test as :func:`permutation_test` on 0/1 data (statistic: rate_x - rate_y, group sizes
    kept), but every split is enumerated analytically: the number of successes that land in x
    under a random split is hypergeometric, so the exact p costs O(n_x), not O(n x permutations).
    Added for the bias probe, where each group is tested against the rest on ~10^4 images.

    Returns:
        (observed rate difference, exact p-value (> 0: the observed split counts), True).
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be two-sided, greater or less; got {alternative!r}")
    if n_x < 1 or n_y < 1 or not 0 <= k_x <= n_x or not 0 <= k_y <= n_y:
        raise ValueError("permutation_test_counts needs n >= 1 per group and 0 <= k <= n")
    n, k = n_x + n_y, k_x + k_y
    lo, hi = max(0, k - n_y), min(k, n_x)
    support = np.arange(lo, hi + 1)

    def lcomb(a: int, b: np.ndarray) -> np.ndarray:
        return np.array([math.lgamma(a + 1) - math.lgamma(int(j) + 1) - math.lgamma(a - int(j) + 1) for j in b])

    logp = lcomb(k, support) + lcomb(n - k, n_x - support) - (math.lgamma(n + 1) - math.lgamma(n_x + 1)
                                                             - math.lgamma(n_y + 1))
    pmf = np.exp(logp - logp.max())
    pmf /= pmf.sum()
    diff = support / n_x - (k - support) / n_y
    observed = k_x / n_x - k_y / n_y
    tol = 1e-12 * max(1.0, abs(observed))
    if alternative == "two-sided":
        hit = np.abs(diff) >= abs(observed) - tol
    elif alternative == "greater":
        hit = diff >= observed - tol
    else:
        hit = diff <= observed + tol
    return float(observed), float(min(1.0, pmf[hit].sum())), True


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error control), in input order."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def benjamini_hochberg(pvalues: Sequence[float]) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (false-discovery-rate control), in input order."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    import pandas as pd

    rx = pd.Series(x, dtype=float).rank().to_numpy()
    ry = pd.Series(y, dtype=float).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def minimum_detectable_difference(n: int, p: float, alpha: float = 0.05, power: float = 0.8,
                                  n_ref: int | None = None) -> float:
    """Smallest rate difference a two-proportion z-test detects with ``power`` at group size n
    (normal approximation; ``n_ref`` is the comparison group's size, default the same)."""
    from statistics import NormalDist

    if n <= 0:
        return float("nan")
    n_ref = n_ref or n
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(z * math.sqrt(p * (1 - p) * (1 / n + 1 / n_ref)))
