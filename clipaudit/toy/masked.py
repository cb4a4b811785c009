"""``toy-masked``: toy-rn behind an input stage that hides its gradients (fake robustness).

Why ship a broken defence: an audit tool must show it catches one. Athalye, Carlini & Wagner
("Obfuscated Gradients Give a False Sense of Security", ICML 2018) found most defences of their
day robust only because gradients were shattered by a non-differentiable input transform; their
BPDA attack differentiates through the transform as if it were the identity and breaks them.

The stage rounds each pixel to one of ``levels`` values (8-bit by default) before the
normalisation the model expects. ``torch.round`` has a zero gradient everywhere, so every
gradient attack sees a flat loss and reports the model robust; the rounding moves a pixel by at
most half a level (0.5/255), so the model really is as fragile as toy-rn. With ``bpda`` set the
forward value is the same but the backward pass is the identity (a straight-through estimator).
"""
from __future__ import annotations

from typing import Sequence

import torch


class QuantizedInput:
    """A forward pre-hook for ``model.visual``: normalised input -> pixels -> rounded -> normalised.

    Args:
        mean, std: the model's normalisation (3 values each).
        levels: values per channel after rounding (256: 8-bit).

    Attributes:
        bpda: when True the rounding passes gradients straight through (BPDA, identity approximation).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], levels: int = 256) -> None:
        if int(levels) < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.levels = int(levels)
        self.bpda = False

    def describe(self) -> dict:
        """What a manifest records about the stage."""
        return {"kind": "quantize", "levels": self.levels, "differentiable": False,
                "source": "clipaudit.toy.masked.QuantizedInput"}

    def __call__(self, module: torch.nn.Module, args: tuple) -> tuple:
        x = args[0]
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        pixels = x * std + mean
        q = torch.round(pixels.clamp(0, 1) * (self.levels - 1)) / (self.levels - 1)
        if self.bpda:
            q = pixels + (q - pixels).detach()
        return ((q - mean) / std, *args[1:])


def attach(model) -> QuantizedInput:
    """Put a :class:`QuantizedInput` in front of ``model`` (an AuditModel)'s image tower."""
    stage = QuantizedInput(model.mean, model.std)
    model.model.visual.register_forward_pre_hook(stage)
    model.input_stage = stage
    return stage
