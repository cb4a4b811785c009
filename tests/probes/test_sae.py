"""SAE training, streaming, planted-truth scoring, edits and the `clipaudit sae` command.

Expected values come from hand-built data (a planted sparse dictionary, a planted unit),
scikit-learn (AUROC) and statsmodels (Wilson interval), never from the code under test.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from clipaudit.errors import ClipauditError
from clipaudit.probes import planted
from clipaudit.probes.sae import SAEConfig, ShuffleBuffer, SparseAutoencoder, rows_of, train_sae, training_loss
from clipaudit.probes.sae_edit import LatentEdit, add_row_delta, edited, parse_edit_spec, spliced


def _planted_sparse(n=4000, d=24, atoms=48, active=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(atoms, d, generator=g)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    idx = torch.stack([torch.randperm(atoms, generator=g)[:active] for _ in range(n)])
    codes = torch.zeros(n, atoms).scatter(1, idx, torch.rand(n, active, generator=g) + 0.5)
    return codes @ dictionary + 3.0, dictionary


def _fvu(x, r):
    return float(((x - r) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


# -- config and model --------------------------------------------------------------------------

@pytest.mark.parametrize("kw, needle", [({"k": 64, "latents": 64}, "--k must be between 1 and latents - 1 = 63"),
                                        ({"latents": 0}, "--latents must be >= 1, got 0"),
                                        ({"variant": "jump"}, "unknown SAE variant 'jump'"),
                                        ({"tokens": "max"}, "unknown --tokens 'max'")])
def test_config_refuses_bad_values_naming_the_valid_range(kw, needle):
    with pytest.raises(ClipauditError, match=needle.replace("(", r"\(")):
        SAEConfig(**kw).validate()


def test_topk_keeps_exactly_k_latents_and_decodes_in_layer_units():
    x, _ = _planted_sparse(200)
    sae = SparseAutoencoder(24, SAEConfig(latents=64, k=5))
    sae.set_normalisation(x)
    codes = sae.encode(x)
    assert ((codes > 0).sum(1) <= 5).all() and (codes > 0).sum(1).float().mean() > 4.5
    assert sae.decode(torch.zeros(1, 64)).squeeze().allclose(x.mean(0), atol=1e-5)  # zero code = the data mean


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["topk", "batchtopk", "matryoshka"])
def test_training_recovers_a_planted_sparse_dictionary(variant):
    x, dictionary = _planted_sparse()
    cfg = SAEConfig(latents=96, k=3, variant=variant, steps=250, batch_size=256, lr=3e-3, buffer=8192,
                    dead_after=5000, matryoshka_groups=(0.5, 1.0))
    sae, log = train_sae(lambda: iter(x.split(500)), 24, cfg)
    with torch.no_grad():
        codes = sae.encode(x)
        fvu = _fvu(x, sae.decode(codes))
    assert fvu < 0.12, fvu  # measured 0.09-0.10 (batchtopk 0.101)
    assert (codes > 0).sum(1).float().mean() <= 3.5
    # most planted atoms have a decoder row pointing the same way (cosine > 0.9)
    cos = dictionary @ sae.W_dec.detach().t()
    assert (cos.max(1).values > 0.9).float().mean() >= 0.6
    assert log.steps[-1]["mse"] < log.steps[0]["mse"]


def test_training_is_deterministic_by_seed():
    x, _ = _planted_sparse(1000)
    cfg = SAEConfig(latents=32, k=3, steps=8, batch_size=128, buffer=512)
    a, _ = train_sae(lambda: iter(x.split(300)), 24, cfg)
    b, _ = train_sae(lambda: iter(x.split(300)), 24, cfg)
    c, _ = train_sae(lambda: iter(x.split(300)), 24, SAEConfig(latents=32, k=3, steps=8, batch_size=128,
                                                               buffer=512, seed=1))
    assert torch.equal(a.W_dec, b.W_dec) and torch.equal(a.W_enc, b.W_enc)
    assert not torch.equal(a.W_dec, c.W_dec)


def test_auxk_loss_trains_dead_latents():
    x, _ = _planted_sparse(256)
    sae = SparseAutoencoder(24, SAEConfig(latents=32, k=2, dead_after=10))
    sae.set_normalisation(x)
    x = x[:4]  # 4 rows x k=2: at most 8 of the 32 latents fire in this batch
    fired_since = torch.full((32,), 100, dtype=torch.long)  # every latent has been silent for 100 rows
    loss, parts = training_loss(sae, x, fired_since)
    loss.backward()
    assert parts["aux"] > 0
    never = (sae.encode(x) > 0).sum(0) == 0
    assert never.any()
    # latents that never make the top-k still get an encoder gradient, through the AuxK term only
    assert (sae.W_enc.grad[:, never].abs().sum(0) > 0).all()


# -- streaming ---------------------------------------------------------------------------------

def test_shuffle_buffer_holds_a_small_data_set_and_reads_it_once():
    data = torch.arange(100.0)[:, None]
    epochs = []

    def rows():
        epochs.append(1)
        return iter(data.split(30))
    buf = ShuffleBuffer(rows, capacity=1000, seed=0)
    seen = torch.cat([buf.sample(50) for _ in range(20)])
    assert buf.complete and len(epochs) == 1
    assert set(seen.squeeze().tolist()) == set(range(100))


def test_shuffle_buffer_streams_past_its_capacity_and_mixes_rows():
    data = torch.arange(1000.0)[:, None]
    buf = ShuffleBuffer(lambda: iter(data.split(64)), capacity=128, seed=0)
    first = buf.sample(32).squeeze()
    assert first.max() < 128 and not torch.equal(first, first.sort().values)  # shuffled, from the first fill
    later = torch.cat([buf.sample(32) for _ in range(60)]).squeeze()
    assert not buf.complete and later.max() >= 900  # rows far past the capacity arrive


# -- planted-truth scoring -----------------------------------------------------------------------

def test_auroc_columns_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(300, 5)).astype(float)  # many ties, like sparse codes
    labels = rng.random(300) < 0.3
    expected = [roc_auc_score(labels, scores[:, j]) for j in range(5)]
    assert np.allclose(planted.auroc_columns(scores, labels), expected)


def _toy_items(n=400, seed=0):
    rng = np.random.default_rng(seed)
    kind = rng.choice(["object", "person"], n, p=[0.6, 0.4])
    obj, per = kind == "object", kind == "person"
    return pd.DataFrame({
        "id": [str(i) for i in range(n)], "kind": kind,
        "label": np.where(obj, rng.choice(["apple", "pizza"], n), ""),
        "colour": np.where(obj, rng.choice(["red", "green"], n), ""),
        "word": np.where(obj & (rng.random(n) < 0.5), rng.choice(["apple", "sale"], n), ""),
        "skin": np.where(per, rng.choice(["tone0", "tone1"], n), ""),
        "age": np.where(per, rng.choice(["child", "adult"], n), ""),
        "hair": np.where(per, rng.choice(["short", "long"], n), ""), "role": ""})


def test_factors_are_scored_within_their_domain():
    items = _toy_items()
    factors = {f.name: f for f in planted.planted_factors(items, min_positives=10)}
    assert {"class=apple", "colour=red", "word_written", "word=sale", "age=child", "hair=long"} <= set(factors)
    person = (items["kind"] == "person").to_numpy()
    assert np.array_equal(factors["age=child"].domain, person)
    assert np.array_equal(factors["class=apple"].domain, (items["kind"] == "object").to_numpy())
    assert np.array_equal(factors["word=sale"].domain, (items["word"] != "").to_numpy())


def test_a_person_detector_does_not_count_as_an_age_detector():
    items = _toy_items()
    person = (items["kind"] == "person").to_numpy().astype(float)
    child = (items["age"] == "child").to_numpy().astype(float)
    rng = np.random.default_rng(1)
    units = np.stack([person + 0.01 * rng.random(len(items)),         # fires on every person
                      child + 0.3 * rng.random(len(items))], 1)        # the planted child unit
    factors = [f for f in planted.planted_factors(items, 10) if f.name == "age=child"]
    table = planted.score_units(planted.dense_units(units), factors, 2, prefix="unit")
    assert table.loc[0, "unit"] == 1 and table.loc[0, "unit_auroc"] > 0.99
    # the person unit, scored across all scenes, would look like a good child detector
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(child, units[:, 0]) > 0.8


def test_recall_interval_is_wilson():
    from statsmodels.stats.proportion import proportion_confint

    value, lo, hi = planted.recall(pd.Series([0.95, 0.91, 0.5, 0.89, np.nan]), 0.9)
    assert value == 0.5
    assert np.allclose((lo, hi), proportion_confint(2, 4, method="wilson"))


# -- edits ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("tokens", ["mean", "all"])
def test_row_delta_is_laid_out_where_rows_of_read_it(tiny_rn, tokens):
    from clipaudit.hooks import resolve_layer

    layer = resolve_layer(tiny_rn, "penultimate")
    out = torch.randn(3, *layer.shape[1:])
    delta = torch.randn(*rows_of(out, layer, tokens).shape)
    assert torch.allclose(rows_of(add_row_delta(out, layer, tokens, delta), layer, tokens),
                          rows_of(out, layer, tokens) + delta, atol=1e-5)


def _tiny_sae(model, layer, k=4, tokens="mean"):
    from clipaudit.probes.sae import activation_rows
    from clipaudit.data import toy_source

    src = toy_source(48, seed=3)
    cfg = SAEConfig(latents=32, k=k, steps=5, batch_size=32, tokens=tokens)
    sae, _ = train_sae(lambda: (r for r, _ in activation_rows(model, src, layer, tokens, 24)), layer.n_neurons, cfg)
    return sae, src


def test_identity_edit_leaves_the_model_bit_for_bit_and_suppression_moves_by_the_decoder_rows(tiny_vit):
    from clipaudit.hooks import resolve_layer, run_with_cache

    layer = resolve_layer(tiny_vit, "penultimate")
    sae, src = _tiny_sae(tiny_vit, layer, tokens="cls")
    pixels = next(src.batches(tiny_vit, 6)).pixels
    clean_emb, clean = run_with_cache(tiny_vit, pixels, layer)
    with edited(tiny_vit, layer, sae, "cls", LatentEdit(tuple(range(32)), scale=1.0)):
        same_emb, _ = run_with_cache(tiny_vit, pixels, layer)
    assert torch.equal(same_emb, clean_emb)
    rows = rows_of(clean[layer.path], layer, "cls")
    codes = sae.encode(rows)
    j = int(codes.sum(0).argmax())
    with edited(tiny_vit, layer, sae, "cls", LatentEdit((j,), scale=0.0)):
        _, cache = run_with_cache(tiny_vit, pixels, layer)
    expected = rows - codes[:, j:j + 1] * sae.W_dec[j] * sae.scale  # hand: z_j d_j removed in layer units
    assert torch.allclose(rows_of(cache[layer.path], layer, "cls"), expected.detach(), atol=1e-4)


def test_splice_replaces_the_layer_by_the_reconstruction(tiny_rn):
    from clipaudit.hooks import resolve_layer, run_with_cache

    layer = resolve_layer(tiny_rn, "penultimate")
    sae, src = _tiny_sae(tiny_rn, layer)
    pixels = next(src.batches(tiny_rn, 4)).pixels
    _, clean = run_with_cache(tiny_rn, pixels, layer)
    with spliced(tiny_rn, layer, sae, "mean"):
        _, cache = run_with_cache(tiny_rn, pixels, layer)
    assert torch.allclose(rows_of(cache[layer.path], layer, "mean"),
                          sae(rows_of(clean[layer.path], layer, "mean")).detach(), atol=1e-4)


@pytest.mark.parametrize("text, latents, scale, clamp", [("runs/a:latents=3,17", (3, 17), 0.0, None),
                                                          ("runs/a:latents=5:scale=0.5", (5,), 0.5, None),
                                                          ("runs/a:latents=1,2:clamp=4", (1, 2), 0.0, 4.0)])
def test_parse_edit_spec(text, latents, scale, clamp):
    spec = parse_edit_spec(text)
    assert (spec.run, spec.edit.latents, spec.edit.scale, spec.edit.clamp) == ("runs/a", latents, scale, clamp)


@pytest.mark.parametrize("text, needle", [("runs/a", "no ':latents='"), ("runs/a:latents=x", "integers"),
                                          ("runs/a:latents=1:mul=2", "valid: scale=F, clamp=V"),
                                          (":latents=1", "no run folder"),
                                          ("runs/a:latents=1:scale=2:clamp=3", "scale or clamp, not both")])
def test_parse_edit_spec_refuses_bad_forms(text, needle):
    with pytest.raises(ClipauditError, match=needle):
        parse_edit_spec(text)


def test_latent_labels_name_the_concept_of_a_latent_planted_on_one_class(tiny_rn):
    """SoftWPMI with latents as units: a latent whose top images are the images most like 'apple'
    (by the model's own embeddings) gets the label 'apple'."""
    from scipy import sparse

    from clipaudit.probes.labels import embed_concepts
    from clipaudit.probes.sae_metrics import SAEPass, latent_labels

    concepts = ["apple", "car", "tree", "boat"]
    text = embed_concepts(tiny_rn, concepts)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(60, text.shape[1])).astype(np.float32)
    emb[:10] = text[0].numpy() * 5 + 0.01 * emb[:10]  # ten images that look like 'apple'
    codes = np.zeros((60, 2), np.float32)
    codes[:10, 0] = np.arange(10, 0, -1)  # latent 0 fires on them
    codes[20:40, 1] = 1.0
    p = SAEPass(0.0, 0.0, 0.0, np.zeros(2), sparse.csr_matrix(codes), np.zeros((60, 1)), [str(i) for i in range(60)],
                None, None, [], embeddings=emb)
    table = latent_labels(tiny_rn, p, k=10, concepts=concepts)
    assert list(table["latent"]) == [0, 1] and table.loc[0, "label"] == "apple"


# -- latent explorer data ------------------------------------------------------------------------

def test_latent_profile_takes_quantiles_and_histograms_over_firing_images_only():
    from scipy import sparse

    from clipaudit.probes.sae_metrics import SAEPass, latent_profile

    dense = np.zeros((10, 3))
    dense[[1, 4, 6, 9], 0] = [4.0, 1.0, 3.0, 2.0]  # latent 0 fires on 4 images; latent 2 never
    dense[2, 1] = 7.0
    p = SAEPass(fvu=0, l0=0, dead_fraction=0, fire_counts=(dense > 0).sum(0), codes=sparse.csr_matrix(dense),
                neurons=np.zeros((10, 1)), ids=[f"i{n}" for n in range(10)], clean_correct=None, spliced_correct=None,
                classes=[])
    quant, hist = latent_profile(p, bins=3)
    q0 = quant[quant["latent"] == 0].set_index("quantile")
    assert q0.loc[0.5, "value"] == pytest.approx(2.5)  # median of 1, 2, 3, 4: zeros left out
    assert q0.loc[0.0, "id"] == "i4" and q0.loc[0.99, "id"] == "i1"  # lowest (1.0) and highest (4.0)
    assert set(quant["latent"]) == {0, 1}  # the dead latent has no rows
    h0 = hist[hist["latent"] == 0]
    assert h0["count"].sum() == 4 and h0["bin_low"].min() == 1.0 and h0["bin_high"].max() == 4.0


def test_patch_grid_drops_the_cls_token_and_keeps_conv_positions(tiny_vit, tiny_rn):
    from clipaudit.hooks import resolve_layer
    from clipaudit.probes.sae import rows_per_image
    from clipaudit.probes.sae_metrics import patch_grid

    vit = resolve_layer(tiny_vit, "penultimate")
    per = rows_per_image(vit, "all")
    first, gh, gw = patch_grid(vit, per)
    assert first == 1 and gh * gw == per - 1 and gh == gw
    rn = resolve_layer(tiny_rn, "penultimate")
    assert patch_grid(rn, rows_per_image(rn, "all")) == (0, rn.shape[2], rn.shape[3])
    assert patch_grid(rn, rows_per_image(rn, "mean")) is None


@pytest.mark.parametrize("arch", ["vit", "rn"])
def test_patch_maps_hold_each_latents_codes_on_the_patches_of_its_top_images(arch, tiny_vit, tiny_rn):
    from clipaudit.hooks import resolve_layer, run_with_cache
    from clipaudit.probes.sae import rows_per_image
    from clipaudit.probes.sae_metrics import measure, patch_grid, patch_maps

    model = tiny_vit if arch == "vit" else tiny_rn
    layer = resolve_layer(model, "penultimate")
    sae, src = _tiny_sae(model, layer, tokens="all")
    p = measure(model, src, layer, sae, "all")
    maps = patch_maps(model, src, layer, sae, p, top=2)
    assert len(maps) and (maps["activation"] > 0).all()
    per = rows_per_image(layer, "all")
    first, gh, gw = patch_grid(layer, per)
    # hand check: encode every token of each top image directly; the table holds exactly its nonzero patch codes
    pixels = {i: b.pixels[n] for b in src.batches(model, 48) for n, i in enumerate(b.ids)}
    for (j, rank), g in list(maps.groupby(["latent", "rank"]))[:12]:
        image_id = g["id"].iloc[0]
        _, cache = run_with_cache(model, pixels[image_id][None], layer)
        codes = sae.encode(rows_of(cache[layer.path], layer, "all")).detach()[first:first + gh * gw, j]
        expected = {(int(t) // gw, int(t) % gw): float(codes[t]) for t in torch.nonzero(codes).flatten()}
        got = {(int(r), int(c)): a for r, c, a in zip(g["row"], g["col"], g["activation"])}
        assert got.keys() == expected.keys()
        assert np.allclose([got[k] for k in expected], list(expected.values()), atol=1e-5)
        # rank 0 is the image where the latent's maximum over rows is largest
        if rank == 0:
            col = p.codes[:, j].toarray().ravel()
            assert p.ids[int(col.argmax())] == image_id


def test_rows_seen_counts_every_ranks_rows_towards_dead_latents():
    sae = SparseAutoencoder(6, SAEConfig(latents=8, k=1))
    x = torch.randn(5, 6)
    fired_since = torch.zeros(8, dtype=torch.long)
    training_loss(sae, x, fired_since, rows_seen=15)
    fired = (sae.encode(x) > 0).any(0)
    assert (fired_since[~fired] == 15).all() and (fired_since[fired] == 0).all()
    training_loss(sae, x, fired_since)  # default: this batch's rows
    assert (fired_since[~fired] == 20).all()


def test_patch_maps_list_every_top_image_of_every_firing_latent(tiny_vit):
    from clipaudit.hooks import resolve_layer, run_with_cache
    from clipaudit.probes.sae_metrics import measure, patch_maps, top_positions

    layer = resolve_layer(tiny_vit, "penultimate")
    sae, src = _tiny_sae(tiny_vit, layer, tokens="all")
    p = measure(tiny_vit, src, layer, sae, "all")
    maps = patch_maps(tiny_vit, src, layer, sae, p, top=12)
    tops = top_positions(p, 12).numpy()
    pixels = torch.cat([b.pixels for b in src.batches(tiny_vit, 48)])
    _, cache = run_with_cache(tiny_vit, pixels, layer)
    codes = sae.encode(rows_of(cache[layer.path], layer, "all")).detach().view(len(pixels), -1, sae.n_latents)
    # hand: every (latent, rank) whose top image has a nonzero code on some patch (CLS left out),
    # source position 0 included
    expected = {(int(j), rank) for j in np.flatnonzero(p.fire_counts > 0) for rank, pos in enumerate(tops[j])
                if pos >= 0 and (codes[pos, 1:, j] > 0).any()}
    got = {(int(j), int(r)) for j, r in zip(maps["latent"], maps["rank"])}
    assert got == expected
    assert any(tops[j, r] == 0 for j, r in expected)  # the first image is among some latent's top images


def test_patch_overlay_puts_the_heat_where_the_patch_is(monkeypatch, tiny_vit):
    from clipaudit.probes import attribution, sae_metrics
    from clipaudit.data import toy_source

    src = toy_source(2, seed=3)
    image_id = str(src.items["id"].iloc[0])
    maps = pd.DataFrame({"latent": [5], "rank": [0], "id": [image_id], "row": [0], "col": [3], "activation": [2.0]})
    seen = {}

    def fake_overlay(pixels, heat, **kw):
        seen["heat"] = heat
        return ["img"]
    monkeypatch.setattr(attribution, "overlay", fake_overlay)
    out = sae_metrics.patch_overlays(tiny_vit, src, maps, [5], (4, 4))
    assert out == {5: ["img"]}
    heat = seen["heat"][0, 0]
    s = heat.shape[-1] // 4
    assert heat[:s, 3 * s:].min() == 2.0 and heat[:, :3 * s].abs().sum() == 0 and heat[s:].abs().sum() == 0
