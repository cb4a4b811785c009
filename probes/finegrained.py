"""Fine-grained classes: telling apart classes that differ by one attribute.

Why: the model card says CLIP struggles with fine-grained classification (car models, flower
species, aircraft variants; Radford et al. 2021, section 3.1.5). In the toy world the finest
planted distinction is colour: "a red apple" vs "a green apple" differ by one attribute while
"apple" vs "car" differ in shape. Three zero-shot readings on the same images:

- ``coarse``: the object class among all classes;
- ``fine``: the (colour, class) pair among every typical pair of the world;
- ``within_class``: the colour among the typical colours of the image's own class (the class
  is given; only the one attribute must be read).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from clipaudit.probes.counting import versus_chance
from clipaudit.probes.features import zero_shot_correct, zero_shot_logits

FINE_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)


def fine_grained_table(model, x: np.ndarray, labels: Sequence[str], attributes: Sequence[str],
                       variants: Mapping[str, Sequence[str]], templates: Sequence[str] = FINE_TEMPLATES,
                       alpha: float = 0.05) -> pd.DataFrame:
    """Zero-shot accuracy at the coarse, fine and within-class levels, each with chance.

    Args:
        x: (N, D) features; labels: (N,) coarse class; attributes: (N,) the attribute value
            (colour); variants: class -> the attribute values that make its fine classes.
            Images whose attribute is not among their class's variants are left out.

    Returns:
        Rows ``task, method (coarse | fine | within_class), n, accuracy, ci_low, ci_high,
        chance, above_chance, p_value, n_classes``.
    """
    labels = np.asarray(list(labels), dtype=object)
    attrs = np.asarray(list(attributes), dtype=object)
    keep = np.array([a in variants.get(c, ()) for c, a in zip(labels, attrs)], dtype=bool)
    x, labels, attrs = x[keep], labels[keep], attrs[keep]
    coarse = sorted(variants)
    fine = [f"{a} {c}" for c in coarse for a in variants[c]]
    truth_fine = np.asarray([f"{a} {c}" for c, a in zip(labels, attrs)], dtype=object)
    rows = [{**versus_chance("fine_grained", "coarse", zero_shot_correct(model, x, labels, coarse, templates),
                             1 / len(coarse), alpha), "n_classes": len(coarse)},
            {**versus_chance("fine_grained", "fine", zero_shot_correct(model, x, truth_fine, fine, templates),
                             1 / len(fine), alpha), "n_classes": len(fine)}]
    within = np.zeros(len(labels), dtype=bool)
    chance = np.zeros(len(labels))
    for c in pd.unique(labels):
        m = labels == c
        names = [f"{a} {c}" for a in variants[c]]
        pred = zero_shot_logits(model, x[m], names, templates).argmax(1)
        within[m] = np.asarray(names, dtype=object)[pred] == truth_fine[m]
        chance[m] = 1 / len(names)
    rows.append({**versus_chance("fine_grained", "within_class", within, float(chance.mean()) if len(chance) else 0.5,
                                 alpha), "n_classes": int(np.mean([len(v) for v in variants.values()]))})
    return pd.DataFrame(rows)


__all__ = ["FINE_TEMPLATES", "fine_grained_table"]
