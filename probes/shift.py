"""Accuracy under distribution shift, with intervals, and effective robustness.

Why: the CLIP paper's headline robustness result (Radford et al. 2021, section 3.3, figure 13)
is that zero-shot CLIP loses far less accuracy from ImageNet to its natural shifts (V2,
Rendition, Sketch, ObjectNet, Adversarial) than ImageNet-trained models of the same
in-distribution accuracy, and that fitting a linear probe on ImageNet gives part of that back
(figure 14). Each measurement here takes per-image correctness and a domain column.

Effective robustness (Taori et al. 2020, "Measuring robustness to natural distribution shifts
in image classification"): fit a line through baseline classifiers' (in-distribution,
shifted) accuracies *after a logit transform of both axes*; a model's effective robustness is
its shifted accuracy minus the accuracy the line predicts from its in-distribution accuracy
(both back on the accuracy scale). Zero means "as robust as the baseline family predicts".
Which baselines to fit on is the caller's choice and must be stated; the limitations audit
fits on linear probes trained on the model's own in-distribution features (k-shot and full,
every repeat): classifiers adapted to the training distribution, the role ImageNet-trained
models play in Taori et al.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from clipaudit.errors import ClipauditError
from clipaudit.stats import rate_ci


def accuracy_by_domain(correct: Sequence[bool], domains: Sequence[str], alpha: float = 0.05) -> pd.DataFrame:
    """One row per domain: ``domain, n, correct, accuracy, ci_low, ci_high`` (Wilson interval)."""
    df = pd.DataFrame({"domain": np.asarray(domains, dtype=object), "ok": np.asarray(correct, dtype=bool)})
    rows = []
    for domain, g in df.groupby("domain", sort=False):
        ci = rate_ci(int(g["ok"].sum()), len(g), alpha=alpha)
        rows.append({"domain": str(domain), "n": int(ci.n), "correct": int(ci.k), "accuracy": ci.rate,
                     "ci_low": ci.lo, "ci_high": ci.hi})
    return pd.DataFrame(rows, columns=["domain", "n", "correct", "accuracy", "ci_low", "ci_high"])


def drop_interval(k_base: int, n_base: int, k_shift: int, n_shift: int, alpha: float = 0.05) -> tuple[float, float, float]:
    """Accuracy drop (base minus shifted) and its interval: Newcombe's hybrid score interval for
    a difference of two independent proportions (statsmodels ``confint_proportions_2indep``).

    For a restyled copy of the same images the two samples are positively correlated, which
    makes this interval conservative (wider than a paired one).
    """
    from statsmodels.stats.proportion import confint_proportions_2indep

    if n_base < 1 or n_shift < 1:
        return float("nan"), float("nan"), float("nan")
    lo, hi = confint_proportions_2indep(k_base, n_base, k_shift, n_shift, method="newcomb", compare="diff",
                                        alpha=alpha)
    return k_base / n_base - k_shift / n_shift, float(lo), float(hi)


def shift_table(acc: pd.DataFrame, base: str, controls: Sequence[str] = (), alpha: float = 0.05) -> pd.DataFrame:
    """Add the drop from ``base`` with its interval and a ``flagged`` column to
    :func:`accuracy_by_domain` output.

    ``flagged`` = the drop's interval lies wholly above zero (accuracy fell, beyond sampling
    noise). ``role`` is ``base``, ``control`` (an unshifted resample, which should not be
    flagged) or ``shift``.

    Raises:
        ClipauditError: ``base`` is not one of the domains.
    """
    if base not in set(acc["domain"]):
        raise ClipauditError(f"base domain {base!r} has no images; domains: {', '.join(map(str, acc['domain']))}")
    b = acc.loc[acc["domain"] == base].iloc[0]
    out = acc.copy()
    drops = [drop_interval(int(b["correct"]), int(b["n"]), int(r["correct"]), int(r["n"]), alpha)
             for _, r in acc.iterrows()]
    out["drop"] = [d[0] for d in drops]
    out["drop_ci_low"] = [d[1] for d in drops]
    out["drop_ci_high"] = [d[2] for d in drops]
    out["role"] = ["base" if d == base else "control" if d in set(controls) else "shift" for d in out["domain"]]
    out["flagged"] = (out["role"] != "base") & (out["drop_ci_low"] > 0)
    return out


def _logit(p: np.ndarray, n: np.ndarray | int | None = None) -> np.ndarray:
    """logit with accuracies of 0 or 1 pulled in by half an image (1 / 2n), or by 1e-4 without n."""
    p = np.asarray(p, float)
    eps = 0.5 / np.asarray(n, float) if n is not None else 1e-4
    return np.log(np.clip(p, eps, 1 - eps) / (1 - np.clip(p, eps, 1 - eps)))


def logit_fit(baseline_id: Sequence[float], baseline_shift: Sequence[float],
              n_id: int | None = None, n_shift: int | None = None) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line logit(shifted) ~ logit(in-distribution).

    Raises:
        ClipauditError: fewer than 2 baselines, or all at one in-distribution accuracy.
    """
    a = _logit(np.asarray(baseline_id, float), n_id)
    b = _logit(np.asarray(baseline_shift, float), n_shift)
    if len(a) < 2 or np.ptp(a) < 1e-9:
        raise ClipauditError("effective robustness needs at least 2 baseline classifiers with different "
                             "in-distribution accuracies")
    slope, intercept = np.polyfit(a, b, 1)
    return float(slope), float(intercept)


def effective_robustness(id_accuracy: float, shift_accuracy: float, slope: float, intercept: float,
                         n_id: int | None = None) -> float:
    """Shifted accuracy minus the baseline line's prediction at ``id_accuracy`` (Taori et al. 2020)."""
    z = slope * float(_logit(np.asarray([id_accuracy]), n_id)[0]) + intercept
    return float(shift_accuracy - 1.0 / (1.0 + np.exp(-z)))


__all__ = ["accuracy_by_domain", "drop_interval", "effective_robustness", "logit_fit", "shift_table"]
