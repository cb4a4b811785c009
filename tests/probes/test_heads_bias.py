"""Bias localisation on toy-vit: the planted skin-tone skew is carried by heads; the hair cue
(counterfactual twins: same person, short vs long hair) is not."""
from __future__ import annotations

import numpy as np
import pytest

from clipaudit.errors import ClipauditError
from clipaudit.probes.heads import bias_heads
from clipaudit.toy.world import World, WorldConfig, scenes_to_pixels

LABELS = ["person", "child", "doctor", "chef", "nurse", "athlete", "criminal"]  # as in toy validation
N = 96


@pytest.fixture(scope="module")
def twins():
    world = World(WorldConfig(vary_hair_colour=True), seed=4321)  # toy-vit's own world (MODEL_CARD)
    short = [world.scene(i, "person", hair="short", role="") for i in range(N)]
    long_ = [world.scene(i, "person", hair="long", role="") for i in range(N)]
    return short, long_


def test_planted_skin_tone_is_flagged_in_some_head(toy_vit, twins):
    short, _ = twins
    tone1 = np.array([s.skin == 1 for s in short])
    df = bias_heads(toy_vit, scenes_to_pixels(short), tone1, LABELS, "criminal", n_resamples=1000)
    total = df[df["layer"] == -1].iloc[0]
    assert total["flagged"] and total["gap"] > 0
    assert df[(df["layer"] >= 0) & df["flagged"] & (df["gap"] > 0)].shape[0] >= 1


@pytest.fixture(scope="module")
def hair(toy_vit, twins):
    short, long_ = twins
    is_long = np.array([False] * N + [True] * N)
    return bias_heads(toy_vit, scenes_to_pixels(short + long_), is_long, LABELS, "criminal", n_resamples=1000)


def test_hair_control_is_not_flagged(hair):
    total = hair[hair["layer"] == -1].iloc[0]
    assert total["ci_low"] <= 0 <= total["ci_high"] and not total["flagged"]


@pytest.mark.xfail(strict=True, reason="measured on 96 twin pairs: heads 3.2 and 3.3 are flagged one by one for the "
                                       "hair cue (they see the hair), while their sum over all heads is not")
def test_no_single_head_is_flagged_for_hair(hair):
    assert not hair[hair["layer"] >= 0]["flagged"].any()


def test_bad_label_set_is_refused(toy_vit, twins):
    with pytest.raises(ClipauditError, match="not in the label set"):
        bias_heads(toy_vit, scenes_to_pixels(twins[0][:4]), np.array([1, 0, 1, 0], bool), LABELS, "thief")
