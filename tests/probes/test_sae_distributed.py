"""Data-parallel SAE: two gloo processes, each on its shard of the images.

Checked against the one-process answer: the merged measuring pass equals it exactly, the two
ranks end training with the same weights, and the data-parallel SAE learns the layer as well.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from tests.fixtures.process_group import run_local_group

CFG = dict(latents=32, k=4, steps=40, batch_size=32)


def _worker(rank: int, world: int, out: str) -> None:
    from clipaudit.data import toy_source
    from clipaudit.hooks import resolve_layer
    from clipaudit.model import load_model
    from clipaudit.probes.sae import SAEConfig, activation_rows, train_sae
    from clipaudit.probes.sae_metrics import measure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model("toy-rn", pretrained="none", device="cpu")
    layer = resolve_layer(model, "penultimate")
    src = toy_source(40, seed=5)
    seen = []

    def rows():
        for r, ids in activation_rows(model, src, layer, "mean", 8, rank=rank, world_size=world):
            seen.extend(ids)
            yield r
    sae, _ = train_sae(rows, layer.n_neurons, SAEConfig(**CFG))
    p = measure(model, src, layer, sae, "mean", classes=["apple", "pizza", "car"], image_batch=8, rank=rank,
                world_size=world)
    torch.save({"state": sae.state_dict(), "seen": sorted(set(seen)), "fvu": p.fvu, "l0": p.l0,
                "codes": p.codes.toarray(), "ids": p.ids, "clean": p.clean_correct, "spliced": p.spliced_correct,
                "neurons": p.neurons, "fires": p.fire_counts, "dead": p.dead_fraction}, f"{out}.{rank}")


def test_two_process_sae_shards_the_images_trains_one_sae_and_merges_the_pass(tiny_rn, tmp_path):
    from clipaudit.data import toy_source
    from clipaudit.hooks import resolve_layer
    from clipaudit.probes.sae import SparseAutoencoder, SAEConfig, activation_rows, train_sae
    from clipaudit.probes.sae_metrics import measure

    out = str(tmp_path / "rank")
    run_local_group(_worker, 2, out)
    r0, r1 = (torch.load(f"{out}.{r}", weights_only=False) for r in (0, 1))
    src = toy_source(40, seed=5)
    ids = [str(i) for i in src.items["id"]]
    assert r0["seen"] == sorted(ids[0::2]) and r1["seen"] == sorted(ids[1::2])  # each rank read its shard only
    for k, v in r0["state"].items():  # gradients averaged every step: one SAE on both ranks
        assert torch.equal(v, r1["state"][k]), k
    # the merged pass equals one process measuring the same SAE over all images, in source order
    layer = resolve_layer(tiny_rn, "penultimate")
    sae = SparseAutoencoder(layer.n_neurons, SAEConfig(**CFG))
    sae.load_state_dict(r0["state"])
    sae.eval()
    ref = measure(tiny_rn, src, layer, sae, "mean", classes=["apple", "pizza", "car"], image_batch=8)
    for r in (r0, r1):
        assert r["ids"] == ref.ids == ids
        assert np.allclose(r["codes"], ref.codes.toarray(), atol=1e-5)
        assert np.allclose(r["neurons"], ref.neurons, atol=1e-5)
        assert np.array_equal(r["clean"], ref.clean_correct) and np.array_equal(r["spliced"], ref.spliced_correct)
        assert abs(r["fvu"] - ref.fvu) < 1e-5 and abs(r["l0"] - ref.l0) < 1e-9
        assert np.array_equal(r["fires"], ref.fire_counts) and r["dead"] == ref.dead_fraction
    # and it learns the layer as well as one process trained on all images
    one, _ = train_sae(lambda: (r for r, _ in activation_rows(tiny_rn, src, layer, "mean", 8)), layer.n_neurons,
                       SAEConfig(**CFG))
    single = measure(tiny_rn, src, layer, one, "mean")
    assert ref.fvu < 1.5 * single.fvu + 0.02


def _sync_worker(rank: int, world: int, out: str) -> None:
    from clipaudit.probes.sae import SAEConfig, SparseAutoencoder, _sync_step

    sae = SparseAutoencoder(4, SAEConfig(latents=3, k=1, variant="batchtopk"))
    for p in sae.parameters():
        p.grad = torch.full_like(p, float(rank + 1))
    sae.threshold.fill_(2.0 + 2 * rank)
    fired_since = torch.tensor([0, 100, 50]) if rank == 0 else torch.tensor([100, 100, 0])
    _sync_step(sae, fired_since, world)
    torch.save({"grads": [p.grad.clone() for p in sae.parameters()], "threshold": float(sae.threshold),
                "fired_since": fired_since}, f"{out}.{rank}")


def test_sync_step_averages_gradients_takes_a_latent_as_fired_on_any_rank_and_averages_the_threshold(tmp_path):
    out = str(tmp_path / "sync")
    run_local_group(_sync_worker, 2, out)
    for r in (0, 1):
        got = torch.load(f"{out}.{r}", weights_only=False)
        assert all(torch.allclose(g, torch.full_like(g, 1.5)) for g in got["grads"])  # (1 + 2) / 2
        assert got["threshold"] == 3.0  # (2 + 4) / 2
        assert got["fired_since"].tolist() == [0, 100, 0]  # fired on either rank -> 0
