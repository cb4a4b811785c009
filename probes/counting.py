"""Counting: can zero-shot read how many objects a scene holds, and is the count in the features?

Why: the CLIP model card lists counting among its weak spots (abstract and systematic tasks;
Radford et al. 2021, section 3.1 and the CLEVR-counts results of table 10). Two numbers
separate "cannot say it" from "cannot see it": zero-shot with count prompts ("a photo of
three apples.") against chance, and a linear probe for the count on the same frozen features.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from clipaudit.probes.features import zero_shot_logits
from clipaudit.probes.linear_probe import holdout_probe
from clipaudit.stats import rate_ci

COUNT_WORDS: tuple[str, ...] = ("one", "two", "three", "four")
_SAME_PLURAL = {"fish", "sheep", "deer"}


def plural(noun: str) -> str:
    """English plural of a toy class name (regular -s, -es after s/x/ch/sh, a few invariant)."""
    if noun in _SAME_PLURAL:
        return noun
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def count_prompts(noun: str, words: Sequence[str] = COUNT_WORDS) -> list[str]:
    """'a photo of one apple.', 'a photo of two apples.', ... for counts 1..len(words)."""
    return [f"a photo of {w} {noun if i == 0 else plural(noun)}." for i, w in enumerate(words)]


def zero_shot_counts(model, x: np.ndarray, nouns: Sequence[str], words: Sequence[str] = COUNT_WORDS) -> np.ndarray:
    """(N,) predicted count (1-based) per image: the best of its own class's count prompts."""
    nouns = np.asarray(list(nouns), dtype=object)
    pred = np.zeros(len(nouns), dtype=int)
    for noun in pd.unique(nouns):
        m = nouns == noun
        logits = zero_shot_logits(model, x[m], count_prompts(str(noun), words), ("{}",))
        pred[m] = logits.argmax(1) + 1
    return pred


def versus_chance(task: str, method: str, correct: np.ndarray, chance: float, alpha: float = 0.05) -> dict:
    """One table row: accuracy with its Wilson interval, chance, and an exact two-sided binomial
    test of accuracy = chance (scipy ``binomtest``)."""
    from scipy.stats import binomtest

    k, n = int(np.sum(correct)), int(len(correct))
    ci = rate_ci(k, n, alpha=alpha)
    p = float(binomtest(k, n, chance).pvalue) if n else float("nan")
    return {"task": task, "method": method, "n": n, "accuracy": ci.rate, "ci_low": ci.lo, "ci_high": ci.hi,
            "chance": float(chance), "above_chance": bool(n and ci.lo > chance), "p_value": p}


def count_table(model, x: np.ndarray, nouns: Sequence[str], counts: Sequence[int], seed: int = 0,
                alpha: float = 0.05) -> tuple[pd.DataFrame, np.ndarray]:
    """Zero-shot count accuracy and the count linear probe, each against chance.

    Args:
        x: (N, D) features of counting scenes; nouns: (N,) object class; counts: (N,) 1..4.

    Returns:
        ``(table, zero_shot_pred)``: rows for ``zero_shot`` and ``linear_probe`` (the probe is
        scored on a held-out test split, half the scenes train it, a fifth choose C), and
        the zero-shot predicted count per image.
    """
    counts = np.asarray(counts, dtype=int)
    chance = 1.0 / len(np.unique(counts))
    pred = zero_shot_counts(model, x, nouns)
    rows = [versus_chance("count", "zero_shot", pred == counts, chance, alpha)]
    fit, _test, ok = holdout_probe(x, counts, seed=seed)
    rows.append({**versus_chance("count", "linear_probe", ok, chance, alpha), "C": fit.C})
    return pd.DataFrame(rows), pred


__all__ = ["COUNT_WORDS", "count_prompts", "count_table", "plural", "versus_chance", "zero_shot_counts"]
