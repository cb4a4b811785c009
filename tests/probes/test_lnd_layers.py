"""Sequence-first (LND) layers. The installed open_clip runs its transformers batch-first, so
no shipped model yields (T, B, C) activations; older open_clip releases (before batch_first
existed) did, and open_clip still supports ``Transformer.batch_first = False``. We build that
twin of the tiny ViT (same weights, its blocks run sequence-first) and require ablation and the
feature-vis diversity objective to give on it exactly what they give on the batch-first model:
any slip that reads the token axis as the batch axis (or the reverse) breaks the equality."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from clipaudit.hooks import ablate, resolve_layer, run_with_cache
from clipaudit.probes.featvis import diversity_objective


def _sequence_first(model):
    """An AuditModel over a deep copy of ``model`` whose vision transformer runs (T, B, C)."""
    clip = copy.deepcopy(model.model)
    clip.visual.transformer.batch_first = False
    for block in clip.visual.transformer.resblocks:
        block.attn.batch_first = False
    return dataclasses.replace(model, model=clip, _hash=None, _layer_table=None)


@pytest.fixture(scope="module")
def twins(tiny_vit):
    lnd = _sequence_first(tiny_vit)
    pixels = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return tiny_vit, lnd, pixels


@pytest.mark.parametrize("alias", ["penultimate", "block:1"])
def test_the_twin_has_lnd_layers_and_the_same_outputs(twins, alias):
    nld, lnd, pixels = twins
    assert resolve_layer(nld, alias).layout == "nld" and resolve_layer(lnd, alias).layout == "lnd"
    with torch.no_grad():
        assert torch.allclose(nld.encode_images(pixels), lnd.encode_images(pixels), atol=1e-5)
        _, a = run_with_cache(nld, pixels, alias)
        _, b = run_with_cache(lnd, pixels, alias)
    assert torch.allclose(a.neurons(alias, "mean"), b.neurons(alias, "mean"), atol=1e-5)
    assert torch.allclose(a.neurons(alias, "cls"), b.neurons(alias, "cls"), atol=1e-5)


@pytest.mark.parametrize("alias", ["penultimate", "block:1"])
def test_ablation_on_an_lnd_layer_equals_ablation_on_the_nld_twin(twins, alias):
    nld, lnd, pixels = twins
    ids = [0, 3, 7]
    outs = {}
    with torch.no_grad():
        for name, m in (("nld", nld), ("lnd", lnd)):
            layer = resolve_layer(m, alias)
            means = torch.tensor([0.5, -0.25, 1.0])
            with ablate(m, layer, ids, means):
                emb = m.encode_images(pixels)
                _, cache = run_with_cache(m, pixels, layer)
            outs[name] = emb, cache.neurons(layer.path, "max"), cache.neurons(layer.path, "mean")
        clean = nld.encode_images(pixels)
    (e1, max1, mean1), (e2, max2, mean2) = outs["nld"], outs["lnd"]
    assert torch.allclose(e1, e2, atol=1e-5)  # same ablated model, whichever axis comes first
    assert not torch.allclose(e1, clean, atol=1e-4)  # and the ablation did something
    for n, v in zip(ids, [0.5, -0.25, 1.0]):  # every token of each ablated neuron holds its value
        assert torch.allclose(max2[:, n], torch.full((3,), v)) and torch.allclose(mean2[:, n], torch.full((3,), v))
    assert torch.allclose(max1, max2, atol=1e-5) and torch.allclose(mean1, mean2, atol=1e-5)


def test_the_diversity_objective_reads_lnd_images_as_images(twins):
    """Four images, two per neuron: the penalty (mean pairwise cosine within each pair) is the
    same for the (T, B, C) activation as for its (B, T, C) transpose, and equals the hand
    computation on per-image flattened activations."""
    nld, lnd, pixels = twins
    x = torch.cat([pixels, pixels[:1]])
    with torch.no_grad():
        _, a = run_with_cache(nld, x, "penultimate")
        _, b = run_with_cache(lnd, x, "penultimate")
    la, lb = resolve_layer(nld, "penultimate"), resolve_layer(lnd, "penultimate")
    act_nld, act_lnd = a[la.path], b[lb.path]
    assert act_lnd.shape == (act_nld.shape[1], 4, act_nld.shape[2])
    flat = torch.nn.functional.normalize(act_nld.flatten(1), dim=1)
    by_hand = (flat[0] @ flat[1] + flat[2] @ flat[3]) * 2 / 2  # two ordered pairs per group, / (2 * 1)
    got_nld = diversity_objective(la, 2).fn(act_nld)
    got_lnd = diversity_objective(lb, 2).fn(act_lnd)
    assert torch.allclose(got_nld, by_hand, atol=1e-5) and torch.allclose(got_lnd, by_hand, atol=1e-5)
