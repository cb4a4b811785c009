"""Fairness metrics as pure functions of arrays, so each is checked against hand-computed values.

Definitions (see ``shared/reference/clip-facts.md``):

- MaxSkew@k (Geyik et al. 2019): ``Skew_a = ln(p_k(a) / p*(a))`` with ``p_k(a)`` the share of
  group ``a`` among the top ``k`` items and ``p*(a)`` the target share; ``MaxSkew = max_a Skew_a``.
  Zero handling: a group absent from the top k has ``Skew = -inf``, which never wins the max; a
  group with target share 0 is left out (it cannot be over- or under-represented by design).
- NDKL (Geyik et al. 2019): ``(1/Z) sum_{i=1..k} KL(D_i || D*) / log2(i + 1)``,
  ``Z = sum_{i=1..k} 1 / log2(i + 1)``; ``KL`` in nats with ``0 * log 0 = 0``.
- WEAT (Caliskan et al. 2017; image form by Steed & Caliskan 2021):
  ``s(w) = mean_a cos(w, a) - mean_b cos(w, b)``;
  ``d = (mean_X s - mean_Y s) / std_{X u Y} s`` (sample std, ddof=1).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def group_shares(groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Share of each group code 0..n_groups-1 along the last axis. groups: (..., n) int."""
    groups = np.asarray(groups)
    counts = np.stack([(groups == g).sum(-1) for g in range(n_groups)], axis=-1)
    return counts / max(groups.shape[-1], 1)


def skews(topk_groups: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``ln(p_k(a) / p*(a))`` per group. topk_groups: (..., k) int codes; target: (..., G).

    Returns (..., G); -inf where a group is absent from the top k, nan where its target is 0.
    """
    target = np.asarray(target, dtype=float)
    pk = group_shares(topk_groups, target.shape[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(pk) - np.log(target)
    return np.where(target > 0, out, np.nan)


def max_skew(topk_groups: np.ndarray, target: np.ndarray) -> np.ndarray:
    """MaxSkew@k: the largest skew over groups. Shapes as :func:`skews`; returns (...)."""
    return np.nanmax(skews(topk_groups, target), axis=-1)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) in nats along the last axis, with 0 * log(0 / q) = 0."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(-1)


def ndkl(ranked_groups: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Normalised discounted KL of a ranking. ranked_groups: (..., k) codes, best first;
    target: (..., G). Returns (...). 0 means every prefix matches the target exactly."""
    ranked = np.asarray(ranked_groups)
    target = np.asarray(target, dtype=float)
    k, g = ranked.shape[-1], target.shape[-1]
    onehot = (ranked[..., None] == np.arange(g)).astype(float)  # (..., k, G)
    prefix = np.cumsum(onehot, axis=-2) / np.arange(1, k + 1)[:, None]
    kl = kl_divergence(prefix, target[..., None, :])  # (..., k)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    return (kl * discount).sum(-1) / discount.sum()


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


def weat_association(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``s(w) = mean cos(w, A) - mean cos(w, B)`` for each row of w (N, D); a (Na, D), b (Nb, D)."""
    w, a, b = _unit(w), _unit(a), _unit(b)
    return (w @ a.T).mean(1) - (w @ b.T).mean(1)


def weat_effect_size(s_x: Sequence[float], s_y: Sequence[float]) -> float:
    """Cohen's-d-style WEAT effect size from the associations of the two target sets.

    Returns nan when the pooled associations have no spread (d is undefined).
    """
    s_x, s_y = np.asarray(s_x, dtype=float), np.asarray(s_y, dtype=float)
    pooled = np.concatenate([s_x, s_y])
    if len(s_x) == 0 or len(s_y) == 0 or len(pooled) < 2:
        return float("nan")
    sd = pooled.std(ddof=1)
    if sd <= 1e-12 * max(1.0, float(np.abs(pooled).max())):
        return float("nan")
    return float((s_x.mean() - s_y.mean()) / sd)
