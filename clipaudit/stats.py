"""Statistics every audit reports with: bootstrap CIs, permutation tests, multiplicity control.

Why here: a rate without an interval, or fifty group tests without correction, is not evidence.
All functions take an explicit ``seed`` and are vectorised (10,000 resamples in one array op).

- :func:`bootstrap_ci`: percentile bootstrap of any statistic of one or more aligned arrays.
- :func:`proportion_ci` / :func:`rate_ci`: a rate's Wilson (or Clopper-Pearson) interval;
  the bootstrap is kept for statistics that are not proportions.
- :func:`rate_ratio` / :func:`rate_ratio_ci`: a ratio of two rates with its score interval and
  the one convention for 0/0 and x/0 that every table uses.
- :func:`ci_from_draws`: equal-tailed percentile interval of resampled statistics.
- :func:`adjust_pvalues`: Holm or BH over a table column; :func:`format_ci`: "v [lo, hi]".
- :func:`grouped_rates_bootstrap`: resampled per-group rates for many groups at once.
- :func:`permutation_test`: difference in means with group sizes kept; exact enumeration when
  the number of splits is small, else Monte Carlo with p = (count + 1) / (n + 1), never 0.
- :func:`holm`, :func:`benjamini_hochberg`: adjusted p-values.
"""
from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


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


_PROPORTION_METHODS = {"wilson": "wilson", "beta": "beta", "clopper-pearson": "beta", "jeffreys": "jeffreys",
                       "agresti-coull": "agresti_coull"}


def proportion_ci(successes: int, n: int, alpha: float = 0.05, method: str = "wilson", *,
                  n_resamples: int | None = None, seed: int | None = None) -> tuple[float, float]:
    """Confidence interval of the rate ``successes / n`` with real coverage at every count.

    Args:
        successes, n: counts, 0 <= successes <= n.
        alpha: 1 - coverage (0.05 -> a 95% interval).
        method: ``wilson`` (score interval, Wilson 1927; the default: close to nominal coverage
            on average, never zero-width), ``beta`` / ``clopper-pearson`` (exact, at least
            nominal coverage everywhere, wider), ``jeffreys`` or ``agresti-coull``. Computed by
            :func:`statsmodels.stats.proportion.proportion_confint`.
        n_resamples, seed: ignored; accepted so callers written for the former bootstrap
            version keep working. A percentile bootstrap of a rate has no width at 0 or n
            successes (0 of 10 gave [0, 0]), which is why it is no longer used for rates.

    Returns:
        (low, high) in [0, 1]; (nan, nan) when n == 0.

    Raises:
        ValueError: alpha outside (0, 1), successes outside [0, n], or an unknown method.
    """
    from statsmodels.stats.proportion import proportion_confint

    _check_alpha(alpha)
    if method not in _PROPORTION_METHODS:
        raise ValueError(f"unknown proportion CI method {method!r}; valid: {', '.join(_PROPORTION_METHODS)}")
    if n <= 0:
        return (float("nan"), float("nan"))
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n]; got {successes} of {n}")
    lo, hi = proportion_confint(int(successes), int(n), alpha=alpha, method=_PROPORTION_METHODS[method])
    return (float(max(0.0, lo)), float(min(1.0, hi)))


def grouped_rate_ci(groups, flags, alpha: float = 0.05, method: str = "wilson"):
    """Per group: ``n``, ``k``, ``rate = k / n`` and its :func:`proportion_ci` interval.

    Why not a bootstrap: a group's rate is a proportion, and a percentile bootstrap of a group
    where every item succeeded (or none did) collapses to a zero-width interval; Wilson keeps
    real coverage at every count.

    Args:
        groups: one label per item (length N).
        flags: one bool per item (length N).

    Returns:
        DataFrame with columns ``group, n, k, rate, ci_low, ci_high``, groups sorted.
    """
    import pandas as pd

    df = pd.DataFrame({"group": list(groups), "flag": np.asarray(flags, dtype=bool).astype(int)})
    agg = df.groupby("group", sort=True)["flag"].agg(["sum", "count"]).reset_index()
    rows = [rate_ci(int(k), int(n), alpha=alpha, method=method) for k, n in zip(agg["sum"], agg["count"])]
    return pd.DataFrame({"group": agg["group"], "n": agg["count"].astype(int), "k": agg["sum"].astype(int),
                         "rate": [r.rate for r in rows], "ci_low": [r.lo for r in rows],
                         "ci_high": [r.hi for r in rows]})


@dataclass(frozen=True)
class RateCI:
    """A rate with its confidence interval: ``rate = k / n`` in [lo, hi] (NaN when n == 0)."""

    rate: float
    lo: float
    hi: float
    k: int
    n: int


def rate_ci(k: int, n: int, alpha: float = 0.05, method: str = "wilson") -> RateCI:
    """``k / n`` with its :func:`proportion_ci` interval, as one record."""
    lo, hi = proportion_ci(k, n, alpha=alpha, method=method)
    return RateCI(float(k / n) if n > 0 else float("nan"), lo, hi, int(k), int(n))


@dataclass(frozen=True)
class RatioCI:
    """A rate ratio (k1/n1) / (k0/n0) with its confidence interval and, when the ratio is not an
    ordinary number, a note saying why (see :func:`rate_ratio_ci` for the convention)."""

    ratio: float
    lo: float
    hi: float
    note: str = ""


def rate_ratio(k1: np.ndarray | int, n1: np.ndarray | int, k0: np.ndarray | int,
               n0: np.ndarray | int) -> np.ndarray | float:
    """Point rate ratio (k1/n1) / (k0/n0), elementwise, under the convention of
    :func:`rate_ratio_ci`: NaN for 0/0 (no events in either group) or an empty group, +inf for
    x/0 with x > 0, 0 for 0/x."""
    k1, n1, k0, n0 = (np.asarray(v, dtype=float) for v in (k1, n1, k0, n0))
    with np.errstate(divide="ignore", invalid="ignore"):
        r1 = np.where(n1 > 0, k1 / np.where(n1 > 0, n1, 1), np.nan)
        r0 = np.where(n0 > 0, k0 / np.where(n0 > 0, n0, 1), np.nan)
        out = np.where(r0 > 0, r1 / np.where(r0 > 0, r0, 1), np.where(r1 > 0, np.inf, np.nan))
    out = np.where(np.isnan(r1) | np.isnan(r0), np.nan, out)
    return float(out) if out.ndim == 0 else out


def rate_ratio_ci(k1: int, n1: int, k0: int, n0: int, alpha: float = 0.05) -> RatioCI:
    """Ratio of two independent rates, (k1/n1) / (k0/n0), with a score confidence interval.

    The interval inverts the score test of the ratio (Koopman 1984; Miettinen & Nurminen 1985),
    computed by :func:`statsmodels.stats.proportion.confint_proportions_2indep`
    (``compare="ratio", method="score"``); it keeps its coverage with few events and stays
    defined when a group has none, where a bootstrap collapses to a point.

    Zero convention (the one every clipaudit table uses):

    - **0/0** (no events in either group): the ratio is undefined, reported as NaN with the note
      ``"no events in either group"``; the interval is (0, inf): the data exclude no ratio. It is
      *not* read as parity (1.0): zero events in both groups is absence of evidence.
    - **x/0**, x > 0: the ratio is +inf (note ``"no events in the reference group"``); the lower
      bound is the finite score bound, the upper bound +inf, so "CI excludes 1" stays decidable.
    - **0/x**, x > 0: the ratio is 0; the interval is (0, finite score bound).
    - an empty group (n1 or n0 == 0): NaN with (nan, nan), note ``"empty group"``.

    Returns:
        :class:`RatioCI` (ratio, lo, hi, note).

    Raises:
        ValueError: alpha outside (0, 1) or counts outside 0 <= k <= n.
    """
    from statsmodels.stats.proportion import confint_proportions_2indep

    _check_alpha(alpha)
    if not (0 <= k1 <= n1 and 0 <= k0 <= n0):
        raise ValueError(f"rate_ratio_ci needs 0 <= k <= n in each group; got {k1}/{n1} and {k0}/{n0}")
    nan, inf = float("nan"), float("inf")
    if n1 == 0 or n0 == 0:
        return RatioCI(nan, nan, nan, "empty group")
    if k1 == 0 and k0 == 0:
        return RatioCI(nan, 0.0, inf, "no events in either group")
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, hi = confint_proportions_2indep(int(k1), int(n1), int(k0), int(n0), method="score",
                                            compare="ratio", alpha=alpha)
    lo, hi = float(max(0.0, lo)), float(hi)
    if k0 == 0:
        return RatioCI(inf, lo, inf, "no events in the reference group")
    if k1 == 0:
        return RatioCI(0.0, 0.0, hi)
    return RatioCI(float(rate_ratio(k1, n1, k0, n0)), lo, hi)


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


def ci_from_draws(draws: np.ndarray, alpha: float = 0.05, axis: int = 0,
                  method: str = "linear") -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed percentile interval of resampled statistics along ``axis`` (NaNs ignored).

    A ``1 - alpha`` interval: its ends are the ``alpha / 2`` and ``1 - alpha / 2`` quantiles
    (alpha = 0.05 -> the 2.5th and 97.5th percentiles, not the 5th and 95th).

    Args:
        draws: (..., B, ...) resampled statistics, B along ``axis``.
        method: numpy quantile method (``inverted_cdf`` keeps a bound finite next to infinite
            draws, e.g. ratios).

    Returns:
        (low, high), each of the draws' shape without ``axis``.
    """
    _check_alpha(alpha)
    q = np.array([alpha / 2, 1 - alpha / 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices -> NaN bounds
        lo, hi = np.nanquantile(np.asarray(draws, dtype=float), q, axis=axis, method=method)
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


def adjust_pvalues(df: "pd.DataFrame", column: str = "p", method: str = "holm") -> "pd.Series":
    """Multiplicity-adjusted p-values of one table column, the whole column as one family.

    Args:
        df: the table; rows whose ``column`` is NaN are not tests (left NaN, not counted in m).
        method: ``holm`` (family-wise error, Holm 1979) or ``bh`` (false discovery rate,
            Benjamini & Hochberg 1995).

    Returns:
        a float Series aligned with ``df.index``.

    Raises:
        ValueError: unknown method or missing column.
    """
    import pandas as pd

    adjusters = {"holm": holm, "bh": benjamini_hochberg}
    if method not in adjusters:
        raise ValueError(f"unknown p-value adjustment {method!r}; valid: {', '.join(adjusters)}")
    if column not in df.columns:
        raise ValueError(f"no column {column!r} to adjust; columns: {', '.join(map(str, df.columns))}")
    p = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
    out = np.full(len(p), np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = adjusters[method](p[ok])
    return pd.Series(out, index=df.index, name=f"{column}_{method}")


def format_ci(value: float, lo: float, hi: float, digits: int = 3) -> str:
    """``"0.125 [0.050, 0.260]"``: a value with its interval at ``digits`` decimals; NaN is
    written ``n/a`` and infinities ``inf`` / ``-inf``."""
    def one(v: float) -> str:
        v = float(v)
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.{digits}f}"

    return f"{one(value)} [{one(lo)}, {one(hi)}]"


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
