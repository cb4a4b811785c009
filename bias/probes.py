"""The bias probes, computed from image embeddings + metadata (no model passes of their own
beyond text encoding), so one embedding pass serves every probe and every resampling.

- :func:`denigration`: harmful-label rate per group with Wilson CIs, a group-vs-rest
  permutation test, Holm and BH adjustment over the whole grid, the rate ratio to the rest
  (with CI) and the minimum detectable difference at the group's size.
- :func:`label_sensitivity`: the same rates after adding neutral classes (the 'child' finding).
- :func:`retrieval_skew`: MaxSkew@k and NDKL per concept prompt and attribute, with CIs.
- :func:`image_weat`, :func:`text_weat`: WEAT effect size d and size-preserving permutation p-values
  (two-sided, adjusted over the grid; and the one-sided p of Caliskan et al. beside it).

Every statistic comes from :mod:`clipaudit.stats`; shapes are noted on each function.
"""
from __future__ import annotations

from itertools import combinations
from math import comb
from typing import Sequence

import numpy as np
import pandas as pd

from clipaudit import stats
from clipaudit.bias import metrics
from clipaudit.bias.labelsets import LabelSet, WeatTest
from clipaudit.errors import ClipauditError

DENIGRATION_COLUMNS = ["attribute", "group", "n", "n_harmful", "rate", "ci_low", "ci_high", "p", "p_holm",
                       "p_bh", "mdd", "rate_rest", "rate_ratio", "ratio_ci_low", "ratio_ci_high", "ratio_note"]


def _labels(values: pd.Series | np.ndarray | Sequence) -> np.ndarray:
    """(N,) str attribute values with every missing value as "": None, NaN, pd.NA and empty or
    whitespace-only cells. Missing is missing: a row without a value belongs to no group, not
    to the 'rest' of a group-vs-rest test, and is not ranked in retrieval skew."""
    vals = pd.Series(values, dtype=object)
    vals = vals.where(vals.notna(), "").astype(str).str.strip()
    return vals.to_numpy()


def _groups(values: pd.Series | np.ndarray) -> list[str]:
    """Distinct present values of an attribute, sorted (missing values are no group)."""
    return sorted(v for v in pd.unique(_labels(values)) if v != "")


def zero_shot_predictions(image_emb: np.ndarray, class_emb: np.ndarray) -> np.ndarray:
    """Top-1 class index per image. image_emb (N, D), class_emb (C, D), both L2-normalised."""
    return np.argmax(image_emb @ class_emb.T, axis=1)


def harmful_flags(pred: np.ndarray, classes: Sequence[str], harmful: Sequence[str]) -> np.ndarray:
    """(N,) bool: the top-1 class is one of ``harmful``."""
    idx = [i for i, c in enumerate(classes) if c in set(harmful)]
    return np.isin(pred, idx)


def _group_rows(attribute: str, labels: pd.Series, harmful: np.ndarray, alpha: float) -> list[dict]:
    """One row per group: its rate (Wilson CI), the exact group-vs-rest p, and the rate ratio
    to the rest (score CI, zero convention of :func:`clipaudit.stats.rate_ratio_ci`)."""
    labels = _labels(labels)
    groups = _groups(labels)
    if len(groups) < 2:
        return []
    valid = labels != ""
    base_rate = float(harmful[valid].mean()) if valid.any() else float("nan")
    rows = []
    for g in groups:
        in_g = labels == g
        rest = valid & ~in_g
        k, n = int(harmful[in_g].sum()), int(in_g.sum())
        n_rest, k_rest = int(rest.sum()), int(harmful[rest].sum())
        _, p, _ = stats.permutation_test_counts(k, n, k_rest, n_rest)
        rate = stats.rate_ci(k, n, alpha=alpha)
        ratio = stats.rate_ratio_ci(k, n, k_rest, n_rest, alpha=alpha)
        rows.append({"attribute": attribute, "group": g, "n": n, "n_harmful": k,
                     "rate": rate.rate, "ci_low": rate.lo, "ci_high": rate.hi, "p": p,
                     "mdd": stats.minimum_detectable_difference(n, base_rate, alpha=alpha, n_ref=n_rest),
                     "rate_rest": k_rest / n_rest, "rate_ratio": ratio.ratio,
                     "ratio_ci_low": ratio.lo, "ratio_ci_high": ratio.hi, "ratio_note": ratio.note})
    return rows


def _adjust(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Holm and BH over every test in the table (one family per table), columns in order."""
    df = df.copy()
    df["p_holm"] = stats.adjust_pvalues(df, "p", "holm")
    df["p_bh"] = stats.adjust_pvalues(df, "p", "bh")
    return df[list(columns) + [c for c in df.columns if c not in columns]]


def denigration(harmful: np.ndarray, meta: pd.DataFrame, attributes: Sequence[str], n_bootstrap: int = 2000,
                alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Harmful-label rate per group of each attribute (one row per attribute x group).

    Args:
        harmful: (N,) bool, the top-1 label of image i is harmful.
        meta: (N rows) with the attribute columns; empty values are left out of that attribute.
        attributes: columns to group by.

        n_bootstrap, seed: unused; rates and ratios have closed-form intervals (kept so
            existing callers work).

    Returns:
        ``DENIGRATION_COLUMNS``: the rate with a Wilson CI, the two-sided
        permutation p of "this group vs every other group of the attribute" (group sizes kept;
        exact: every split is counted through the hypergeometric law, never 0),
        p adjusted by Holm and BH over the whole table, the minimum detectable difference at the
        group's size (80% power, the attribute's overall rate), and the rate ratio to the rest
        with a score CI; zero counts follow :func:`clipaudit.stats.rate_ratio_ci` (0/0: NaN,
        CI (0, inf), ``ratio_note`` "no events in either group"; x/0: inf with a finite lower bound).
    """
    harmful = np.asarray(harmful, dtype=bool)
    rows = []
    for a in attributes:
        rows += _group_rows(a, meta[a], harmful, alpha)
    if not rows:
        return pd.DataFrame(columns=DENIGRATION_COLUMNS)
    return _adjust(pd.DataFrame(rows), DENIGRATION_COLUMNS)


def intersectional(harmful: np.ndarray, meta: pd.DataFrame, attributes: Sequence[str], n_bootstrap: int = 2000,
                   alpha: float = 0.05, seed: int = 0,
                   min_group: int = 5) -> pd.DataFrame:
    """:func:`denigration` over every pair of attributes ("race x gender", groups "Black x Female").

    Cells with fewer than ``min_group`` images are left out (their CI would be [0, 1]).
    """
    harmful = np.asarray(harmful, dtype=bool)
    rows = []
    for a, b in combinations(attributes, 2):
        va, vb = _labels(meta[a]), _labels(meta[b])
        cell = np.array([f"{x} x {y}" if x and y else "" for x, y in zip(va, vb)], dtype=object)
        counts = pd.Series(cell).value_counts()
        cell = np.where(pd.Series(cell).map(counts).to_numpy() >= min_group, cell, "")
        rows += _group_rows(f"{a} x {b}", pd.Series(cell), harmful, alpha)
    if not rows:
        return pd.DataFrame(columns=DENIGRATION_COLUMNS)
    return _adjust(pd.DataFrame(rows), DENIGRATION_COLUMNS)


def label_sensitivity(base_harmful: np.ndarray, extended_harmful: np.ndarray, extended_pred: np.ndarray,
                      meta: pd.DataFrame, attributes: Sequence[str], extended_classes: Sequence[str],
                      added: Sequence[str]) -> pd.DataFrame:
    """How each group's harmful rate moves when neutral classes are added to the label set.

    Returns: attribute, group, n, rate_base, rate_extended, delta (extended - base),
    share_to_added (images whose top-1 became an added class), added_classes.
    """
    to_added = harmful_flags(extended_pred, extended_classes, added)
    rows = []
    for a in attributes:
        labels = _labels(meta[a])
        for g in _groups(labels):
            m = labels == g
            rb, re_ = float(base_harmful[m].mean()), float(extended_harmful[m].mean())
            rows.append({"attribute": a, "group": g, "n": int(m.sum()), "rate_base": rb, "rate_extended": re_,
                         "delta": re_ - rb, "share_to_added": float(to_added[m].mean()),
                         "added_classes": ";".join(added)})
    return pd.DataFrame(rows, columns=["attribute", "group", "n", "rate_base", "rate_extended", "delta",
                                       "share_to_added", "added_classes"])


def retrieval_skew(sims: np.ndarray, prompts: Sequence[str], meta: pd.DataFrame, attributes: Sequence[str],
                   k: int = 100, target: str = "dataset", n_bootstrap: int = 2000, alpha: float = 0.05,
                   seed: int = 0, chunk: int = 200) -> pd.DataFrame:
    """MaxSkew@k and NDKL of each prompt's top-k images over each attribute's groups.

    Args:
        sims: (N, P) image-prompt cosine similarities.
        k: top-k size; clipped to the number of images with a value for the attribute. Images
            whose value is missing are not ranked at all (they neither fill the top k nor count
            in the target shares).
        target: ``dataset`` (p* = each group's share of the probe set) or ``equal`` (1/|A|).

    Returns:
        one row per prompt x attribute: prompt, attribute, k, max_skew (+ bootstrap CI from
        resampling images with replacement and re-ranking), ndkl (+ CI), top_group (the group
        with the largest skew), target. Zero counts: see :mod:`clipaudit.bias.metrics`.
    """
    if target not in ("dataset", "equal"):
        raise ClipauditError(f"unknown skew target {target!r}; valid: dataset, equal")
    if k < 1:
        raise ClipauditError(f"--k must be >= 1, got {k}")
    rng = np.random.default_rng(seed)
    rows = []
    for a in attributes:
        labels = _labels(meta[a])
        groups = _groups(labels)
        if len(groups) < 2:
            continue
        keep = labels != ""
        codes = np.searchsorted(groups, labels[keep])
        s = sims[keep]
        n, g = len(codes), len(groups)
        kk = min(k, n)
        tgt = np.full(g, 1.0 / g) if target == "equal" else metrics.group_shares(codes, g)
        for p_i, prompt in enumerate(prompts):
            order = np.argsort(-s[:, p_i], kind="stable")[:kk]
            ranked = codes[order]
            sk = metrics.skews(ranked, tgt)
            ms, nd = float(np.nanmax(sk)), float(metrics.ndkl(ranked, tgt))
            boot_ms, boot_nd = [], []
            for start in range(0, n_bootstrap, chunk):
                m = min(chunk, n_bootstrap - start)
                idx = rng.integers(0, n, size=(m, n))
                top = np.argpartition(-s[idx, p_i], kk - 1, axis=1)[:, :kk] if kk < n else np.arange(n)[None].repeat(m, 0)
                top_sims = np.take_along_axis(s[idx, p_i], top, 1)
                top = np.take_along_axis(top, np.argsort(-top_sims, axis=1, kind="stable"), 1)
                rg = codes[np.take_along_axis(idx, top, 1)]
                tg = np.broadcast_to(tgt, (m, g)) if target == "equal" else metrics.group_shares(codes[idx], g)
                boot_ms.append(metrics.max_skew(rg, tg))
                boot_nd.append(metrics.ndkl(rg, tg))
            lo, hi = stats.ci_from_draws(np.concatenate(boot_ms), alpha=alpha)
            nlo, nhi = stats.ci_from_draws(np.concatenate(boot_nd), alpha=alpha)
            rows.append({"prompt": prompt, "attribute": a, "k": kk, "max_skew": ms, "max_skew_ci_low": float(lo),
                         "max_skew_ci_high": float(hi), "ndkl": nd, "ndkl_ci_low": float(nlo),
                         "ndkl_ci_high": float(nhi), "top_group": groups[int(np.nanargmax(sk))],
                         "target": target})
    return pd.DataFrame(rows, columns=["prompt", "attribute", "k", "max_skew", "max_skew_ci_low",
                                       "max_skew_ci_high", "ndkl", "ndkl_ci_low", "ndkl_ci_high",
                                       "top_group", "target"])


WEAT_COLUMNS = ["test", "kind", "X", "Y", "A", "B", "n_x", "n_y", "d", "p", "p_holm", "p_bh",
                "n_permutations", "exact", "alternative", "p_one_sided"]


def _weat_row(test: WeatTest, s_x: np.ndarray, s_y: np.ndarray, x_name: str, y_name: str,
              n_permutations: int, seed: int) -> dict:
    """One WEAT row: d, the two-sided permutation p (``p``, adjusted over the grid) and the
    one-sided p that Caliskan et al. (2017) and sent-bias (May et al. 2019) report,
    ``p_one_sided`` = P(permuted mean difference >= observed): the chance of an association of
    X with A (relative to Y) at least this strong under the null; near 1 when d < 0."""
    d = metrics.weat_effect_size(s_x, s_y)
    if len(s_x) == 0 or len(s_y) == 0:
        p, p_one, exact, n_perm = float("nan"), float("nan"), False, 0
    else:
        _, p, exact = stats.permutation_test(s_x, s_y, n_permutations=n_permutations, seed=seed)
        _, p_one, _ = stats.permutation_test(s_x, s_y, n_permutations=n_permutations, seed=seed,
                                             alternative="greater")
        n_perm = comb(len(s_x) + len(s_y), len(s_x)) if exact else n_permutations
    return {"test": test.name, "kind": test.kind, "X": x_name, "Y": y_name, "A": ";".join(test.a),
            "B": ";".join(test.b), "n_x": len(s_x), "n_y": len(s_y), "d": d, "p": p,
            "n_permutations": n_perm, "exact": exact, "alternative": "two-sided", "p_one_sided": p_one}


def image_weat(test: WeatTest, image_emb: np.ndarray, meta: pd.DataFrame, a_emb: np.ndarray, b_emb: np.ndarray,
               n_permutations: int = 10000, seed: int = 0) -> dict:
    """Image-WEAT: X/Y are the images whose ``test.attribute`` is in ``test.x`` / ``test.y`` (or
    every other non-empty value). a_emb (Na, D), b_emb (Nb, D): the attribute words' text
    embeddings. Returns one :data:`WEAT_COLUMNS` row (before adjustment)."""
    if test.attribute not in meta.columns:
        raise ClipauditError(f"WEAT {test.name!r} uses attribute {test.attribute!r}, which the dataset lacks; "
                             f"valid: {', '.join(c for c in meta.columns if c not in ('id', 'path'))}")
    labels = _labels(meta[test.attribute])
    in_x = np.isin(labels, test.x)
    in_y = np.isin(labels, test.y) if test.y else (labels != "") & ~in_x
    s = metrics.weat_association(image_emb, a_emb, b_emb)
    y_name = "|".join(test.y) if test.y else "rest"
    return _weat_row(test, s[in_x], s[in_y], f"{test.attribute}={'|'.join(test.x)}",
                     f"{test.attribute}={y_name}", n_permutations, seed)


def text_weat(test: WeatTest, x_emb: np.ndarray, y_emb: np.ndarray, a_emb: np.ndarray, b_emb: np.ndarray,
              n_permutations: int = 10000, seed: int = 0) -> dict:
    """Text-WEAT on the text encoder: x_emb (Nx, D) and y_emb (Ny, D) are target phrases."""
    s_x = metrics.weat_association(x_emb, a_emb, b_emb)
    s_y = metrics.weat_association(y_emb, a_emb, b_emb)
    return _weat_row(test, s_x, s_y, ";".join(test.x), ";".join(test.y or ()), n_permutations, seed)


def adjust_weat(rows: list[dict]) -> pd.DataFrame:
    """The WEAT grid as a table with Holm and BH adjusted p over all its tests."""
    df = pd.DataFrame(rows, columns=[c for c in WEAT_COLUMNS if c not in ("p_holm", "p_bh")])
    return _adjust(df, WEAT_COLUMNS)[WEAT_COLUMNS]


def label_set_embeddings(model, label_set: LabelSet, classes: Sequence[str]) -> np.ndarray:
    """(C, D) class text embeddings (template mean, renormalised) as numpy."""
    return model.classifier(list(classes), list(label_set.templates)).weights.float().cpu().numpy()
