"""Planted-truth scoring: how many of the toy world's real factors a set of units recovers.

Why: SAE metrics such as FVU say nothing about whether the latents are the world's features
(SAEBench, Karvonen et al. 2025, found two of its own proxy metrics unreliable for lack of ground
truth). The toy world records every scene's class, colour, written word, skin tone, age, hair
and prop, so a unit can be scored as a 1-D probe for each factor.

Method: for each factor, within the scenes where it is defined (object scenes for class, colour
and "a word is written"; worded scenes for which word; people for person attributes; otherwise a
plain "person" unit separates child from adult across all scenes), the images are split in two
halves by a seed; the unit with the best AUROC on the first half is chosen and its AUROC on the
second half is reported with a bootstrap CI (choosing and scoring on the same images would
reward the maximum of thousands of noisy AUROCs). Units are detectors: AUROC of "fires more on
the factor", not its mirror. The linear-probe ceiling is a logistic regression on all units
(scikit-learn), fit on the first half and scored on the second. Recall = share of factors whose
held-out AUROC is >= ``threshold`` (0.9), with a Wilson CI (:func:`clipaudit.stats.proportion_ci`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from clipaudit.stats import bootstrap_ci, proportion_ci

FACTOR_COLUMNS = ["factor", "group", "domain", "n_pos", "n_neg"]


@dataclass(frozen=True)
class Factor:
    """One planted factor: ``positive`` and ``domain`` are boolean masks over the source's items."""

    name: str
    group: str
    domain_name: str
    domain: np.ndarray
    positive: np.ndarray


def planted_factors(items: pd.DataFrame, min_positives: int = 10) -> list[Factor]:
    """The toy world's factors present in ``items`` (a toy source's metadata), each with at least
    ``min_positives`` positives and as many negatives in its domain.

    Groups: class, colour, word_written, word, skin, age, hair, prop.

    Raises:
        ValueError: ``items`` lacks the toy columns (kind, label, colour, word, skin, age, hair, role).
    """
    need = ["kind", "label", "colour", "word", "skin", "age", "hair", "role"]
    missing = [c for c in need if c not in items.columns]
    if missing:
        raise ValueError(f"planted-truth scoring needs toy-world metadata; the source lacks {', '.join(missing)}")
    col = {c: items[c].fillna("").astype(str).to_numpy() for c in need}
    objects, people = col["kind"] == "object", col["kind"] == "person"
    worded = col["word"] != ""
    specs: list[tuple[str, str, str, np.ndarray, np.ndarray]] = []
    for value in sorted(set(col["label"][objects]) - {""}):
        specs.append((f"class={value}", "class", "object", objects, col["label"] == value))
    for value in sorted(set(col["colour"][objects]) - {""}):
        specs.append((f"colour={value}", "colour", "object", objects, col["colour"] == value))
    specs.append(("word_written", "word_written", "object", objects, worded))
    for value in sorted(set(col["word"][worded])):
        specs.append((f"word={value}", "word", "worded", worded, col["word"] == value))
    for attr, group in (("skin", "skin"), ("age", "age"), ("hair", "hair"), ("role", "prop")):
        for value in sorted(set(col[attr][people]) - {""}):
            specs.append((f"{group}={value}", group, "person", people, col[attr] == value))
    out = []
    for name, group, dname, domain, pos in specs:
        pos = pos & domain
        if pos.sum() >= min_positives and (domain & ~pos).sum() >= min_positives:
            out.append(Factor(name, group, dname, domain.copy(), pos))
    return out


def split_halves(n: int, seed: int) -> np.ndarray:
    """(n,) bool: True = selection half, False = scoring half (a seeded permutation)."""
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[: n // 2]] = True
    return mask


def auroc_columns(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """AUROC of every column of ``scores`` (n, U) for the boolean labels ``positive`` (n,).

    Mann–Whitney form with mid-ranks for ties (equal to sklearn's ``roc_auc_score``).
    """
    ranks = rankdata(scores, axis=0)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.full(scores.shape[1], np.nan)
    return (ranks[positive].sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _auroc_rows(scores: np.ndarray, labels: np.ndarray, axis: int = 1) -> np.ndarray:
    """AUROC per bootstrap resample (rows of (R, n) arrays) for :func:`bootstrap_ci`."""
    ranks = rankdata(scores, axis=axis)
    lab = labels.astype(bool)
    n_pos = lab.sum(axis)
    n_neg = lab.shape[axis] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * lab).sum(axis) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auroc_ci(scores: np.ndarray, positive: np.ndarray, n_resamples: int = 500, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of one AUROC (images resampled)."""
    return bootstrap_ci([np.asarray(scores, float), np.asarray(positive, bool)], _auroc_rows,
                        n_resamples=n_resamples, seed=seed)


def best_units(units: Callable[[np.ndarray], "object"], factors: list[Factor], select: np.ndarray,
               n_units: int, chunk: int = 512) -> list[tuple[int, float]]:
    """For each factor, the unit with the best AUROC on its domain's selection half.

    Args:
        units: ``units(image_mask, start, stop)`` -> (n_selected, stop - start) scores.
        select: (N,) bool selection half.

    Returns:
        [(unit index, selection AUROC)] per factor.
    """
    best = [(-1, -np.inf)] * len(factors)
    domains: dict[str, list[int]] = {}
    for i, f in enumerate(factors):
        domains.setdefault(f.domain_name, []).append(i)
    for dname, idxs in domains.items():
        rows = factors[idxs[0]].domain & select
        for start in range(0, n_units, chunk):
            stop = min(n_units, start + chunk)
            block = np.asarray(units(rows, start, stop), dtype=np.float64)
            ranks = rankdata(block, axis=0)
            for i in idxs:
                pos = factors[i].positive[rows]
                n_pos, n_neg = int(pos.sum()), int((~pos).sum())
                if n_pos == 0 or n_neg == 0:
                    continue
                auc = (ranks[pos].sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
                j = int(np.argmax(auc))
                if auc[j] > best[i][1]:
                    best[i] = (start + j, float(auc[j]))
    return best


def score_units(units, factors: list[Factor], n_units: int, seed: int = 0, prefix: str = "unit",
                n_resamples: int = 500) -> pd.DataFrame:
    """Per-factor best unit (chosen on one half) and its held-out AUROC with a bootstrap CI.

    Returns:
        one row per factor: ``<prefix>``, ``<prefix>_select_auroc``, ``<prefix>_auroc``,
        ``<prefix>_ci_low``, ``<prefix>_ci_high``.
    """
    n = len(factors[0].domain) if factors else 0
    select = split_halves(n, seed)
    chosen = best_units(units, factors, select, n_units)
    rows = []
    for f, (unit, sel_auc) in zip(factors, chosen):
        held = f.domain & ~select
        pos = f.positive[held]
        if unit < 0 or pos.all() or not pos.any():  # a half without both classes: not scorable
            rows.append({prefix: -1, f"{prefix}_select_auroc": np.nan, f"{prefix}_auroc": np.nan,
                         f"{prefix}_ci_low": np.nan, f"{prefix}_ci_high": np.nan})
            continue
        scores = np.asarray(units(held, unit, unit + 1), dtype=np.float64)[:, 0]
        auc = float(auroc_columns(scores[:, None], pos)[0])
        lo, hi = auroc_ci(scores, pos, n_resamples, seed)
        rows.append({prefix: unit, f"{prefix}_select_auroc": sel_auc, f"{prefix}_auroc": auc,
                     f"{prefix}_ci_low": lo, f"{prefix}_ci_high": hi})
    return pd.DataFrame(rows)


def linear_probe_scores(features: np.ndarray, factors: list[Factor], seed: int = 0,
                        n_resamples: int = 500) -> pd.DataFrame:
    """The ceiling: an L2 logistic regression on every unit, fit on the selection half of the
    factor's domain and scored (AUROC, bootstrap CI) on the other half.

    Returns: one row per factor: ``probe_auroc``, ``probe_ci_low``, ``probe_ci_high``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = len(features)
    select = split_halves(n, seed)
    rows = []
    for f in factors:
        fit, held = f.domain & select, f.domain & ~select
        if len(set(f.positive[fit])) < 2 or len(set(f.positive[held])) < 2:
            rows.append({"probe_auroc": np.nan, "probe_ci_low": np.nan, "probe_ci_high": np.nan})
            continue
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500))
        clf.fit(features[fit], f.positive[fit])
        scores = clf.decision_function(features[held])
        pos = f.positive[held]
        lo, hi = auroc_ci(scores, pos, n_resamples, seed)
        rows.append({"probe_auroc": float(auroc_columns(scores[:, None], pos)[0]), "probe_ci_low": lo,
                     "probe_ci_high": hi})
    return pd.DataFrame(rows)


def factor_frame(factors: list[Factor]) -> pd.DataFrame:
    return pd.DataFrame([{"factor": f.name, "group": f.group, "domain": f.domain_name,
                          "n_pos": int(f.positive.sum()), "n_neg": int((f.domain & ~f.positive).sum())}
                         for f in factors], columns=FACTOR_COLUMNS)


def recall(aurocs: pd.Series, threshold: float = 0.9) -> tuple[float, float, float]:
    """(share of factors with AUROC >= threshold, Wilson CI low, high)."""
    values = pd.to_numeric(aurocs, errors="coerce").dropna().to_numpy()
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    hits = int((values >= threshold).sum())
    lo, hi = proportion_ci(hits, len(values))
    return hits / len(values), float(lo), float(hi)


def dense_units(matrix: np.ndarray) -> Callable:
    """``units`` callable over a dense (N, U) array (neurons)."""
    return lambda rows, start, stop: matrix[rows, start:stop]


def sparse_units(matrix) -> Callable:
    """``units`` callable over a scipy sparse (N, U) matrix (SAE codes), densified per chunk."""
    csc = matrix.tocsc()
    return lambda rows, start, stop: csc[:, start:stop].toarray()[rows]


__all__ = ["Factor", "auroc_ci", "auroc_columns", "best_units", "dense_units", "factor_frame", "linear_probe_scores",
           "planted_factors", "recall", "score_units", "sparse_units", "split_halves"]
