"""Exact residual decomposition (Gandelsman et al. 2024) on unmodified open_clip towers."""
from __future__ import annotations

import copy
import dataclasses
import types

import pytest
import torch

from clipaudit.data import toy_source
from clipaudit.errors import ClipauditError
from clipaudit.hooks import run_with_cache
from clipaudit.probes.decompose import attention_layers, decompose, head_values, n_heads, project


def _pixels(model, n=64, seed=5):
    return next(toy_source(n, seed=seed).batches(model, n)).pixels


def _rel(model, d, px):
    emb = model.encode_images(px, normalize=False).double()  # the model's own forward, independent
    return float(((d.total() - emb).norm(dim=-1) / emb.norm(dim=-1)).max())


@pytest.mark.parametrize("which", ["toy_vit", "tiny_vit", "toy_rn", "tiny_rn"])
def test_parts_sum_to_the_models_embedding_over_64_images(which, request):
    model = request.getfixturevalue(which)
    px = _pixels(model)
    d = decompose(model, px)
    assert _rel(model, d, px) <= 1e-4
    assert d.max_rel_error <= 1e-4
    # the per-token split (a few images: it is B*L*H*T*D numbers) sums to the per-head parts
    dt = decompose(model, px[:4], tokens=True)
    assert torch.allclose(dt.tokens.sum(3) + dt.head_extra, dt.heads, atol=1e-9)
    assert torch.allclose(dt.heads, d.heads[:4], atol=1e-9)
    names, comps = d.components()
    assert len(names) == comps.shape[1] and torch.allclose(comps.sum(1), d.total(), atol=1e-9)
    layers, heads = n_heads(model)
    assert d.heads.shape[1:3] == (layers, heads)
    # attention rows are distributions over tokens
    assert torch.allclose(d.attention.sum(-1), torch.ones_like(d.attention.sum(-1)), atol=1e-9)


def test_heads_are_not_a_free_remainder(toy_vit):
    """Dropping any one head's part breaks the sum: the heads carry real, distinct signal."""
    px = _pixels(toy_vit, 16)
    d = decompose(toy_vit, px)
    emb = d.embedding.double()
    for l in range(d.n_layers):
        for h in range(d.n_heads):
            rest = d.total() - d.heads[:, l, h]
            assert float(((rest - emb).norm(dim=-1) / emb.norm(dim=-1)).mean()) > 1e-3


def test_recomputed_heads_match_the_blocks_own_attention_output(tiny_vit):
    """Per-head outputs re-derived from ln_1 and the module's weights, summed over heads with the
    output bias, equal the attention output the block itself computed (captured at ls_1)."""
    px = _pixels(tiny_vit, 8)
    blk = tiny_vit.model.visual.transformer.resblocks[1]
    _, cache = run_with_cache(tiny_vit, px, ["visual.transformer.resblocks.1.ln_1",
                                             "visual.transformer.resblocks.1.ls_1"])
    x = cache["visual.transformer.resblocks.1.ln_1"].double()
    w, v = head_values(blk.attn, x)
    b, h, t, dh = v.shape
    z = (w @ v).transpose(1, 2).reshape(b, t, h * dh)
    out = z @ blk.attn.out_proj.weight.double().T + blk.attn.out_proj.bias.double()
    assert torch.allclose(out, cache["visual.transformer.resblocks.1.ls_1"].double(), atol=1e-5)


def test_sequence_first_layout_is_read_from_its_declared_layout(tiny_vit):
    """A transformer run sequence-first (open_clip's older LND layout) decomposes just as exactly."""
    lnd = dataclasses.replace(tiny_vit, model=copy.deepcopy(tiny_vit.model), _layer_table=None)
    lnd.model.visual.transformer.batch_first = False
    for blk in lnd.model.visual.transformer.resblocks:
        blk.attn.batch_first = False
    px = _pixels(tiny_vit, 8)
    _, cache = run_with_cache(lnd, px, "visual.transformer.resblocks.0.ln_1")
    assert cache.layout("visual.transformer.resblocks.0.ln_1") == "lnd"
    d = decompose(lnd, px)
    assert _rel(lnd, d, px) <= 1e-4
    ref = decompose(tiny_vit, px)
    assert torch.allclose(d.heads, ref.heads, atol=1e-6)


def test_logit_attribution_sums_to_the_zero_shot_logits(toy_vit):
    px = _pixels(toy_vit, 16)
    head = toy_vit.classifier(["apple", "pizza", "ipod", "car"])
    d = decompose(toy_vit, px)
    _, comps = d.components()
    per = project(comps, d, head.weights, toy_vit.logit_scale)  # (B, K, C)
    logits = head(px).double()
    assert torch.allclose(per.sum(1), logits, atol=1e-3)


def test_a_tower_without_attention_is_refused_naming_its_layers():
    visual = torch.nn.Sequential()
    visual.add_module("stem", torch.nn.Conv2d(3, 4, 3))
    visual.add_module("pool", torch.nn.AdaptiveAvgPool2d(1))
    fake = types.SimpleNamespace(name="convnet", model=types.SimpleNamespace(visual=visual))
    with pytest.raises(ClipauditError, match=r"convnet.*no attention heads.*stem, pool"):
        attention_layers(fake)
