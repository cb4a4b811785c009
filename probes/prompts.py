"""Prompt engineering: the bare class name, one sentence, and an ensemble of templates.

Why: the CLIP paper (Radford et al. 2021, section 3.1.4) found that a sentence such as
"a photo of a {}." beats the bare class name, and that averaging the text embeddings of many
templates (ensembling in embedding space, one classifier per class) adds more on ImageNet.
The ensemble below is ours, written for drawn and rendered objects in that spirit.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from clipaudit.probes.features import zero_shot_correct
from clipaudit.stats import bootstrap_ci, rate_ci

BARE: tuple[str, ...] = ("{}",)
PHOTO: tuple[str, ...] = ("a photo of a {}.",)
ENSEMBLE: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture showing a {}.",
    "an image of the {}.",
    "a {} on a plain background.",
    "a drawing of a {}.",
    "a sketch of the {}.",
    "a cartoon {}.",
    "a blurry photo of a {}.",
    "a small {}.",
    "a large {}.",
)
PROMPT_SETS: dict[str, tuple[str, ...]] = {"bare": BARE, "photo": PHOTO, "ensemble": ENSEMBLE}


def prompt_gains(model, x: np.ndarray, labels: Sequence[str], domains: Sequence[str], classnames: Sequence[str],
                 prompt_sets: Mapping[str, Sequence[str]] = PROMPT_SETS, reference: str = "bare",
                 n_resamples: int = 1000, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Zero-shot accuracy per prompt set and domain, and each set's gain over ``reference``.

    The gain is paired (same images, two classifiers): its interval is a percentile bootstrap
    of the per-image difference in correctness (:func:`clipaudit.stats.bootstrap_ci`).

    Returns:
        One row per (prompt_set, domain): ``prompt_set, domain, n, accuracy, ci_low, ci_high,
        gain, gain_ci_low, gain_ci_high, templates`` (gain is 0 for the reference itself).

    Raises:
        ValueError: ``reference`` is not one of ``prompt_sets``.
    """
    if reference not in prompt_sets:
        raise ValueError(f"reference prompt set {reference!r} not in {', '.join(prompt_sets)}")
    domains = np.asarray(domains, dtype=object)
    correct = {name: zero_shot_correct(model, x, labels, classnames, t) for name, t in prompt_sets.items()}
    rows = []
    for name, ok in correct.items():
        for domain in pd.unique(domains):
            m = domains == domain
            ci = rate_ci(int(ok[m].sum()), int(m.sum()), alpha=alpha)
            diff = ok[m].astype(float) - correct[reference][m].astype(float)
            glo, ghi = (0.0, 0.0) if name == reference else bootstrap_ci(diff, n_resamples=n_resamples, alpha=alpha,
                                                                            seed=seed)
            rows.append({"prompt_set": name, "domain": str(domain), "n": ci.n, "accuracy": ci.rate,
                         "ci_low": ci.lo, "ci_high": ci.hi, "gain": float(diff.mean()),
                         "gain_ci_low": glo, "gain_ci_high": ghi, "templates": len(prompt_sets[name])})
    return pd.DataFrame(rows)


__all__ = ["BARE", "ENSEMBLE", "PHOTO", "PROMPT_SETS", "prompt_gains"]
