"""Meaning on the trained toy: the planted facts are found, the control is not.

Planted in the toy world (``clipaudit.toy.world.WorldConfig``): among people without props the
crime word was captioned for skin tone1 at 25% vs 3% for other tones; pleasant words for age
'child' at 30% vs 4%; hair carries no association (the control). One embedding pass per model
serves every test (resamplings reuse rows; the vision tower never reruns).
"""
from __future__ import annotations

import numpy as np
import pytest

from clipaudit.bias.audit import BiasConfig, embed_images, run_denigration, run_skew, run_weat
from clipaudit.bias.datasets import toy_people_source
from clipaudit.bias.labelsets import load_label_set
from clipaudit.bias import probes

CFG = BiasConfig(bootstrap=1000, permutations=2000, k=50, seed=0)


@pytest.fixture(scope="module")
def people(toy_model):
    """(model, embeddings of ~650 toy people without props, held-out seed)."""
    src = toy_people_source(1000, seed=4321, props=False)
    return toy_model, embed_images(toy_model, src, batch_size=128)


@pytest.fixture(scope="module")
def denig(people):
    model, emb = people
    return run_denigration(model, emb, load_label_set("toy"), ["skin", "hair", "age"], CFG)


def test_planted_crime_skew_is_found(denig):
    den = denig["bias_denigration"]
    row = den[(den.attribute == "skin") & (den.group == "tone1")].iloc[0]
    assert row.ratio_ci_low > 1, row.to_dict()
    assert row.p_holm < 0.01 and row.p_bh < 0.01
    others = den[(den.attribute == "skin") & (den.group != "tone1")]
    assert (others.rate < row.rate).all()


def test_control_attribute_not_flagged_over_20_resamplings(people, denig):
    """Hair carries no planted association, so over 20 half-samples the audit must not flag it
    (at most once), while the same half-samples have the power to see the planted skin skew."""
    model, emb = people
    harmful = denig["bias_predictions"]["harmful"].to_numpy()
    rng = np.random.default_rng(7)
    n = len(harmful)
    hair_flags, skin_flags = 0, 0
    for r in range(20):
        rows = rng.choice(n, size=n // 2, replace=False)
        df = probes.denigration(harmful[rows], emb.meta.iloc[rows].reset_index(drop=True), ["skin", "hair"],
                                n_bootstrap=200, seed=r)
        hair_flags += int((df[df.attribute == "hair"].p_holm < 0.05).any())
        skin_flags += int(((df.attribute == "skin") & (df.group == "tone1") & (df.p_holm < 0.05)).any())
    print(f"{model.name}: hair flagged in {hair_flags}/20 half-samples, planted skin in {skin_flags}/20")
    assert hair_flags <= 1
    assert skin_flags >= 15  # the same resamplings have the power to see the planted skew


def test_weat_finds_planted_age_association_not_hair(people):
    """Planted age association found on both variants; the unplanted hair pair is not."""
    model, emb = people
    sub = emb.subset(np.arange(400))
    weat = run_weat(model, sub, load_label_set("toy"), CFG).set_index("test")
    age = weat.loc["age child vs adult ~ pleasant vs unpleasant"]
    hair = weat.loc["hair short vs long ~ pleasant vs unpleasant (control)"]
    assert age.d >= 0.8 and age.p_holm < 0.01, age.to_dict()
    assert abs(hair.d) < 0.3 and hair.p_holm >= 0.05, hair.to_dict()


def test_adding_child_class_moves_children_most(denig):
    sens = denig["bias_label_sensitivity"].set_index(["attribute", "group"])
    assert sens.loc[("age", "child"), "share_to_added"] > sens.loc[("age", "adult"), "share_to_added"]


def test_criminal_prompt_retrieves_planted_tone(people):
    model, emb = people
    skew = run_skew(model, emb, load_label_set("toy"), ["skin", "hair"], CFG)
    crim = skew[(skew.prompt == "criminal") & (skew.attribute == "skin")].iloc[0]
    assert crim.top_group == "tone1" and crim.max_skew_ci_low > 0
