"""Linear probes on frozen features, k-shot curves and what zero-shot is worth in shots.

The protocol is the CLIP paper's (Radford et al. 2021, section 3.2 and appendix A.3): an
L2-regularised multinomial logistic regression fit with L-BFGS (scikit-learn's
``LogisticRegression(solver="lbfgs")``) on frozen image features, with its one hyperparameter,
the inverse regularisation strength C, chosen on a validation split. Few-shot probes
(section 3.1.5, figure 6) sample k images per class; the paper found zero-shot CLIP matched a
4-shot probe on the same features.

Choices written down:

- C is searched over :data:`C_GRID` (a log grid, 1e-2 ... 1e4) on the validation split, and the
  probe is refit at that C on its training images only (validation images never train it).
- k-shot probes choose C on the same validation split as the full probe (a few-shot user with
  no validation data would do worse; this curve is the probe's best case).
- "Zero-shot is worth k shots" interpolates the k-shot curve linearly in log2(k) between the
  first two shot counts whose mean accuracies bracket zero-shot (the paper's figure 7 reading).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from clipaudit.errors import ClipauditError
from clipaudit.stats import rate_ci

C_GRID: tuple[float, ...] = (1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4)


@dataclass
class ProbeFit:
    """A fitted probe: the scikit-learn model, the C chosen and its validation accuracy."""

    model: object
    C: float
    val_accuracy: float
    classes: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(np.asarray(x, np.float64))  # type: ignore[attr-defined]

    def accuracy(self, x: np.ndarray, y: Sequence) -> float:
        return float(np.mean(self.predict(x) == np.asarray(y))) if len(y) else float("nan")


def _check_classes(y: np.ndarray, what: str) -> None:
    classes = np.unique(y)
    if len(classes) < 2:
        raise ClipauditError(f"{what} needs at least 2 classes, got {len(classes)}"
                             f"{' (' + str(classes[0]) + ')' if len(classes) else ''}")


def _logreg(C: float, max_iter: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(solver="lbfgs", C=C, max_iter=max_iter)


def fit_probe(x_train: np.ndarray, y_train: Sequence, x_val: np.ndarray, y_val: Sequence,
              c_grid: Sequence[float] = C_GRID, max_iter: int = 1000) -> ProbeFit:
    """Fit the probe at each C of ``c_grid`` on the training split; keep the best on validation.

    Args:
        x_train, x_val: (N, D) features.
        y_train, y_val: (N,) labels (any hashable).
        c_grid: candidate inverse regularisation strengths (ties: the smallest C, i.e. the
            most regularised, wins).
        max_iter: L-BFGS iteration cap.

    Returns:
        :class:`ProbeFit`.

    Raises:
        ClipauditError: fewer than 2 classes in the training labels, or an empty split.
    """
    y_train, y_val = np.asarray(y_train), np.asarray(y_val)
    if len(y_train) == 0 or len(y_val) == 0:
        raise ClipauditError(f"linear probe needs training and validation images; got {len(y_train)} and {len(y_val)}")
    _check_classes(y_train, "linear probe")
    xt, xv = np.asarray(x_train, np.float64), np.asarray(x_val, np.float64)
    best: ProbeFit | None = None
    for C in sorted(c_grid):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning at the weakest regularisation
            clf = _logreg(C, max_iter).fit(xt, y_train)
        acc = float(np.mean(clf.predict(xv) == y_val))
        if best is None or acc > best.val_accuracy:
            best = ProbeFit(clf, float(C), acc, clf.classes_)
    assert best is not None
    return best


def stratified_split(labels: Sequence, fractions: Sequence[float], seed: int = 0) -> list[np.ndarray]:
    """Index arrays splitting ``labels`` per class in the given ``fractions`` (last takes the rest).

    Every class contributes to every split when it has enough images (at least one each).

    Raises:
        ValueError: fractions not positive or summing above 1.
    """
    if any(f <= 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise ValueError(f"split fractions must be positive and sum to at most 1, got {list(fractions)}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = len(idx)
        sizes = [int(np.floor(f * n)) for f in fractions[:-1]]
        if n >= len(fractions):  # enough images: at least one in every split, the last included
            sizes = [max(1, s) for s in sizes]
            while sum(sizes) > n - 1:
                sizes[int(np.argmax(sizes))] -= 1
        bounds = [*np.cumsum(sizes).tolist(), n]
        start = 0
        for i, end in enumerate(bounds):
            parts[i].extend(idx[start:end].tolist())
            start = end
    return [np.sort(np.asarray(p, dtype=int)) for p in parts]


def kshot_indices(labels: Sequence, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` images per class drawn without replacement.

    Raises:
        ClipauditError: k < 1, or k larger than the smallest class (naming it and its size).
    """
    labels = np.asarray(labels)
    if k < 1:
        raise ClipauditError(f"k-shot needs k >= 1, got {k}")
    classes, counts = np.unique(labels, return_counts=True)
    if k > counts.min():
        small = str(classes[counts.argmin()])
        raise ClipauditError(f"k = {k} shots is larger than the smallest class ({small!r} has {counts.min()} "
                             f"training images); use k <= {counts.min()} or more images")
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c in classes])


def kshot_probes(x_pool: np.ndarray, y_pool: Sequence, x_val: np.ndarray, y_val: Sequence,
                 shots: Sequence[int] = (1, 2, 4, 8, 16), repeats: int = 3, seed: int = 0,
                 c_grid: Sequence[float] = C_GRID) -> list[tuple[int, int, ProbeFit]]:
    """``repeats`` probes per k of ``shots``, each on k images per class drawn from the pool.

    Returns:
        ``[(k, repeat, fit), ...]`` in increasing k.

    Raises:
        ClipauditError: a k larger than the smallest class of the pool (checked before any
            fitting), fewer than 2 classes, repeats < 1.
    """
    y_pool = np.asarray(y_pool)
    _check_classes(y_pool, "k-shot curve")
    if repeats < 1:
        raise ClipauditError(f"k-shot repeats must be >= 1, got {repeats}")
    ks = sorted(set(int(k) for k in shots))
    if not ks:
        raise ClipauditError("k-shot curve needs at least one k")
    rng = np.random.default_rng(seed)
    kshot_indices(y_pool, ks[-1], rng)
    out = []
    for k in ks:
        for r in range(repeats):
            idx = kshot_indices(y_pool, k, rng)
            out.append((k, r, fit_probe(x_pool[idx], y_pool[idx], x_val, y_val, c_grid)))
    return out


def score_probes(probes: Sequence[tuple[int, int, ProbeFit]], x_test: np.ndarray, y_test: Sequence) -> pd.DataFrame:
    """One row per probe: ``k, repeat, C, accuracy, correct, n`` on the test images."""
    y_test = np.asarray(y_test)
    rows = []
    for k, r, fit in probes:
        correct = int(np.sum(fit.predict(x_test) == y_test))
        rows.append({"k": k, "repeat": r, "C": fit.C, "accuracy": correct / max(1, len(y_test)),
                     "correct": correct, "n": int(len(y_test))})
    return pd.DataFrame(rows)


def kshot_curve(x_pool: np.ndarray, y_pool: Sequence, x_val: np.ndarray, y_val: Sequence,
                x_test: np.ndarray, y_test: Sequence, shots: Sequence[int] = (1, 2, 4, 8, 16),
                repeats: int = 3, seed: int = 0, c_grid: Sequence[float] = C_GRID) -> pd.DataFrame:
    """Probe accuracy on the test split for each k of ``shots``, ``repeats`` draws each
    (:func:`kshot_probes` scored by :func:`score_probes`).

    Returns:
        One row per (k, repeat): ``k, repeat, C, accuracy, correct, n``.

    Raises:
        ClipauditError: as :func:`kshot_probes`.
    """
    return score_probes(kshot_probes(x_pool, y_pool, x_val, y_val, shots, repeats, seed, c_grid), x_test, y_test)


def summarise_curve(runs: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per k: mean accuracy over repeats and a Wilson interval on the pooled counts.

    The pooled interval treats the repeats' test predictions as independent trials; it covers
    test-set sampling, and ``accuracy_sd`` (across repeats) shows the spread due to which shots
    were drawn.
    """
    rows = []
    for k, g in runs.groupby("k", sort=True):
        ci = rate_ci(int(g["correct"].sum()), int(g["n"].sum()), alpha=alpha)
        rows.append({"k": int(k), "accuracy": float(g["accuracy"].mean()), "ci_low": ci.lo, "ci_high": ci.hi,
                     "accuracy_sd": float(g["accuracy"].std(ddof=1)) if len(g) > 1 else 0.0,
                     "repeats": int(len(g)), "n": int(g["n"].sum())})
    return pd.DataFrame(rows)


def shots_worth(curve: pd.DataFrame, zero_shot_accuracy: float) -> tuple[float | None, str]:
    """How many labelled shots per class a probe needs to match zero-shot accuracy.

    Args:
        curve: :func:`summarise_curve` output (columns ``k``, ``accuracy``).
        zero_shot_accuracy: zero-shot accuracy on the same test images.

    Returns:
        ``(k, note)``: ``k`` interpolated in log2(k) where the curve first reaches zero-shot;
        ``(None, "above the 16-shot probe")`` when no k reaches it; ``(0.0, "below the 1-shot
        probe")`` when even the smallest k beats it.
    """
    ks = curve["k"].to_numpy(float)
    acc = curve["accuracy"].to_numpy(float)
    order = np.argsort(ks)
    ks, acc = ks[order], acc[order]
    if len(ks) == 0:
        return None, "no k-shot curve"
    if acc[0] >= zero_shot_accuracy:
        return 0.0, f"below the {int(ks[0])}-shot probe"
    for i in range(1, len(ks)):
        if acc[i] >= zero_shot_accuracy:
            lo, hi = math.log2(ks[i - 1]), math.log2(ks[i])
            t = (zero_shot_accuracy - acc[i - 1]) / (acc[i] - acc[i - 1])
            return float(2 ** (lo + t * (hi - lo))), "interpolated in log2(k)"
    return None, f"above the {int(ks[-1])}-shot probe"


def holdout_probe(x: np.ndarray, y: Sequence, fractions: Sequence[float] = (0.5, 0.2), seed: int = 0,
                  c_grid: Sequence[float] = C_GRID) -> tuple[ProbeFit, np.ndarray, np.ndarray]:
    """Split ``x, y`` per class into train / validation / test (``fractions`` for the first
    two, the rest tests), fit :func:`fit_probe`, and score the test split.

    Returns:
        ``(fit, test_index, test_correct)``: the probe, the test rows' indices and a bool per
        test row.

    Raises:
        ClipauditError: fewer than 2 classes or a split left empty.
    """
    y = np.asarray(y)
    _check_classes(y, "linear probe")
    train, val, test = stratified_split(y, list(fractions) + [max(1e-9, 1 - sum(fractions))], seed=seed)
    if len(test) == 0:
        raise ClipauditError(f"linear probe has no test images out of {len(y)}; use more images")
    fit = fit_probe(x[train], y[train], x[val], y[val], c_grid)
    return fit, test, fit.predict(x[test]) == y[test]


__all__ = ["C_GRID", "ProbeFit", "fit_probe", "holdout_probe", "kshot_curve", "kshot_indices", "kshot_probes",
           "score_probes", "shots_worth", "stratified_split", "summarise_curve"]
