"""Frozen image features and zero-shot predictions from them: the one pass the limitations
measurements share.

Why one pass: zero-shot (any prompt set), linear probes, shifts, counting and digits all read
the same image embeddings, so images are encoded once and every measurement works on arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from clipaudit.data import ImageSource


@dataclass
class Features:
    """Image embeddings of a source, row-aligned with its decodable items.

    Attributes:
        x: (N, D) float32, L2-normalised image embeddings (CLIP's joint space).
        items: (N rows) the source's metadata for those images (skipped files removed).
    """

    x: np.ndarray
    items: pd.DataFrame

    def select(self, mask: np.ndarray | pd.Series) -> "Features":
        mask = np.asarray(mask, dtype=bool)
        return Features(self.x[mask], self.items[mask].reset_index(drop=True))

    def __len__(self) -> int:
        return len(self.x)


@torch.no_grad()
def extract_features(model, source: ImageSource, batch_size: int = 64,
                     progress: Callable | None = None) -> Features:
    """Encode every decodable image of ``source`` once.

    Args:
        model: an :class:`~clipaudit.model.AuditModel`.
        source: images (undecodable files end up in ``source.skipped``, not here).
        batch_size: images per forward pass.
        progress: optional ``progress(iterable, desc=...)`` wrapper.

    Returns:
        :class:`Features` with ``x`` of shape (N, D) on the CPU.
    """
    wrap = progress or (lambda it, total=None, desc="": it)
    xs, metas = [], []
    for batch in wrap(source.batches(model, batch_size), desc="features"):
        xs.append(model.encode_images(batch.pixels).float().cpu().numpy())
        metas.append(batch.meta)
    dim = int(model.model.text_projection.shape[1]) if hasattr(model.model, "text_projection") else 0
    x = np.concatenate(xs).astype(np.float32) if xs else np.zeros((0, dim), np.float32)
    items = pd.concat(metas, ignore_index=True) if metas else source.items.iloc[:0].copy()
    return Features(x, items)


def zero_shot_logits(model, x: np.ndarray, classnames: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """(N, C) zero-shot logits of embeddings ``x`` (N, D) over ``classnames`` with ``templates``
    (each class = the renormalised mean of its templates' text embeddings; CLIP paper 3.1.4)."""
    head = model.classifier(list(classnames), list(templates))
    with torch.no_grad():
        return head.logits_from_embeddings(torch.from_numpy(np.asarray(x, np.float32)).to(model.device)).cpu().numpy()


def zero_shot_correct(model, x: np.ndarray, labels: Sequence[str], classnames: Sequence[str],
                      templates: Sequence[str]) -> np.ndarray:
    """(N,) bool: the zero-shot prediction over ``classnames`` equals ``labels``."""
    pred = zero_shot_logits(model, x, classnames, templates).argmax(1)
    names = np.asarray(list(classnames), dtype=object)
    return names[pred] == np.asarray(list(labels), dtype=object)


__all__ = ["Features", "extract_features", "zero_shot_correct", "zero_shot_logits"]
