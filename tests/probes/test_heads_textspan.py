"""TextSpan (Gandelsman et al. 2024, Algorithm 1) against a from-the-paper re-derivation."""
from __future__ import annotations

import numpy as np
import pytest

from clipaudit.probes.textspan import is_colour_text, is_word_text, text_span


def _paper_textspan(c, r, m, rank):
    """Algorithm 1 written out independently: centre, project texts on the top-`rank` principal
    directions of C, then m rounds of 'pick max variance of C r_j, deflate C and R by r_j'."""
    c = c - c.mean(axis=0, keepdims=True)
    r = r - r.mean(axis=0, keepdims=True)
    cov_vals, cov_vecs = np.linalg.eigh(c.T @ c)  # principal directions from the covariance
    top = cov_vecs[:, np.argsort(cov_vals)[::-1][:rank]]
    r = r @ top @ top.T
    picks, shares = [], []
    total = np.sum(c * c)
    for _ in range(m):
        var = np.array([np.var(c @ r[j]) if j not in picks else -1.0 for j in range(len(r))])
        j = int(var.argmax())
        u = r[j] / np.linalg.norm(r[j])
        before = np.sum(c * c)
        c = c - np.outer(c @ u, u)
        r = r - np.outer(r @ u, u)
        picks.append(j)
        shares.append((before - np.sum(c * c)) / total)
    return picks, shares


@pytest.mark.parametrize("rank", [None, 6])
def test_picks_and_shares_match_the_algorithm_written_from_the_paper(rank):
    rng = np.random.default_rng(3)
    basis = rng.normal(size=(4, 16))
    outputs = rng.normal(size=(200, 4)) * np.array([5.0, 3.0, 1.5, 0.5]) @ basis + 0.05 * rng.normal(size=(200, 16))
    texts = rng.normal(size=(30, 16))
    texts[7] = basis[0] + 0.1 * rng.normal(size=16)  # a text along the main direction
    names = [f"t{i}" for i in range(30)]
    got = text_span(outputs, texts, names, n_texts=5, rank=rank)
    picks, shares = _paper_textspan(outputs, texts, 5, rank or 16)
    assert got["text"].tolist() == [names[j] for j in picks]
    assert np.allclose(got["variance_explained"], shares, atol=1e-9)
    assert got["text"].iloc[0] == "t7"
    assert got["cumulative"].is_monotonic_increasing and got["cumulative"].iloc[-1] <= 1 + 1e-12


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="share D"):
        text_span(np.zeros((5, 3)), np.zeros((2, 4)), ["a", "b"])


def test_word_and_colour_markers():
    assert is_word_text("a sign that says pizza.") and not is_word_text("a photo of a pizza.")
    assert is_colour_text("something red.") and not is_colour_text("something big.")
