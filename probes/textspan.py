"""TextSpan: label each attention head with the texts that span its outputs.

Gandelsman, Efros & Steinhardt, "Interpreting CLIP's image representation via text-based
decomposition", ICLR 2024, Algorithm 1. For one head, take its direct contributions to the image
embedding over a set of probe images (N, D), centre them, and keep the principal subspace of
rank ``rank``; project every candidate text embedding onto that subspace. Then, ``n_texts``
times: pick the text along whose direction the head's outputs vary most (largest variance of
the projections), remove that direction from the outputs and from every remaining text
(deflation), and record the share of the head's total variance the pick explained.

Checked against the authors' procedure (``text_span`` in yossigandelsman/clip_text_span):
same centring of outputs and texts, same principal-subspace projection, same selection by the
spread of ``outputs @ text``, same deflation of both sides.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch


def text_span(outputs: np.ndarray | torch.Tensor, text_embeddings: np.ndarray | torch.Tensor,
              texts: Sequence[str], n_texts: int = 5, rank: int | None = None) -> pd.DataFrame:
    """Greedily choose the texts explaining most of the variance of one head's outputs.

    Args:
        outputs: (N, D) the head's direct contributions over N probe images.
        text_embeddings: (M, D) candidate texts' embeddings (normalised or not).
        texts: the M texts.
        n_texts: how many to choose (at most M).
        rank: principal components of the outputs the texts are projected onto (None: all).

    Returns:
        one row per pick: rank (0 = first), text, variance_explained (share of the head's
        centred variance removed by this pick, in [0, 1]), cumulative.

    Raises:
        ValueError: shapes disagree or no texts.
    """
    x = np.asarray(outputs, dtype=np.float64)
    t = np.asarray(text_embeddings, dtype=np.float64)
    if x.ndim != 2 or t.ndim != 2 or x.shape[1] != t.shape[1]:
        raise ValueError(f"outputs (N, D) and text embeddings (M, D) must share D; got {x.shape} and {t.shape}")
    if len(texts) != t.shape[0] or t.shape[0] == 0:
        raise ValueError(f"need one text per embedding and at least one; got {len(texts)} texts, {t.shape[0]} rows")
    x = x - x.mean(0)
    t = t - t.mean(0)
    _, _, vh = np.linalg.svd(x, full_matrices=False)
    basis = vh[: rank or vh.shape[0]]
    t = (t @ basis.T) @ basis
    total = float((x ** 2).sum())
    left = total
    rows = []
    used: set[int] = set()
    for i in range(min(n_texts, t.shape[0])):
        spread = (x @ t.T).std(0)
        spread[list(used)] = -np.inf
        j = int(np.argmax(spread))
        d = t[j]
        norm = float(d @ d)
        if norm <= 1e-24:
            break
        x = x - np.outer(x @ d / norm, d)
        t = t - np.outer(t @ d / norm, d)
        now = float((x ** 2).sum())
        rows.append({"rank": i, "text": texts[j], "variance_explained": (left - now) / total if total > 0 else 0.0,
                     "cumulative": (total - now) / total if total > 0 else 0.0})
        left = now
        used.add(j)
    return pd.DataFrame(rows, columns=["rank", "text", "variance_explained", "cumulative"])


def default_concepts(classes: Sequence[str]) -> list[str]:
    """A small concept set for the toy world: objects, colours, written words, people, scenes.

    Real models should get ``--concepts FILE`` (the paper uses ~3,500 general image descriptions).
    """
    from clipaudit.toy.world import AGE_VALUES, COLOURS, HAIR_VALUES, ROLES_WITH_PROPS

    out = [f"a photo of a {c}." for c in classes]
    out += [f"something {c}." for c in COLOURS]
    out += [f"a sign that says {c}." for c in classes] + ["the word written on a note.", "written text.",
                                                        "a label with letters.", "a yellow sticky note."]
    out += [f"a {a}." for a in AGE_VALUES] + [f"a person with {h} hair." for h in HAIR_VALUES]
    out += [f"a photo of a {r}." for r in ROLES_WITH_PROPS]
    out += ["a striped background.", "a plain background.", "a noisy background.", "a small object.",
            "a large object.", "an object in the corner.", "an object in the centre."]
    return list(dict.fromkeys(out))


WORD_MARKERS = ("sign", "word", "written", "letters", "note", "label")


def is_word_text(text: str) -> bool:
    """Whether a concept text is about written words (for scoring reading heads)."""
    return any(m in text.lower() for m in WORD_MARKERS)


def is_colour_text(text: str) -> bool:
    from clipaudit.toy.world import COLOURS

    return text.lower().startswith("something ") and text.lower().split()[1].rstrip(".") in COLOURS


__all__ = ["default_concepts", "is_colour_text", "is_word_text", "text_span"]
