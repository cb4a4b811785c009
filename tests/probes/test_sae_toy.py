"""The SAE goals of the issue on the shipped toy-rn's penultimate layer (pooled layer4, 512 channels).

The SAEs measured here are trained by ``tests/fixtures/toy_sae/make.py`` (a TopK SAE, 4096
latents, k = 32, on 20k scenes, and the same SAE trained on column-permuted rows as the control),
too slow to train inside the suite; they are re-measured here on scenes they were not trained on
and scored against the toy world's planted truth. Goals the trained toy misses are strict xfails
carrying the measured figure; the thresholds are the issue's, never lowered.

Expected values are the issue's goals and the world's recorded facts (every scene's class,
colour, word, skin tone, hair...), not the code's own output.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipaudit.data import toy_source
from clipaudit.hooks import resolve_layer
from clipaudit.probes import planted
from clipaudit.probes.sae import load_sae_run
from clipaudit.probes.sae_audit import factor_summary, factor_table
from clipaudit.probes.sae_edit import LatentEdit, edited
from clipaudit.probes.sae_metrics import measure
from clipaudit.toy.world import OBJECT_CLASSES

FIXTURES = Path(__file__).parents[1] / "fixtures" / "toy_sae"
N_EVAL = 3000


@pytest.fixture(scope="module")
def layer(toy_rn):
    return resolve_layer(toy_rn, "penultimate")


@pytest.fixture(scope="module")
def trained(toy_rn, layer):
    sae, _ = load_sae_run(FIXTURES / "real", model=toy_rn, layer=layer)  # refuses other weights or layers
    src = toy_source(N_EVAL, seed=99)  # the SAEs were trained on toy_source(20000, seed=777)
    p = measure(toy_rn, src, layer, sae, "mean", classes=list(OBJECT_CLASSES))
    table = factor_table(p, planted.planted_factors(src.items, 20), sae.n_latents)
    return sae, src, p, table, factor_summary(table, 0.9)


def test_reconstruction_is_faithful_at_the_sparsity_asked(trained):
    _, _, p, _, _ = trained
    assert p.fvu <= 0.10 and p.l0 <= 32
    assert len(p.clean_correct) > 1000
    assert abs(p.spliced_correct.mean() - p.clean_correct.mean()) <= 0.02


def test_factor_table_sets_sae_neurons_and_the_linear_probe_side_by_side(trained):
    _, src, _, table, s = trained
    assert s["n_factors"] == len(table) >= 50  # classes, colours, words, tones, age, hair, props
    for unit in ("latent", "neuron", "probe"):
        ok = table[f"{unit}_auroc"].notna()
        assert (table.loc[ok, f"{unit}_ci_low"] <= table.loc[ok, f"{unit}_auroc"] + 1e-9).all()
        assert (table.loc[ok, f"{unit}_auroc"] <= table.loc[ok, f"{unit}_ci_high"] + 1e-9).all()
    # the ceiling is a ceiling: the linear probe on the whole layer recovers most factors
    assert s["linear_probe_factor_recall"] >= 0.9
    lo, hi = s["planted_factor_recall_ci"]
    assert lo <= s["planted_factor_recall"] <= hi


@pytest.mark.xfail(strict=True, reason="issue goal: SAE recall >= 0.65 on toy-rn penultimate; measured 0.589 "
                                       "[0.46, 0.71] over 56 factors on these 3000 scenes, against neurons 0.696 and "
                                       "the linear probe 0.982; colours, skin tones, age and hair have no single latent")
def test_topk_sae_recovers_most_planted_factors(trained):
    _, _, _, _, s = trained
    assert s["planted_factor_recall"] >= 0.65


def test_sae_trained_on_permuted_activations_recovers_almost_nothing(toy_rn, layer, trained):
    sae, _ = load_sae_run(FIXTURES / "permuted", model=toy_rn, layer=layer)
    _, src, _, _, _ = trained
    p = measure(toy_rn, src, layer, sae, "mean")
    latents = planted.score_units(planted.sparse_units(p.codes), planted.planted_factors(src.items, 20),
                                  sae.n_latents, 0, "latent")
    recall, _, _ = planted.recall(latents["latent_auroc"], 0.9)
    assert recall < 0.1


def _top_latents(p, items, domain, positive, n):
    codes = p.codes.tocsc()[np.flatnonzero(domain)].toarray()
    auc = np.nan_to_num(planted.auroc_columns(codes, positive[domain]), nan=0.0)
    return [int(j) for j in np.argsort(-auc)[:n]]


def _typographic(model, src):
    from clipaudit.attacks.typographic_audit import TypographicConfig, audit

    r = audit(model, src, TypographicConfig(target="pizza", n_resamples=200))
    return r.summary["attack_success_rate"], r.summary["clean_accuracy"]


def test_suppressing_written_word_latents_defends_against_the_typographic_attack(toy_rn, layer, trained):
    sae, src, p, _, _ = trained
    items = src.items
    objects = (items["kind"] == "object").to_numpy()
    latents = _top_latents(p, items, objects, (items["word"] != "").to_numpy(), 4)  # chosen on the measuring set
    attack = toy_source(300, seed=4321, kind="object", text=False)  # reported on other scenes
    base_success, base_clean = _typographic(toy_rn, attack)
    with edited(toy_rn, layer, sae, "mean", LatentEdit(tuple(latents), scale=0.0)):
        success, clean = _typographic(toy_rn, attack)
    assert base_success >= 0.8
    assert success <= 0.5 * base_success  # >= 50% relative drop
    assert clean >= base_clean - 0.02


def _ratio(model, src, attribute, group):
    from clipaudit.bias.audit import BiasConfig, audit

    d = audit(model, src, BiasConfig(probe=("denigration",), bootstrap=200, permutations=200)).tables["bias_denigration"]
    row = d[(d["attribute"] == attribute) & (d["group"].astype(str) == group)].iloc[0]
    return float(row["rate_ratio"]), float(row["ratio_ci_low"]), float(row["ratio_ci_high"])


@pytest.fixture(scope="module")
def bias_edits(toy_rn, layer, trained):
    from clipaudit.bias.datasets import open_dataset

    sae, src, p, _, _ = trained
    items = src.items
    people = (items["kind"] == "person").to_numpy()
    tone = _top_latents(p, items, people, (items["skin"] == "tone1").to_numpy(), 4)
    hair = _top_latents(p, items, people, (items["hair"] == "long").to_numpy(), 4)
    faces = open_dataset("toy", "auto", (), n=900, seed=4321)
    out = {"none": _ratio(toy_rn, faces, "skin", "tone1")}
    for name, latents in (("tone", tone), ("hair", hair)):
        with edited(toy_rn, layer, sae, "mean", LatentEdit(tuple(latents), scale=0.0)):
            out[name] = _ratio(toy_rn, faces, "skin", "tone1")
    return out


def test_suppressing_hair_latents_leaves_the_planted_tone_bias_in_place(bias_edits):
    assert bias_edits["none"][1] > 1  # the planted bias: the tone1 crime-word ratio's CI is above 1
    assert bias_edits["hair"][1] > 1  # control: editing hair leaves it there


@pytest.mark.xfail(strict=True, reason="issue goal missed on toy-rn: no latent separates skin tone (best AUROC "
                                       "0.63 among people), and suppressing the 4 most tone1-tied latents moves the "
                                       "crime-word ratio from 6.42 [4.42, 9.31] to 7.98 [5.14, 12.39], away from 1")
def test_suppressing_the_planted_tones_latents_moves_its_ratio_toward_one(bias_edits):
    ratio, lo, _ = bias_edits["tone"]
    assert ratio < bias_edits["none"][0] and lo <= 1.0
