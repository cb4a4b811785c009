"""Pictures the audits share: an image beside its top-k class probability bars.

Why matplotlib with the Agg backend: figures are written as PNG files in run folders from any
process (no display); the dashboard draws its own interactive plotly charts from the tables.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _pyplot():
    """pyplot on the headless backend. Figures built with it must be handed to :func:`detach`."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def detach(fig):
    """Take ``fig`` out of pyplot's registry and return it.

    Why: audits return figures inside results that may never be saved; pyplot would keep every
    one alive (and warn past 20). A closed figure still saves and still displays in a notebook.
    """
    _pyplot().close(fig)
    return fig


def to_uint8_image(pixels) -> np.ndarray:
    """(3,H,W) tensor in [0,1] -> (H,W,3) uint8."""
    arr = pixels.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    return (arr * 255).round().astype(np.uint8)


def image_prob_grid(rows: Sequence[Sequence[tuple[str, np.ndarray, np.ndarray | None]]],
                    classnames: Sequence[str], k: int = 5, highlight: Sequence[str] = ()):
    """A grid: each row is a list of panels (title, image (H,W,3) uint8, probs (C,) or None).

    Each panel with probabilities gets its top-``k`` bars below the image; classes in
    ``highlight`` (the target, the true class) are coloured. Returns a matplotlib figure.
    """
    plt = _pyplot()
    n_rows = len(rows)
    n_cols = max(len(r) for r in rows) if rows else 1
    fig, axes = plt.subplots(2 * n_rows, n_cols, figsize=(2.6 * n_cols, 4.2 * n_rows),
                             gridspec_kw={"height_ratios": [3, 2] * n_rows}, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax_img, ax_bar = axes[2 * r, c], axes[2 * r + 1, c]
            ax_img.axis("off")
            if c >= len(row):
                ax_bar.axis("off")
                continue
            title, image, probs = row[c]
            ax_img.imshow(image, interpolation="nearest")
            ax_img.set_title(title, fontsize=8)
            if probs is None:
                ax_bar.axis("off")
                continue
            top = np.argsort(-probs)[:k][::-1]
            names = [classnames[i] for i in top]
            colours = ["#d62728" if n in highlight[:1] else "#2ca02c" if n in highlight[1:] else "#7f7f7f"
                       for n in names]
            ax_bar.barh(range(len(top)), probs[top], color=colours)
            ax_bar.set_yticks(range(len(top)), [f"{n} {probs[i]:.1%}" for n, i in zip(names, top)], fontsize=7)
            ax_bar.set_xlim(0, 1)
            ax_bar.tick_params(axis="x", labelsize=6)
    fig.tight_layout()
    return detach(fig)
