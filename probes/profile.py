"""A unit's whole activation range, and the words that excite it: what the top-k scan omits.

Why a sample and not the stream: the scan keeps only each neuron's top k images, so examples
across the range and a histogram need activations of *every* neuron on *the same* images. They
are read from a fixed sample (the source's first ``n`` loadable images, in source order, so same
source, same sample) with one more forward pass; this costs ``n / len(source)`` of the scan.

Examples per quantile: for each quantile q the sample image whose activation is closest to the
neuron's q-quantile over the sample (``numpy.quantile``, linear interpolation), as Neuronpedia
and OpenAI Microscope show a range rather than only the top. Histogram: ``numpy.histogram`` over
the sample with ``bins`` equal-width bins per neuron.

Text feature visualisation (Goh et al. 2021, "Multimodal neurons"): each word is written on
plain flat-coloured backgrounds (:func:`clipaudit.probes.multimodal.render_words`, no picture)
``n_renders`` times; a neuron's words are those with the highest mean activation.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from clipaudit.errors import ClipauditError
from clipaudit.hooks import Layer

QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def sample_activations(model, layer: Layer, batches: Iterable, n: int, tokens: str = "mean",
                       batch_size: int = 64) -> tuple[np.ndarray, list[str]]:
    """Activations (n', N) of every neuron of ``layer`` on the first ``n`` images of ``batches``
    (an iterator of :class:`clipaudit.zeroshot` batches with ``pixels`` and ``ids``), and their ids."""
    from clipaudit.probes.multimodal import responses

    acts, ids = [], []
    for batch in batches:
        take = n - len(ids)
        if take <= 0:
            break
        acts.append(responses(model, layer, batch.pixels[:take], tokens, batch_size).numpy())
        ids += [str(i) for i in batch.ids[:take]]
    if not ids:
        raise ClipauditError("no image could be loaded for the activation profile")
    return np.concatenate(acts), ids


def quantile_examples(acts: np.ndarray, ids: Sequence[str], quantiles: Sequence[float] = QUANTILES) -> pd.DataFrame:
    """One row per neuron and quantile: neuron, quantile, value (the quantile), id, activation (of
    the sample image closest to it; ties to the earlier image).

    Args:
        acts: (n, N) activations; ids: the n image ids.
    """
    q = np.quantile(acts, np.asarray(quantiles, dtype=float), axis=0)  # (Q, N)
    pick = np.abs(acts[None, :, :] - q[:, None, :]).argmin(1)  # (Q, N): first image at min distance
    n_neurons = acts.shape[1]
    rows = {"neuron": np.tile(np.arange(n_neurons), len(quantiles)),
            "quantile": np.repeat(np.asarray(quantiles, dtype=float), n_neurons),
            "value": q.reshape(-1),
            "id": [ids[i] for i in pick.reshape(-1)],
            "activation": acts[pick.reshape(-1), np.tile(np.arange(n_neurons), len(quantiles))]}
    return pd.DataFrame(rows).sort_values(["neuron", "quantile"], kind="stable").reset_index(drop=True)


def histograms(acts: np.ndarray, bins: int = 20) -> pd.DataFrame:
    """One row per neuron and bin: neuron, bin_low, bin_high, count (``numpy.histogram``)."""
    if bins < 1:
        raise ClipauditError(f"--profile-bins must be >= 1, got {bins}")
    frames = []
    for j in range(acts.shape[1]):
        counts, edges = np.histogram(acts[:, j], bins=bins)
        frames.append(pd.DataFrame({"neuron": j, "bin_low": edges[:-1], "bin_high": edges[1:], "count": counts}))
    return pd.concat(frames, ignore_index=True)


def text_features(model, layer: Layer, words: Sequence[str], n_renders: int = 2, top: int = 5, seed: int = 0,
                  tokens: str = "mean", batch_size: int = 64,
                  progress: Callable | None = None) -> pd.DataFrame:
    """The ``top`` words whose renders excite each neuron most: neuron, rank, word, activation
    (mean over ``n_renders`` renders)."""
    from clipaudit.probes.multimodal import _to_pixels, render_words, responses

    words = list(dict.fromkeys(w for w in words if str(w).strip()))
    if not words:
        raise ClipauditError("text feature visualisation needs at least one word")
    pixels = _to_pixels(model, render_words(words, n_renders, seed=seed, size=model.image_size))
    acts = responses(model, layer, pixels, tokens, batch_size).view(len(words), n_renders, -1).mean(1)  # (W, N)
    k = min(top, len(words))
    vals, idx = acts.t().topk(k, dim=1)  # (N, k)
    n = acts.shape[1]
    return pd.DataFrame({"neuron": np.repeat(np.arange(n), k), "rank": np.tile(np.arange(1, k + 1), n),
                         "word": [words[i] for i in idx.reshape(-1).tolist()],
                         "activation": vals.reshape(-1).numpy()})


__all__ = ["QUANTILES", "histograms", "quantile_examples", "sample_activations", "text_features"]
