"""Head ablation through clipaudit.hooks.patch, checked against weight surgery on a copy."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from clipaudit.errors import ClipauditError
from clipaudit.probes.head_ablation import HeadMask, ablate_heads, check_heads, head_means, read_mask, write_mask


def _copy(model):
    return dataclasses.replace(model, model=copy.deepcopy(model.model), _layer_table=None)


@pytest.fixture(scope="module")
def px():
    return torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_zero_ablation_equals_removing_the_heads_output_projection_columns(toy_vit, px):
    mask = HeadMask([(1, 2), (3, 0), (3, 3)], "zero")
    with ablate_heads(toy_vit, mask):
        got = toy_vit.encode_images(px, normalize=False)
    surgery = _copy(toy_vit)
    dh = 32
    for l, h in mask.heads:
        surgery.model.visual.transformer.resblocks[l].attn.out_proj.weight.data[:, h * dh:(h + 1) * dh] = 0
    want = surgery.encode_images(px, normalize=False)
    assert torch.allclose(got, want, atol=1e-5)
    assert (got - toy_vit.encode_images(px, normalize=False)).abs().max() > 1e-3  # it did something


def test_hooks_are_gone_after_the_block_even_on_error(toy_vit, px):
    before = toy_vit.encode_images(px)
    with pytest.raises(RuntimeError):
        with ablate_heads(toy_vit, HeadMask([(2, 2)], "zero")):
            raise RuntimeError("boom")
    assert torch.equal(toy_vit.encode_images(px), before)


def test_mean_ablation_of_pooling_heads_equals_folding_their_mean_into_the_bias(toy_rn, px):
    means = head_means(toy_rn, px)
    mask = HeadMask([(0, 3), (0, 9)], "mean", means)
    with ablate_heads(toy_rn, mask):
        got = toy_rn.encode_images(px, normalize=False)
    surgery = _copy(toy_rn)
    proj = surgery.model.visual.attnpool.c_proj
    dh = proj.in_features // surgery.model.visual.attnpool.num_heads
    for _, h in mask.heads:
        cols = slice(h * dh, (h + 1) * dh)
        proj.bias.data += proj.weight.data[:, cols] @ means[(0, h)]
        proj.weight.data[:, cols] = 0
    assert torch.allclose(got, surgery.encode_images(px, normalize=False), atol=1e-4)


def test_mean_ablation_on_the_images_the_means_came_from_keeps_the_average_output(tiny_vit, px):
    """Mean-ablating a layer's heads replaces each head by its average, so averaged over the same
    images that layer's attention output is unchanged while each image's output changes."""
    from clipaudit.hooks import run_with_cache

    means = head_means(tiny_vit, px)
    path = "visual.transformer.resblocks.2.ls_1"
    _, base = run_with_cache(tiny_vit, px, path)
    with ablate_heads(tiny_vit, HeadMask([(2, h) for h in range(4)], "mean", means)):
        _, abl = run_with_cache(tiny_vit, px, path)
    assert torch.allclose(base[path].mean(0), abl[path].mean(0), atol=1e-5)
    assert (base[path] - abl[path]).abs().max() > 1e-4


def test_mask_file_round_trip_and_bad_files(toy_vit, px, tmp_path):
    mask = HeadMask([(2, 2), (3, 0)], "mean", head_means(toy_vit, px), toy_vit.name, toy_vit.weights_hash)
    p = tmp_path / "mask.json"
    p.write_text(write_mask(mask))
    back = read_mask(p, toy_vit)
    assert back.heads == mask.heads and back.mode == "mean"
    assert torch.allclose(back.means[(2, 2)], mask.means[(2, 2)])
    txt = tmp_path / "mask.txt"
    txt.write_text("# reading heads\n2.2\n3,0\n")
    assert read_mask(txt, toy_vit).heads == [(2, 2), (3, 0)]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(ClipauditError, match="is empty"):
        read_mask(empty, toy_vit)
    bad = tmp_path / "bad.txt"
    bad.write_text("2.9\n")
    with pytest.raises(ClipauditError, match=r"head 9 is out of range; each layer has 4 heads \(valid 0..3\)"):
        read_mask(bad, toy_vit)
    with pytest.raises(ClipauditError, match=r"layer 7 is out of range.*valid 0..3"):
        check_heads(toy_vit, [(7, 0)])


def test_resnet_has_one_attention_layer(toy_rn):
    with pytest.raises(ClipauditError, match=r"layer 1 is out of range.*1 attention layer"):
        check_heads(toy_rn, [(1, 0)])


def test_gradients_through_an_ablated_model_match_weight_surgery(toy_vit, px):
    """Gradient attacks re-audited under a mask must see the ablated model, not the original."""
    mask = HeadMask([(2, 2), (3, 0)], "zero")
    surgery = _copy(toy_vit)
    for l, h in mask.heads:
        surgery.model.visual.transformer.resblocks[l].attn.out_proj.weight.data[:, h * 32:(h + 1) * 32] = 0
    x = px[:2].clone().requires_grad_(True)
    with ablate_heads(toy_vit, mask):
        toy_vit.encode_images(x).sum().backward()
    y = px[:2].clone().requires_grad_(True)
    surgery.encode_images(y).sum().backward()
    assert torch.allclose(x.grad, y.grad, atol=1e-5)
