"""Integrated gradients through one neuron: complete, and local to what drives the neuron."""
from __future__ import annotations

import torch

from clipaudit.hooks import resolve_layer
from clipaudit.probes.attribution import attribute, neuron_forward, overlay


def test_attributions_sum_to_activation_change(tiny_model):
    layer = resolve_layer(tiny_model, "penultimate")
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    f = neuron_forward(tiny_model, layer, 4)
    with torch.no_grad():
        gap = f(x) - f(torch.full_like(x, 0.5))
    attr = attribute(tiny_model, layer, 4, x, steps=48)
    assert attr.shape == x.shape
    total = attr.flatten(1).sum(1)
    assert torch.allclose(total, gap, atol=0.1 * gap.abs().max().item() + 1e-4)


def test_unchanged_pixels_get_no_attribution(tiny_rn):
    """Pixels equal to the baseline lie on no path, so their attribution is exactly zero."""
    x = torch.full((1, 3, 64, 64), 0.5)
    x[:, :, 20:40, 20:40] = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    layer = resolve_layer(tiny_rn, "penultimate")
    attr = attribute(tiny_rn, layer, 0, x, steps=8)
    outside = attr.clone()
    outside[:, :, 20:40, 20:40] = 0
    assert outside.abs().max() == 0
    imgs = overlay(x, attr)
    assert imgs[0].size == (64, 64)
