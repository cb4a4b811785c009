"""Feature visualisation: optimise an image so that one neuron fires (Olah et al.; Goh et al.).

Why our own loop around lucent's parameterisation: lucent's ``render_vis`` attaches global
hooks it never removes, applies ImageNet normalisation, and its ``channel`` objective indexes
dim 1, which on a ViT's (B, T, C) activations is the *token* axis. Here the image comes from
lucent's Fourier + decorrelated-colour parameterisation, the model gets pixels in [0, 1]
through :meth:`AuditModel.encode_images` (CLIP's own normalisation inside), activations come
from :func:`clipaudit.hooks.run_with_cache`, and objectives reduce with
:func:`clipaudit.hooks.neurons`, so a neuron is always a channel. K neurons render in one batch,
one image (or several) each. Each step stops the forward right after the rendered layer
(``stop_at``): the layers above it cannot change the objective, so they are never run.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from clipaudit.errors import ClipauditError
from clipaudit.hooks import Layer, neurons, resolve_layer, run_with_cache


class Objective:
    """A loss on a layer activation (lower is better); objectives add and scale like lucent's.

    Args:
        fn: maps the raw activation to a scalar loss.
        name: for display.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], name: str = "") -> None:
        self.fn = fn
        self.name = name

    def __call__(self, act: torch.Tensor) -> torch.Tensor:
        return self.fn(act)

    def __add__(self, other: "Objective") -> "Objective":
        return Objective(lambda a: self(a) + other(a), f"{self.name} + {other.name}")

    def __mul__(self, w: float) -> "Objective":
        return Objective(lambda a: w * self(a), f"{w} * {self.name}")

    __rmul__ = __mul__

    def __neg__(self) -> "Objective":
        return self * -1.0


def neuron_objective(layer: Layer, neuron: int, batch_index: int | None = None, tokens: str = "mean") -> Objective:
    """Maximise ``neuron`` (a channel) of ``layer``: loss = -its reduced activation, over the
    whole batch or one batch item. Works on every layout because it goes through ``neurons``."""
    layer.check_neurons([neuron])

    def fn(act: torch.Tensor) -> torch.Tensor:
        vals = neurons(act, layer.layout, tokens)[:, neuron]
        return -(vals.mean() if batch_index is None else vals[batch_index])
    return Objective(fn, f"{layer.path}:{neuron}")


def batch_neurons_objective(layer: Layer, neuron_ids: Sequence[int], per_neuron: int = 1,
                            tokens: str = "mean") -> Objective:
    """Image ``i`` maximises ``neuron_ids[i // per_neuron]``: one objective for a whole batch."""
    ids = torch.tensor(layer.check_neurons(neuron_ids), dtype=torch.long).repeat_interleave(per_neuron)

    def fn(act: torch.Tensor) -> torch.Tensor:
        vals = neurons(act, layer.layout, tokens)  # (B, N)
        return -vals.gather(1, ids.to(vals.device)[:, None]).sum()
    return Objective(fn, f"{layer.path}:{list(neuron_ids)}")


def diversity_objective(layer: Layer, per_neuron: int) -> Objective:
    """Penalise similar images of the same neuron: mean pairwise cosine similarity of their
    flattened activations within each group of ``per_neuron`` consecutive images."""

    def fn(act: torch.Tensor) -> torch.Tensor:
        flat = F.normalize(act.movedim(0 if layer.layout != "lnd" else 1, 0).flatten(1), dim=1)
        groups = flat.view(-1, per_neuron, flat.shape[1])
        sim = groups @ groups.transpose(1, 2)
        off = sim.sum((1, 2)) - sim.diagonal(dim1=1, dim2=2).sum(1)
        return off.sum() / max(per_neuron * (per_neuron - 1), 1)
    return Objective(fn, "diversity")


@dataclass(frozen=True)
class FeatVisConfig:
    """Attributes:
        steps: optimiser steps (Goh et al.: 512).
        lr: Adam learning rate.
        per_neuron: images per neuron (> 1 adds the diversity term).
        diversity: weight of the diversity term.
        tokens: token reduction for token layouts.
        transforms: apply pad/jitter/scale/rotate robustness transforms.
        decorrelate, fft: lucent's colour decorrelation and Fourier parameterisation.
    """

    steps: int = 512
    lr: float = 0.05
    per_neuron: int = 1
    diversity: float = 0.0
    tokens: str = "mean"
    transforms: bool = True
    decorrelate: bool = True
    fft: bool = True


def _transforms(size: int) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """Lucent's standard transforms, scaled from 224 px to ``size``."""
    with warnings.catch_warnings():  # lucent imports kornia, which calls the deprecated torch.jit.script
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
        from lucent.optvis import transform as T

    f = size / 224
    pad, j1, j2 = max(2, round(12 * f)), max(2, round(8 * f)), max(2, round(4 * f))
    return [T.pad(pad, mode="constant", constant_value=0.5), T.jitter(j1),
            T.random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
            T.random_rotate(list(range(-10, 11)) + 5 * [0]), T.jitter(j2)]


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed torch and numpy (lucent draws from both) without leaking into the caller's state."""
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            np.random.set_state(state)


def render(model, layer: Layer | str, neuron_ids: Sequence[int], config: FeatVisConfig = FeatVisConfig(),
           seed: int = 0, objective: Objective | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ``neuron_ids`` in one batch.

    Args:
        model: an :class:`~clipaudit.model.AuditModel`.
        layer: Layer, alias or path.
        neuron_ids: K neurons.
        config: :class:`FeatVisConfig`.
        seed: initialisation and transform randomness.
        objective: replaces the default per-image neuron objective.

    Returns:
        (images (K * per_neuron, 3, S, S) in [0, 1] on CPU, final activation of each image's
        neuron (K * per_neuron,) on the untransformed image).

    Raises:
        ClipauditError: ``steps`` < 1 or no neurons.

    Example:
        >>> imgs, acts = render(m, "penultimate", [3, 17], FeatVisConfig(steps=64))
    """
    from lucent.optvis import param

    if config.steps < 1:
        raise ClipauditError(f"--steps must be >= 1 (feature-visualisation optimiser steps), got {config.steps}")
    if not neuron_ids:
        raise ClipauditError("feature visualisation needs at least one neuron")
    lay = layer if isinstance(layer, Layer) else resolve_layer(model, layer)
    per = max(1, config.per_neuron)
    batch = len(neuron_ids) * per
    size = model.image_size
    obj = objective or batch_neurons_objective(lay, neuron_ids, per, config.tokens)
    if objective is None and per > 1 and config.diversity > 0:
        obj = obj + config.diversity * diversity_objective(lay, per)
    transforms = _transforms(size) if config.transforms else []
    with _seeded(seed):
        params, image_f = param.image(size, batch=batch, decorrelate=config.decorrelate, fft=config.fft)
        opt = torch.optim.Adam(params, lr=config.lr)
        for _ in range(config.steps):
            opt.zero_grad(set_to_none=True)
            x = image_f()
            for t in transforms:
                x = t(x)
            if x.shape[-1] != size or x.shape[-2] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            _, cache = run_with_cache(model, x.clamp(0, 1).to(model.device, model.dtype), lay, stop_at=True,
                                      detach=False)
            loss = obj(cache[lay.path])
            loss.backward()
            opt.step()
        with torch.no_grad():
            final = image_f().clamp(0, 1).float().to(model.device)
            vals = _activations(model, lay, final, neuron_ids, per, config.tokens)
    return final.detach().cpu(), vals


@torch.no_grad()
def _activations(model, lay: Layer, pixels: torch.Tensor, neuron_ids: Sequence[int], per: int,
                 tokens: str) -> torch.Tensor:
    ids = torch.tensor(list(neuron_ids), dtype=torch.long).repeat_interleave(per)
    _, cache = run_with_cache(model, pixels.to(model.device, model.dtype), lay, stop_at=True)
    vals = cache.neurons(lay.path, tokens).float().cpu()
    return vals.gather(1, ids[:, None]).squeeze(1)
