"""Layer resolution, layouts, capture, neuron reduction and ablation."""
from __future__ import annotations

import warnings

import pytest
import torch

from clipaudit.errors import ClipauditError
from clipaudit.hooks import ablate, capture, list_layers, neurons, resolve_layer


def _n_hooks(model) -> int:
    return sum(len(m._forward_hooks) for m in model.model.modules())


def test_penultimate_per_architecture(tiny_vit, tiny_rn):
    vit = resolve_layer(tiny_vit, "penultimate")
    assert vit.path.endswith("resblocks.3.mlp.gelu") and vit.layout == "nld" and vit.n_neurons == 512
    rn = resolve_layer(tiny_rn, "penultimate")
    assert rn.path == "visual.layer4.0" and rn.layout == "nchw" and rn.n_neurons == 512
    assert resolve_layer(tiny_rn, "final").layout == "nd"
    assert resolve_layer(tiny_vit, "block:0").path == "visual.transformer.resblocks.0"
    assert resolve_layer(tiny_vit, "transformer.resblocks.1").path == "visual.transformer.resblocks.1"


@pytest.mark.parametrize("arch,neurons_expected,path", [("RN50", 2048, "visual.layer4.2"),
                                                       ("ViT-B-32", 3072, "visual.transformer.resblocks.11.mlp.gelu")])
def test_penultimate_on_real_architectures(arch, neurons_expected, path):
    from clipaudit.model import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = load_model(arch, pretrained="none", device="cpu")
    layer = resolve_layer(m, "penultimate")
    assert (layer.path, layer.n_neurons) == (path, neurons_expected)


def test_unknown_layer_suggests_close_names(tiny_rn):
    with pytest.raises(ClipauditError, match=r"unknown layer 'visual.layer5'.*visual.layer4"):
        resolve_layer(tiny_rn, "visual.layer5")


def test_out_of_range_neuron(tiny_vit):
    layer = resolve_layer(tiny_vit, "penultimate")
    with pytest.raises(ClipauditError, match="out of range.*0..511"):
        layer.check_neurons([3, 512])


def test_neurons_match_hand_indexing_for_every_layout():
    g = torch.Generator().manual_seed(0)
    conv = torch.rand(2, 5, 3, 4, generator=g)
    assert torch.allclose(neurons(conv, "nchw"), conv.mean(dim=(2, 3)))
    assert torch.equal(neurons(conv, "nchw", "max")[1, 4], conv[1, 4].max())
    nld = torch.rand(2, 7, 5, generator=g)  # (B, T, C): dim 1 is tokens, not neurons
    assert torch.allclose(neurons(nld, "nld")[1, 3], nld[1, :, 3].mean())
    assert torch.equal(neurons(nld, "nld", "cls"), nld[:, 0, :])
    assert neurons(nld, "nld").shape == (2, 5)
    lnd = nld.permute(1, 0, 2).contiguous()  # (T, B, C)
    assert torch.allclose(neurons(lnd, "lnd"), neurons(nld, "nld"))
    assert torch.equal(neurons(lnd, "lnd", "max"), nld.amax(1))
    with pytest.raises(ValueError, match="cls"):
        neurons(conv, "nchw", "cls")


def test_capture_records_real_activations(tiny_vit):
    layer = resolve_layer(tiny_vit, "penultimate")
    px = torch.rand(2, 3, 64, 64)
    with capture(tiny_vit, layer) as acts:
        tiny_vit.encode_images(px)
    act = acts[layer.path]
    assert act.shape == (2, 65, 512)
    assert torch.all(neurons(act, "nld") > -0.2)  # post-GELU units: GELU's minimum is about -0.17


def test_capture_removes_hooks_even_when_body_raises(tiny_rn):
    before = _n_hooks(tiny_rn)
    with pytest.raises(RuntimeError):
        with capture(tiny_rn, ["penultimate", "block:1"]):
            assert _n_hooks(tiny_rn) == before + 2
            raise RuntimeError("boom")
    assert _n_hooks(tiny_rn) == before


def test_ablate_changes_output_and_restores_bit_for_bit(tiny_model):
    px = torch.rand(2, 3, 64, 64)
    base = tiny_model.encode_images(px)
    layer = resolve_layer(tiny_model, "penultimate")
    with ablate(tiny_model, layer, list(range(64)), 0.0):
        changed = tiny_model.encode_images(px)
        with capture(tiny_model, layer) as acts:
            tiny_model.encode_images(px)
    assert not torch.allclose(base, changed)
    assert torch.all(neurons(acts[layer.path], layer.layout)[:, :64] == 0)
    assert torch.equal(tiny_model.encode_images(px), base)


def test_mean_ablation_sets_each_neuron_to_its_value(tiny_rn):
    layer = resolve_layer(tiny_rn, "penultimate")
    values = torch.tensor([1.5, -2.0])
    with ablate(tiny_rn, layer, [7, 9], values):
        with capture(tiny_rn, layer) as acts:
            tiny_rn.encode_images(torch.rand(1, 3, 64, 64))
    act = acts[layer.path]
    assert torch.all(act[:, 7] == 1.5) and torch.all(act[:, 9] == -2.0)


def test_list_layers_covers_all_layouts(tiny_vit, tiny_rn):
    layouts = {l.layout for l in list_layers(tiny_vit)} | {l.layout for l in list_layers(tiny_rn)}
    assert {"nchw", "nld", "nd"} <= layouts


# -- run_with_cache and patch ---------------------------------------------------------------

def test_run_with_cache_equals_capture_and_knows_layouts(tiny_model):
    from clipaudit.hooks import run_with_cache

    px = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    names = ["block:1", "penultimate", "final"]
    with torch.no_grad():
        with capture(tiny_model, names) as acts:
            ref = tiny_model.encode_images(px)
        emb, cache = run_with_cache(tiny_model, px, names)
    assert torch.equal(emb, ref)
    layers = [resolve_layer(tiny_model, n) for n in names]
    assert [l.path for l in cache.layers] == [l.path for l in layers] and set(cache) == set(acts)
    for layer, name in zip(layers, names):
        assert torch.equal(cache[layer.path], acts[layer.path]) and torch.equal(cache[name], acts[layer.path])
        assert cache.layout(name) == layer.layout
        assert torch.equal(cache.neurons(name), neurons(acts[layer.path], layer.layout))
    assert cache.layout("final") == "nd"
    with pytest.raises(KeyError, match="not in this cache"):
        cache["block:0"]


def test_patch_identity_is_bit_for_bit(tiny_model):
    from clipaudit.hooks import patch

    px = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    base = tiny_model.encode_images(px)
    seen = []
    with patch(tiny_model, "block:1", lambda a, layer: seen.append(layer.path) or a):
        same = tiny_model.encode_images(px)
    with patch(tiny_model, "block:1", lambda a, layer: None):  # None keeps the activation
        same_none = tiny_model.encode_images(px)
    assert torch.equal(same, base) and torch.equal(same_none, base)
    assert seen == [resolve_layer(tiny_model, "block:1").path]


def test_patch_function_sees_the_layer_and_changes_the_output(tiny_vit):
    from clipaudit.hooks import patch, run_with_cache

    px = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    base = tiny_vit.encode_images(px)
    with patch(tiny_vit, "penultimate", lambda a, layer: a * 0 + 1.25):
        changed, cache = run_with_cache(tiny_vit, px, "penultimate")
    assert not torch.allclose(changed, base)
    assert torch.all(cache["penultimate"] == 1.25)  # a later recorder sees the patched value
    assert torch.equal(tiny_vit.encode_images(px), base)


def test_patch_removes_hooks_when_fn_or_body_raises(tiny_rn):
    from clipaudit.hooks import patch

    before = _n_hooks(tiny_rn)

    def boom(a, layer):
        raise RuntimeError("fn failed")

    with pytest.raises(RuntimeError, match="fn failed"):
        with patch(tiny_rn, "block:0", boom):
            assert _n_hooks(tiny_rn) == before + 1
            tiny_rn.encode_images(torch.rand(1, 3, 64, 64))
    assert _n_hooks(tiny_rn) == before
    with pytest.raises(ValueError, match=r"returned shape \(1, 2\)"):
        with patch(tiny_rn, "block:0", lambda a, layer: torch.zeros(1, 2)):
            tiny_rn.encode_images(torch.rand(1, 3, 64, 64))
    assert _n_hooks(tiny_rn) == before


# -- early exit -------------------------------------------------------------------------------

def _calls_of(model, path: str):
    """A counter of forwards through the module at ``path`` (remove the handle after)."""
    from clipaudit.hooks import _module_at

    count = [0]
    handle = _module_at(model.model, path).register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    return count, handle


def _last_module(model) -> str:
    return "visual.attnpool" if model.arch == "resnet" else "visual.ln_post"


def _early_exit_matches_full_pass(model):
    from clipaudit.hooks import run_with_cache

    px = torch.rand(2, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(4))
    names = ["block:0", "block:1"]
    list_layers(model)  # the one-off probe forward happens before counting
    before = _n_hooks(model)
    count, handle = _calls_of(model, _last_module(model))
    try:
        with torch.no_grad():
            emb, full = run_with_cache(model, px, names)
            assert emb is not None and count[0] == 1
            none, early = run_with_cache(model, px, names, stop_at=True)
            assert none is None and count[0] == 1  # the layers above block:1 never ran
            _, at_named = run_with_cache(model, px, "block:0", stop_at="block:1")
    finally:
        handle.remove()
    assert _n_hooks(model) == before
    for name in names:
        assert torch.equal(early[name], full[name])
    assert torch.equal(at_named["block:0"], full["block:0"])


def test_early_exit_is_bit_for_bit_on_tiny_architectures(tiny_model):
    _early_exit_matches_full_pass(tiny_model)


def test_early_exit_is_bit_for_bit_on_the_toy(toy_rn):
    _early_exit_matches_full_pass(toy_rn)


def test_early_exit_keeps_gradients_equal(tiny_vit):
    from clipaudit.hooks import run_with_cache

    grads = []
    for stop in (None, True):
        px = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5)).requires_grad_(True)
        _, cache = run_with_cache(tiny_vit, px, "block:2", stop_at=stop, detach=False)
        cache.neurons("block:2")[:, 3].sum().backward()
        grads.append(px.grad)
    assert grads[0].abs().sum() > 0 and torch.equal(grads[0], grads[1])


def test_stop_at_unknown_layer_suggests_close_names(tiny_vit):
    from clipaudit.hooks import run_with_cache

    before = _n_hooks(tiny_vit)
    with pytest.raises(ClipauditError, match=r"unknown layer 'block:40'.*did you mean: block:"):
        run_with_cache(tiny_vit, torch.rand(1, 3, 64, 64), "block:1", stop_at="block:40")
    with pytest.raises(ClipauditError, match=r"stop_at 'visual.transformer.resblocks.0' comes before "
                                             r"'visual.transformer.resblocks.2'"):
        run_with_cache(tiny_vit, torch.rand(1, 3, 64, 64), ["block:2", "block:1"], stop_at="block:0")
    assert _n_hooks(tiny_vit) == before


def test_hooks_removed_when_the_forward_raises_under_early_exit(tiny_rn):
    from clipaudit.hooks import run_with_cache

    before = _n_hooks(tiny_rn)
    with pytest.raises(ValueError, match="pixels must be"):
        run_with_cache(tiny_rn, torch.rand(1, 3, 32, 32), "block:1", stop_at=True)
    assert _n_hooks(tiny_rn) == before
