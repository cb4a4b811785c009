"""SoftWPMI against CLIP-Dissect's published formula (Oikarinen & Weng 2023) and hand-built
probability matrices that pin each of its parts: the soft AND over top images, rank weights
falling from rank 1 to rank k, and the prior averaged over neurons."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clipaudit.probes.labels import concept_probs, rank_weights, soft_wpmi


def _reference_soft_wpmi(sims: np.ndarray, acts: np.ndarray, k: int, a: float, lam: float) -> np.ndarray:
    """The published soft WPMI, written from the paper's definition and the authors' parameters
    (p_start 0.998, p_end 0.97, min_prob 1e-7), in float64 numpy.

    sims: (images, concepts) image-concept cosine similarities; acts: (images, neurons).
    Returns (neurons, concepts)."""
    z = a * sims
    z = z - z.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    top = np.argsort(-acts, axis=0, kind="stable")[:k]  # (k, neurons), best first
    w = 0.998 - np.arange(k) / k * (0.998 - 0.97)
    log_given = np.stack([np.log(1 + w[:, None] * (p[top[:, n]] - 1) + 1e-7).sum(0) for n in range(acts.shape[1])])
    m = log_given.max(0)
    log_prior = m + np.log(np.exp(log_given - m).mean(0))
    return log_given - lam * log_prior


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_matches_the_published_formula_on_the_same_inputs(lam):
    rng = np.random.default_rng(0)
    img = rng.normal(size=(60, 8))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    con = rng.normal(size=(15, 8))
    con /= np.linalg.norm(con, axis=1, keepdims=True)
    acts = rng.normal(size=(60, 6))
    ref = _reference_soft_wpmi(img @ con.T, acts, k=20, a=10.0, lam=lam)
    probs = concept_probs(torch.tensor(img), torch.tensor(con), temperature=10.0)
    positions = torch.tensor(np.argsort(-acts, axis=0, kind="stable")[:20].T.copy())
    ours = soft_wpmi(probs, positions, lam=lam).numpy()
    assert np.allclose(ours, ref, atol=1e-4)
    assert (ours.argmax(1) == ref.argmax(1)).all()


def test_rank_weights_fall_from_about_one_to_about_097():
    w = rank_weights(100).numpy()
    assert w[0] == pytest.approx(0.998) and w[-1] == pytest.approx(0.97, abs=1e-3)
    assert (np.diff(w) < 0).all()


def _scores(probs: np.ndarray, neurons: list[list[int]], lam: float) -> np.ndarray:
    return soft_wpmi(torch.tensor(probs, dtype=torch.float32), torch.tensor(neurons), lam=lam).numpy()


def _rows(*columns: list[float]) -> np.ndarray:
    """(images, concepts) from per-concept columns, plus an 'other' concept taking the rest."""
    p = np.array(columns, dtype=float).T
    return np.concatenate([p, np.clip(1 - p.sum(1, keepdims=True), 0, 1)], axis=1)


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_a_concept_on_all_top_images_beats_one_sure_on_a_single_image(lam):
    """4 top images: concept 0 at p=0.98 on image 1 only, concept 1 at 0.50 on all four. The soft
    AND prefers the concept that fits every image (a noisy-OR would pick concept 0)."""
    sure_once = [0.98, 0, 0, 0] + [0, 0, 0, 0]
    half_all = [0.5, 0.5, 0.5, 0.5] + [0, 0, 0, 0]
    probs = _rows(sure_once, half_all)
    scores = _scores(probs, [[0, 1, 2, 3], [4, 5, 6, 7]], lam)
    assert scores[0, 1] > scores[0, 0]


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_rank_one_outweighs_rank_k(lam):
    """Concept 0 fits the rank-1 image best, concept 1 the rank-4 image, otherwise the same: the
    top-ranked image counts more, so concept 0 wins (reversed rank weights would pick 1)."""
    first = [0.9, 0.5, 0.5, 0.5] + [0.1] * 4
    last = [0.5, 0.5, 0.5, 0.9] + [0.1] * 4
    probs = _rows(first, last) / 2 + 1e-3
    scores = _scores(probs, [[0, 1, 2, 3], [4, 5, 6, 7]], lam)
    assert scores[0, 0] > scores[0, 1]


@pytest.mark.parametrize("lam", [0.5, 1.0])
def test_a_generic_concept_loses_to_a_specific_one(lam):
    """Both concepts fit neuron 0's top images equally; the generic one also fits every other
    neuron's, so its prior is higher and it loses (a flipped prior sign would let it win)."""
    generic = [0.45] * 12
    specific = [0.45] * 4 + [0.01] * 8
    probs = _rows(generic, specific)
    scores = _scores(probs, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]], lam)
    assert scores[0, 1] > scores[0, 0]
    tie = _scores(probs, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]], 0.0)
    assert tie[0, 1] == pytest.approx(tie[0, 0])


def test_missing_images_are_left_out_and_empty_neurons_are_nan():
    probs = _rows([0.5] * 4, [0.2] * 4)
    probs[2] = np.nan
    scores = _scores(probs, [[0, 1, 2, -1], [-1, -1, -1, -1], [3, 0, 1, 2]], 0.0)
    assert np.isnan(scores[1]).all()
    w = 0.998 - np.arange(4) / 4 * (0.998 - 0.97)
    by_hand = np.log(1 + w[:2, None] * (probs[[0, 1]] - 1) + 1e-7).sum(0)  # ranks 3-4 have no image
    assert scores[0] == pytest.approx(by_hand, abs=1e-5)
