"""Feature visualisation raises the chosen *channel* on every layout, in one batch."""
from __future__ import annotations

import pytest
import torch

from clipaudit.errors import ClipauditError
from clipaudit.hooks import resolve_layer
from clipaudit.probes.featvis import FeatVisConfig, batch_neurons_objective, neuron_objective, render

FAST = dict(steps=12, lr=0.05, transforms=False)


def test_objective_reads_channels_not_tokens(tiny_vit):
    layer = resolve_layer(tiny_vit, "penultimate")
    assert layer.layout == "nld"
    b, t, c = 2, layer.shape[1], layer.n_neurons
    act = torch.zeros(b, t, c)
    act[:, :, 7] = 3.0  # channel 7 fires at every token
    act[:, 7, :] = -1.0  # token 7 is a decoy: indexing dim 1 would read it
    act[:, 7, 7] = 3.0
    assert neuron_objective(layer, 7)(act).item() == pytest.approx(-3.0)
    assert batch_neurons_objective(layer, [7, 8])(act).item() == pytest.approx(-3.0 + 1.0 / t)


def test_render_raises_channel_activation_on_token_layout(tiny_vit):
    layer = resolve_layer(tiny_vit, "penultimate")
    n = 11
    _, before = render(tiny_vit, layer, [n], FeatVisConfig(steps=1, lr=1e-9, transforms=False), seed=1)
    imgs, after = render(tiny_vit, layer, [n], FeatVisConfig(**FAST), seed=1)
    assert imgs.shape == (1, 3, 64, 64) and 0 <= imgs.min() and imgs.max() <= 1
    assert after[0] > before[0] + 0.05


def test_batch_render_gives_each_image_its_own_neuron(tiny_model):
    """K neurons in one batch: image i raises neuron i more than the other images do."""
    layer = resolve_layer(tiny_model, "penultimate")
    ids = [3, 17, 250]
    imgs, acts = render(tiny_model, layer, ids, FeatVisConfig(**FAST), seed=0)
    assert imgs.shape[0] == 3
    from clipaudit.hooks import capture, neurons

    with torch.no_grad(), capture(tiny_model, layer) as a:
        tiny_model.encode_images(imgs)
        full = neurons(a[layer.path], layer.layout)[:, ids]  # (image, neuron)
    assert torch.allclose(full.diagonal(), acts, atol=1e-5)
    wins = sum(int(full[i, i] >= full[:, i].max()) for i in range(3))
    assert wins >= 2


def test_transforms_and_diversity_run_several_images_per_neuron(tiny_rn):
    imgs, acts = render(tiny_rn, "penultimate", [5, 9], FeatVisConfig(steps=3, per_neuron=2, diversity=1.0), seed=0)
    assert imgs.shape == (4, 3, 64, 64) and acts.shape == (4,)
    assert not torch.allclose(imgs[0], imgs[1])


def test_steps_zero_and_bad_neuron_are_clear_errors(tiny_rn):
    with pytest.raises(ClipauditError, match="--steps must be >= 1"):
        render(tiny_rn, "penultimate", [1], FeatVisConfig(steps=0))
    with pytest.raises(ClipauditError, match="out of range"):
        render(tiny_rn, "penultimate", [100000], FeatVisConfig(steps=1))


def test_render_is_seeded_and_leaves_global_rng_alone(tiny_rn):
    torch.manual_seed(123)
    a, _ = render(tiny_rn, "penultimate", [2], FeatVisConfig(steps=2), seed=4)
    after = torch.rand(1)
    torch.manual_seed(123)
    b, _ = render(tiny_rn, "penultimate", [2], FeatVisConfig(steps=2), seed=4)
    assert torch.equal(a, b) and torch.equal(after, torch.rand(1))


def test_render_stops_the_forward_at_the_layer_and_matches_a_full_pass(tiny_model, monkeypatch):
    """Each step stops after the rendered layer; the images equal full-pass renders bit for bit."""
    import clipaudit.probes.featvis as fv
    from clipaudit.hooks import _module_at, list_layers, run_with_cache

    list_layers(tiny_model)
    last = "visual.attnpool" if tiny_model.arch == "resnet" else "visual.ln_post"
    count = [0]
    handle = _module_at(tiny_model.model, last).register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    cfg = FeatVisConfig(steps=3, transforms=False)
    try:
        early, early_act = render(tiny_model, "block:1", [2, 5], cfg, seed=3)
    finally:
        handle.remove()
    assert count[0] == 0
    monkeypatch.setattr(fv, "run_with_cache",
                        lambda m, px, layers, stop_at=None, detach=True: run_with_cache(m, px, layers, None, detach))
    full, full_act = render(tiny_model, "block:1", [2, 5], cfg, seed=3)
    assert torch.equal(early, full) and torch.equal(early_act, full_act)
