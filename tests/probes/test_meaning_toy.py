"""Meaning on the trained toy: labels match the drawn class, multimodal neurons read words,
ablating them hurts their concept. Controls: shuffled concepts, held-out renders, other classes.

These use the shipped toy weights (skipped until they exist); the ground truth is the toy
world's metadata (which object each probe image shows).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clipaudit.data import toy_source
from clipaudit.hooks import resolve_layer
from clipaudit.probes.ablation import ablation_check
from clipaudit.probes.labels import LabelConfig, embed_concepts, label_accuracy, label_scan, read_concepts
from clipaudit.probes.multimodal import (MultimodalConfig, concept_responses, multimodality_table, render_words,
                                         responses)
from clipaudit.probes.scan import scan
from clipaudit.toy.world import OBJECT_CLASSES, object_pictures

N_PROBES = 1600
# Measured on the shipped toy-vit (6,000 steps, varied-hair world; reads 0.710 in validation;
# 2026-11-28): its labels pass (1.000 over 14 class-dominated neurons), but no neuron is flagged
# multimodal. With the token-mean response 64% of its post-GELU neurons average <= 0 over the
# other words, so the >= 2x ratio is undefined; with the token max 12 neurons are flagged,
# covering 3/16 classes (8 needed). Not loosened: strict xfail.
VIT_SHORTFALL = pytest.mark.xfail(strict=True, reason="trained toy-vit misses this goal; figures above")


def _vit_falls_short(request, model) -> None:
    if getattr(model, "name", "") in ("toy", "toy-vit"):
        request.applymarker(VIT_SHORTFALL)


@pytest.fixture(scope="module")
def probed(toy_model):
    """(model, layer, source, scan, labels table) for one toy variant."""
    layer = resolve_layer(toy_model, "penultimate")
    src = toy_source(N_PROBES, seed=2024)
    sr = scan(toy_model, src, layer, k=50, batch_size=128)
    concepts = read_concepts()
    emb = embed_concepts(toy_model, concepts)
    labels, _ = label_scan(sr, concepts, emb, LabelConfig())
    return toy_model, layer, src, sr, labels, concepts, emb


@pytest.fixture(scope="module")
def multimodal(probed):
    model, layer, *_ , labels, _c, _e = probed
    cfg = MultimodalConfig()
    img_r, word_r, kept = concept_responses(model, layer, list(OBJECT_CLASSES), object_pictures, cfg, seed=0)
    return multimodality_table(img_r, word_r, kept, labels["label"].tolist(), cfg)


def test_labels_match_the_dominant_drawn_class(toy_model, probed):
    _, _, src, sr, labels, _, _ = probed
    acc, n = label_accuracy(labels, sr, src.items, k=50, threshold=0.6)
    print(f"label accuracy {acc:.3f} over {n} class-dominated neurons")
    assert n >= 10
    assert acc >= 0.7


def test_shuffled_concept_embeddings_drop_to_chance(probed):
    _, _, src, sr, _, concepts, emb = probed
    perm = torch.randperm(len(concepts), generator=torch.Generator().manual_seed(0))
    shuffled, _ = label_scan(sr, concepts, emb[perm], LabelConfig())
    acc, n = label_accuracy(shuffled, sr, src.items, k=50, threshold=0.6)
    print(f"shuffled-concept label accuracy {acc:.3f} over {n}")
    assert acc <= 0.15


def test_multimodal_neurons_read_their_word_on_held_out_renders(request, toy_model, probed, multimodal):
    _vit_falls_short(request, toy_model)
    model, layer, *_ = probed
    flagged = multimodal[multimodal["is_multimodal"]]
    assert len(flagged) > 0
    classes = list(OBJECT_CLASSES)
    held_out = model.to_pixels(render_words(classes, 12, seed=777))  # new positions, sizes, inks
    resp = responses(model, layer, held_out).view(len(classes), 12, -1).mean(1)  # (C, N)
    ratios = []
    for _, row in flagged.iterrows():
        n, c = int(row["neuron"]), classes.index(row["concept"])
        others = torch.cat([resp[:c, n], resp[c + 1:, n]]).mean()
        ratios.append(float(resp[c, n] / others) if others > 0 else float("inf"))
    ratios = np.array(ratios)
    print(f"{len(flagged)} flagged; held-out word ratio min {ratios.min():.2f} median {np.median(ratios):.2f}")
    assert (ratios >= 2.0).all()


def test_multimodal_neurons_cover_half_the_classes(request, toy_model, multimodal):
    _vit_falls_short(request, toy_model)
    covered = set(multimodal.loc[multimodal["is_multimodal"], "concept"])
    print(f"classes with a multimodal neuron: {len(covered)}/16 {sorted(covered)}")
    assert len(covered) >= len(OBJECT_CLASSES) / 2


def test_ablating_a_concepts_neurons_hurts_that_concept_most(request, toy_model, probed, multimodal):
    _vit_falls_short(request, toy_model)
    model, layer, *_ = probed
    flagged = multimodal[multimodal["is_multimodal"]]
    groups = {c: g["neuron"].astype(int).tolist() for c, g in flagged.groupby("concept")}
    table = ablation_check(model, layer, groups, list(OBJECT_CLASSES), object_pictures, n_eval=12, mode="zero")
    print(table[["concept", "measure", "before", "after", "delta", "other_delta"]].to_string())
    acc = table[table["measure"] == "accuracy"]
    prob = table[table["measure"] == "true_prob"]
    assert len(acc) > 0
    assert acc["delta"].mean() <= acc["other_delta"].mean()
    assert prob["delta"].mean() < prob["other_delta"].mean()
    assert (prob["delta"] < prob["other_delta"]).mean() > 0.5
