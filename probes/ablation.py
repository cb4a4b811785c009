"""Causal check: silence a concept's multimodal neurons and see what the model loses.

Why: a label and a multimodality score are correlational. If the neurons really carry the
concept, zeroing (or mean-ablating) them through :func:`clipaudit.hooks.ablate` should lower
zero-shot accuracy on pictures of *that* concept more than on the others, and should weaken a
typographic attack that writes the concept's word on other objects.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image

from clipaudit.errors import ClipauditError
from clipaudit.hooks import Layer, ablate
from clipaudit.probes.multimodal import PictureFn, _to_pixels

ABLATIONS = ("zero", "mean")


def write_word_on(images: list, word: str, seed: int) -> list[Image.Image]:
    """Copies of ``images`` with ``word`` written on each (the toy world's note/paint style)."""
    from clipaudit.toy.world import World, WorldConfig

    out = []
    for i, im in enumerate(images):
        img = Image.fromarray(im) if isinstance(im, np.ndarray) else im.copy().convert("RGB")
        world = World(WorldConfig(image_size=min(img.size)), seed=seed)
        world.write_word(img, word, np.random.default_rng((seed, 31337, i)))
        out.append(img)
    return out


@torch.no_grad()
def _probs(head, pixels: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    out = [head.probabilities(head(pixels[i:i + batch_size])).cpu() for i in range(0, len(pixels), batch_size)]
    return torch.cat(out)


def _predict(head, pixels: torch.Tensor) -> torch.Tensor:
    return _probs(head, pixels).argmax(1)


def ablation_check(model, layer: Layer, groups: dict[str, Sequence[int]], classes: Sequence[str],
                   pictures: PictureFn, n_eval: int = 24, mode: str = "zero",
                   means: torch.Tensor | None = None, seed: int = 0) -> pd.DataFrame:
    """Ablate each concept's neurons and measure accuracy and typographic attack success.

    Args:
        groups: concept -> neuron ids to ablate together.
        classes: the zero-shot class list (each concept must be one of them).
        pictures: (concept, n, seed) -> images of that concept with nothing written on them.
        n_eval: pictures per class.
        mode: ``zero`` or ``mean`` (needs ``means``, (N,) per-neuron means from the scan).

    Returns:
        rows: concept, neurons, measure (accuracy | true_prob | typographic_success), before, after,
        delta, other_delta (mean delta of the other classes; NaN for typographic). ``true_prob``
        is the mean zero-shot probability of the true class: it still moves when accuracy is
        saturated at 1.
    """
    if mode not in ABLATIONS:
        raise ClipauditError(f"unknown ablation {mode!r}; valid: {', '.join(ABLATIONS)}")
    if mode == "mean" and means is None:
        raise ValueError("mean ablation needs the per-neuron means of the scan")
    classes = list(classes)
    head = model.classifier(classes)
    eval_seed = seed + 50_021  # held out from the probes and the multimodality pictures
    pics = {c: pictures(c, n_eval, eval_seed) for c in classes}
    pix = {c: _to_pixels(model, p) for c, p in pics.items() if p}
    labels = {c: classes.index(c) for c in pix}

    def measures() -> tuple[dict[str, float], dict[str, float]]:
        probs = {c: _probs(head, p) for c, p in pix.items()}
        return ({c: float((pr.argmax(1) == labels[c]).float().mean()) for c, pr in probs.items()},
                {c: float(pr[:, labels[c]].mean()) for c, pr in probs.items()})

    base_acc, base_prob = measures()
    rows = []
    for concept, ids in groups.items():
        if concept not in classes or not ids:
            continue
        others = [c for c in pix if c != concept]
        attacked = [im for c in others for im in write_word_on(pics[c][: max(1, n_eval // 4)], concept, eval_seed)]
        atk_pix = _to_pixels(model, attacked)
        target = classes.index(concept)
        before_atk = float((_predict(head, atk_pix) == target).float().mean()) if attacked else float("nan")
        value = means[list(ids)].float() if mode == "mean" else 0.0
        with ablate(model, layer, list(ids), value):
            acc, prob = measures()
            after_atk = float((_predict(head, atk_pix) == target).float().mean()) if attacked else float("nan")
        nid = ";".join(str(i) for i in ids)
        for measure, before, after in (("accuracy", base_acc, acc), ("true_prob", base_prob, prob)):
            if concept in pix:
                other = float(np.mean([after[c] - before[c] for c in others])) if others else float("nan")
                rows.append({"concept": concept, "neurons": nid, "measure": measure, "before": before[concept],
                             "after": after[concept], "delta": after[concept] - before[concept],
                             "other_delta": other})
        rows.append({"concept": concept, "neurons": nid, "measure": "typographic_success", "before": before_atk,
                     "after": after_atk, "delta": after_atk - before_atk, "other_delta": float("nan")})
    return pd.DataFrame(rows, columns=["concept", "neurons", "measure", "before", "after", "delta", "other_delta"])
