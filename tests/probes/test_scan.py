"""The streaming scan equals brute force, merges exactly, and survives broken images."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clipaudit.data import folder_source, toy_source
from clipaudit.errors import ClipauditError
from clipaudit.hooks import capture, neurons, resolve_layer
from clipaudit.probes.scan import ScanState, scan


def _brute(acts: torch.Tensor, k: int):
    vals, idx = acts.t().topk(k, dim=1)
    return vals, idx


def test_state_merge_is_exact_in_any_order():
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(40, 7, generator=g)
    pos = torch.arange(40)
    whole = ScanState.empty(7, 5)
    whole.update(acts, pos)
    parts = []
    for chunk in (slice(0, 13), slice(13, 29), slice(29, 40)):
        s = ScanState.empty(7, 5)
        s.update(acts[chunk], pos[chunk])
        parts.append(s)
    merged = ScanState.empty(7, 5)
    for s in reversed(parts):
        merged.merge_(s)
    vals, idx = _brute(acts, 5)
    assert torch.equal(merged.positions, idx) and torch.equal(whole.positions, idx)
    assert torch.allclose(merged.values, vals)
    assert torch.allclose(merged.mean, acts.double().mean(0))
    assert torch.allclose(merged.std, acts.double().std(0, unbiased=False))
    assert merged.count == 40


def test_ties_break_by_position():
    s = ScanState.empty(1, 2)
    s.update(torch.ones(3, 1), torch.tensor([7, 2, 5]))
    assert s.positions[0].tolist() == [2, 5]


def test_scan_matches_full_activation_matrix(tiny_model):
    src = toy_source(40, seed=3)
    layer = resolve_layer(tiny_model, "penultimate")
    res = scan(tiny_model, src, layer, k=6, batch_size=16)
    rows = []
    with torch.no_grad(), capture(tiny_model, layer) as acts:
        for b in src.batches(tiny_model, 40):
            tiny_model.encode_images(b.pixels)
            rows.append(neurons(acts[layer.path], layer.layout))
    full = torch.cat(rows)
    vals, idx = _brute(full, 6)
    assert torch.allclose(res.state.values, vals, atol=1e-5)
    # the recorded images really have the recorded activations (ties may pick any of equals)
    assert torch.allclose(full.t().gather(1, res.state.positions), vals, atol=1e-5)
    idx = res.state.positions
    assert torch.allclose(res.state.mean.float(), full.mean(0), atol=1e-5)
    assert res.embeddings.shape == (40, tiny_model.encode_images(torch.rand(1, 3, 64, 64)).shape[1])
    top = res.top_images_table(src.items, [0, 1])
    assert list(top.columns[:4]) == ["neuron", "rank", "id", "activation"]
    assert top[top.neuron == 0]["id"].tolist() == [str(i) for i in idx[0].tolist()]


def test_broken_images_are_skipped_and_listed(tiny_rn, tmp_path):
    for i in range(3):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(tmp_path / f"ok{i}.png")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    res = scan(tiny_rn, folder_source(tmp_path), "penultimate", k=2, batch_size=2)
    assert res.state.count == 3
    assert [i for i, _ in res.skipped] == ["broken.png"]
    assert "broken.png" not in {res.ids[p] for p in res.state.positions.flatten().tolist()}


def test_all_broken_is_one_clear_error(tiny_rn, tmp_path):
    (tmp_path / "a.png").write_bytes(b"junk")
    with pytest.raises(ClipauditError, match="none of the 1 probe images could be decoded"):
        scan(tiny_rn, folder_source(tmp_path), "penultimate", k=2)


def test_scan_without_embeddings_stops_early_and_gives_the_same_state(tiny_model):
    from clipaudit.hooks import _module_at, list_layers

    src = toy_source(24, seed=5)
    list_layers(tiny_model)
    last = "visual.attnpool" if tiny_model.arch == "resnet" else "visual.ln_post"
    count = [0]
    handle = _module_at(tiny_model.model, last).register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    try:
        early = scan(tiny_model, src, "block:1", k=4, batch_size=8, keep_embeddings=False)
        assert count[0] == 0 and early.embeddings is None
        full = scan(tiny_model, src, "block:1", k=4, batch_size=8)
        assert count[0] == 3  # one full forward per batch, embeddings and activations together
    finally:
        handle.remove()
    for name in ("values", "positions", "mean", "m2"):
        assert torch.equal(getattr(early.state, name), getattr(full.state, name))
