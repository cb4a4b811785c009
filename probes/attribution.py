"""Which pixels of a top image make a neuron fire: integrated gradients through one neuron.

Why captum's ``IntegratedGradients`` on a neuron-valued forward: the forward function runs the
model on pixels in [0, 1] and returns the neuron's reduced activation read through
:func:`clipaudit.hooks.run_with_cache` and :func:`clipaudit.hooks.neurons`, so the neuron is a channel
on every layout and no hook outlives the call. Attributions are in pixel units.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from clipaudit.hooks import Layer, resolve_layer, run_with_cache


def neuron_forward(model, layer: Layer, neuron: int, tokens: str = "mean"):
    """f(pixels (B,3,S,S)) -> (B,) activation of ``neuron``; differentiable in the pixels."""
    layer.check_neurons([neuron])

    def f(pixels: torch.Tensor) -> torch.Tensor:
        _, cache = run_with_cache(model, pixels, layer, stop_at=True, detach=False)  # layers above: not needed
        return cache.neurons(layer.path, tokens)[:, neuron].float()
    return f


def attribute(model, layer: Layer | str, neuron: int, pixels: torch.Tensor, steps: int = 16,
              baseline: float = 0.5, tokens: str = "mean") -> torch.Tensor:
    """Integrated-gradients attribution (B, 3, S, S) of ``neuron`` for ``pixels`` in [0, 1].

    Args:
        baseline: the grey image the path starts from.
        steps: Riemann steps along the path.

    Completeness: the attributions of an image sum (approximately) to
    f(image) - f(baseline), which the tests check.
    """
    from captum.attr import IntegratedGradients

    lay = layer if isinstance(layer, Layer) else resolve_layer(model, layer)
    ig = IntegratedGradients(neuron_forward(model, lay, neuron, tokens))
    x = pixels.to(model.device).float()
    base = torch.full_like(x, baseline)
    attr = ig.attribute(x, baselines=base, n_steps=steps, internal_batch_size=max(1, len(x) * steps))
    return attr.detach().cpu()


def overlay(pixels: torch.Tensor, attributions: torch.Tensor, alpha: float = 0.6) -> list[Image.Image]:
    """Images with the positive attribution (summed over colour) as a red heat overlay."""
    out = []
    for img, a in zip(pixels.cpu(), attributions.cpu()):
        heat = a.sum(0).clamp_min(0)
        heat = heat / heat.max().clamp_min(1e-12)
        base = img.permute(1, 2, 0).numpy()
        red = np.zeros_like(base)
        red[..., 0] = 1.0
        w = (alpha * heat.numpy())[..., None]
        mixed = base * (1 - w) + red * w
        out.append(Image.fromarray((mixed.clip(0, 1) * 255).astype(np.uint8)))
    return out


def strip(images: Sequence[Image.Image], scale: int = 2) -> Image.Image:
    """Images side by side (each upscaled ``scale`` times) as one PNG-ready image."""
    if not images:
        return Image.new("RGB", (1, 1))
    w, h = images[0].size
    out = Image.new("RGB", (w * scale * len(images), h * scale), "white")
    for i, im in enumerate(images):
        out.paste(im.resize((w * scale, h * scale), Image.NEAREST), (i * w * scale, 0))
    return out
