"""Multimodality: does a neuron answer to a concept both as a picture and as a written word?

Why both: Goh et al. (2021) called a neuron multimodal when it fires for photos, drawings and
the *word* of one concept. We measure it directly: each neuron's mean response to pictures of
each concept (no text in them) and to the concept's word rendered on plain backgrounds (no
picture), and ask whether its concept stands out from the other concepts in both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image

from clipaudit.errors import ClipauditError
from clipaudit.hooks import Layer, run_with_cache

PictureFn = Callable[[str, int, int], list]  # (concept, n, seed) -> PIL images or uint8 arrays


@dataclass(frozen=True)
class MultimodalConfig:
    """Attributes:
        n_pictures: pictures per concept.
        n_words: renders of each concept's word.
        min_z: both responses must exceed the other concepts' mean by this many of their stds.
        min_ratio: ...and be at least this multiple of that mean.
    """

    n_pictures: int = 16
    n_words: int = 16
    min_z: float = 3.0
    min_ratio: float = 2.0


def render_words(words: Sequence[str], n_per_word: int, seed: int = 0, size: int = 64) -> list[Image.Image]:
    """``n_per_word`` renders of each word on a plain, flat-coloured background (no picture),
    word-major order. Sizes, positions, ink and note/paint style vary with the seed."""
    from clipaudit.toy.world import World, WorldConfig

    world = World(WorldConfig(image_size=size), seed=seed)
    out = []
    for w_i, word in enumerate(words):
        for j in range(n_per_word):
            rng = np.random.default_rng((seed, 7919, w_i, j))
            colour = tuple(int(c) for c in rng.integers(60, 230, size=3))
            img = Image.new("RGB", (size, size), colour)
            world.write_word(img, word, rng)
            out.append(img)
    return out


def source_pictures(source, column: str = "label") -> PictureFn:
    """Pictures of a concept taken from a labelled source (class folders, CSV label column)."""

    def pick(concept: str, n: int, seed: int) -> list:
        rows = source.items[source.items.get(column, pd.Series(dtype=str)).astype(str) == concept]
        rows = rows.sample(n=min(n, len(rows)), random_state=seed) if len(rows) else rows
        imgs = []
        for _, r in rows.iterrows():
            try:
                imgs.append(source.loader(r))
            except Exception:  # broken files are listed by the scan already
                continue
        return imgs
    return pick


def _to_pixels(model, images: list) -> torch.Tensor:
    if images and isinstance(images[0], np.ndarray):
        images = [Image.fromarray(a) for a in images]
    return model.to_pixels(images)


@torch.no_grad()
def responses(model, layer: Layer, pixels: torch.Tensor, tokens: str = "mean", batch_size: int = 64) -> torch.Tensor:
    """(B, N) activations of every neuron of ``layer`` for ``pixels`` (on CPU)."""
    out = []
    for i in range(0, len(pixels), batch_size):  # stop_at: the layers above are not needed
        _, cache = run_with_cache(model, pixels[i:i + batch_size].to(model.device), layer, stop_at=True)
        out.append(cache.neurons(layer.path, tokens).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, layer.n_neurons)


def concept_responses(model, layer: Layer, concepts: Sequence[str], pictures: PictureFn,
                      config: MultimodalConfig = MultimodalConfig(), seed: int = 0,
                      tokens: str = "mean", batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Mean responses (N, C) to pictures and to rendered words of each concept.

    Concepts with no pictures are dropped; returns (image_resp, word_resp, kept concepts).
    """
    kept, pics = [], []
    for c in concepts:
        imgs = pictures(c, config.n_pictures, seed)
        if imgs:
            kept.append(c)
            pics.append(_to_pixels(model, imgs))
    if len(kept) < 2:
        raise ClipauditError(f"multimodality needs pictures of at least 2 concepts, found {len(kept)}; "
                             "use the toy source or a labelled folder/CSV (a 'label' column)")
    img_resp = _mean_per_concept(model, layer, pics, tokens, batch_size)
    words = _to_pixels(model, render_words(kept, config.n_words, seed=seed))
    w = responses(model, layer, words, tokens, batch_size)
    word_resp = w.view(len(kept), config.n_words, -1).mean(1).t()
    return img_resp, word_resp, kept


def drawing_responses(model, layer: Layer, concepts: Sequence[str], drawings: PictureFn,
                      config: MultimodalConfig = MultimodalConfig(), seed: int = 0, tokens: str = "mean",
                      batch_size: int = 64) -> torch.Tensor:
    """Mean responses (N, C) to drawings of each concept (the third facet; same order as ``concepts``).

    Raises:
        ClipauditError: a concept has no drawings.
    """
    sets = []
    for c in concepts:
        imgs = drawings(c, config.n_pictures, seed)
        if not imgs:
            raise ClipauditError(f"no drawings of {c!r}; the drawing facet needs every concept drawn")
        sets.append(_to_pixels(model, imgs))
    return _mean_per_concept(model, layer, sets, tokens, batch_size)


def _mean_per_concept(model, layer: Layer, pixel_sets: Sequence[torch.Tensor], tokens: str,
                      batch_size: int) -> torch.Tensor:
    """(N, C): each neuron's mean response over each concept's images (one pixel set per concept)."""
    return torch.stack([responses(model, layer, p, tokens, batch_size).mean(0) for p in pixel_sets], 1)


def _stand_out(resp: torch.Tensor, col: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z-score and ratio of resp[n, col[n]] against the other columns of row n."""
    n, c = resp.shape
    mine = resp.gather(1, col[:, None]).squeeze(1)
    mask = torch.ones_like(resp, dtype=torch.bool)
    mask[torch.arange(n), col] = False
    others = resp[mask].view(n, c - 1)
    mu, sd = others.mean(1), others.std(1) if c > 2 else torch.zeros(n)
    z = (mine - mu) / sd.clamp_min(1e-6)
    ratio = torch.where(mu > 0, mine / mu.clamp_min(1e-12), torch.full_like(mu, float("nan")))
    return z, ratio


def multimodality_table(image_resp: torch.Tensor, word_resp: torch.Tensor, concepts: list[str],
                        labels: Sequence[str] | None = None,
                        config: MultimodalConfig = MultimodalConfig(),
                        drawing_resp: torch.Tensor | None = None) -> pd.DataFrame:
    """One row per neuron: concept, image/word response, z-scores, ratios, score, flag.

    A neuron's concept is its label when the label is among ``concepts``, else the concept where
    both of its responses stand out most. ``multimodal_score`` = min(image_z, word_z).
    With ``drawing_resp`` (N, C) the drawing facet is added: ``drawing_response``, ``drawing_z``,
    ``drawing_ratio`` and ``is_multimodal_drawing`` (flagged on photos and words *and* the concept
    stands out on drawings by the same thresholds: the three rows of Goh et al.'s table).
    """
    n, c = image_resp.shape
    index = {k: i for i, k in enumerate(concepts)}
    z_img_all = (image_resp - image_resp.mean(1, keepdim=True)) / image_resp.std(1, keepdim=True).clamp_min(1e-6)
    z_word_all = (word_resp - word_resp.mean(1, keepdim=True)) / word_resp.std(1, keepdim=True).clamp_min(1e-6)
    best = torch.minimum(z_img_all, z_word_all).argmax(1)
    col = torch.tensor([index[labels[i]] if labels is not None and labels[i] in index else int(best[i])
                        for i in range(n)], dtype=torch.long)
    z_img, r_img = _stand_out(image_resp, col)
    z_word, r_word = _stand_out(word_resp, col)
    score = torch.minimum(z_img, z_word)
    flag = (z_img >= config.min_z) & (z_word >= config.min_z) & (r_img >= config.min_ratio) & (r_word >= config.min_ratio)
    extra = {}
    if drawing_resp is not None:
        z_draw, r_draw = _stand_out(drawing_resp, col)
        extra = {"drawing_response": drawing_resp.gather(1, col[:, None]).squeeze(1).numpy(),
                 "drawing_z": z_draw.numpy(), "drawing_ratio": r_draw.numpy(),
                 "is_multimodal_drawing": (flag & (z_draw >= config.min_z) & (r_draw >= config.min_ratio)).numpy()}
    return pd.DataFrame({
        "neuron": np.arange(n), "concept": [concepts[i] for i in col.tolist()],
        "image_response": image_resp.gather(1, col[:, None]).squeeze(1).numpy(),
        "word_response": word_resp.gather(1, col[:, None]).squeeze(1).numpy(),
        "image_z": z_img.numpy(), "word_z": z_word.numpy(),
        "image_ratio": r_img.numpy(), "word_ratio": r_word.numpy(),
        "multimodal_score": score.numpy(), "is_multimodal": flag.numpy(), **extra,
    })


def rank_multimodal(table: pd.DataFrame, top: int) -> list[int]:
    """The ``top`` neurons by multimodal score (flagged ones first)."""
    order = table.sort_values(["is_multimodal", "multimodal_score"], ascending=[False, False])
    return [int(n) for n in order["neuron"].head(top)]
