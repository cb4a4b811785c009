"""What the heads audit finds in the shipped toy-vit (planted: the model reads written words).

Goals from the issue that the toy does not reach are strict xfails carrying the measured figures.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clipaudit.attacks.typographic import TextStyle
from clipaudit.data import toy_source
from clipaudit.probes.head_ablation import HeadMask, all_heads, head_means
from clipaudit.probes.heads import (TypoSet, defend_typographic, evaluate, head_sweep, random_sets_test,
                                    reading_attribution, reading_scores, typo_set)
from clipaudit.probes.textspan import default_concepts, is_colour_text, is_word_text, text_span
from clipaudit.stats import spearman
from clipaudit.toy.world import OBJECT_CLASSES

N = 64  # per split


@pytest.fixture(scope="module")
def world(toy_vit):
    head = toy_vit.classifier(list(OBJECT_CLASSES))

    def load(seed):
        b = next(toy_source(N, seed=seed, kind="object", text=False).batches(toy_vit, N))
        return typo_set(toy_vit, head, b.pixels, b.meta["label"].tolist(), "pizza", TextStyle(position="random"))

    select, report = load(1234), load(99)
    means = HeadMask(all_heads(toy_vit), "mean", head_means(toy_vit, select.clean))
    return head, select, report, means


@pytest.fixture(scope="module")
def sweep(toy_vit, world):
    head, _, report, means = world
    return head_sweep(toy_vit, head, report, means).merge(reading_attribution(toy_vit, head, report),
                                                          on=["layer", "head"])


@pytest.fixture(scope="module")
def defence(toy_vit, world):
    head, select, report, means = world
    mask, steps = defend_typographic(toy_vit, head, select, means, reading_scores(toy_vit, select), budget=0.01)
    base_select = evaluate(toy_vit, head, select).clean_accuracy.rate
    return mask, steps.assign(base_clean=base_select), evaluate(toy_vit, head, report), \
        evaluate(toy_vit, head, report, mask)


def test_reading_heads_look_at_the_drawn_word_and_not_at_the_same_place_without_it(toy_vit, world):
    _, select, _, _ = world
    scores = reading_scores(toy_vit, select)
    best = scores.sort_values("typographic_score", ascending=False).iloc[0]
    assert best["typographic_score"] >= 0.8
    assert best["typographic_score"] > 3 * best["word_token_share"]
    # control: the same tokens on the clean images (nothing written there) draw little attention
    blank = TypoSet(select.clean, select.clean, select.true_idx, select.word_tokens, select.target, select.target_idx)
    ctrl = reading_scores(toy_vit, blank).set_index(["layer", "head"]).loc[(best["layer"], best["head"])]
    assert ctrl["typographic_score"] < 0.5 * best["typographic_score"]


def test_the_head_with_the_largest_direct_reading_effect_is_the_one_whose_ablation_hurts_reading_most(sweep):
    assert sweep["direct_effect"].idxmax() == sweep["reading_effect_drop"].idxmax()


@pytest.mark.xfail(strict=True, reason="issue goal Spearman >= 0.8 missed on toy-vit: measured 0.67 here (64 report "
                                       "images), 0.56 at 128; early heads act indirectly, which direct attribution misses")
def test_direct_attribution_ranks_heads_like_single_head_ablation(sweep):
    assert spearman(sweep["direct_effect"], sweep["reading_effect_drop"]) >= 0.8


def test_defence_lowers_attack_success_on_held_out_images_within_budget_on_its_own(defence):
    mask, steps, base, defended = defence
    assert mask.heads
    kept = steps[steps["kept"]]
    assert (kept["clean_accuracy"] >= kept["base_clean"] - 0.01 - 1e-9).all()  # the budget, on the selection images
    assert (kept["attack_success_rate"].diff().dropna() < 0).all()  # each kept head lowered success
    assert defended.attack_success.rate < base.attack_success.rate - 0.3
    assert defended.attacked_accuracy.rate > base.attacked_accuracy.rate + 0.1  # measured 0.05 -> 0.25


@pytest.mark.xfail(strict=True, reason="issue goals missed on toy-vit with the renderer's note at random positions "
                                       "(success 0.95 unablated): held-out success 0.52 (goal <= 0.10), attacked "
                                       "accuracy 0.25 (goal >= 0.60), clean 0.92 (goal >= 0.95) here (64+64 images; "
                                       "0.24 / 0.39 / 0.91 at 128+128); the one head that stops reading (3.0, "
                                       "success 0.02) costs 0.04-0.07 clean accuracy, over the 0.01 budget")
def test_defence_meets_the_issue_goals(defence):
    _, _, _, defended = defence
    assert defended.attack_success.rate <= 0.10
    assert defended.clean_accuracy.rate >= 0.95
    assert defended.attacked_accuracy.rate >= 0.60


def test_random_head_sets_of_the_same_size_do_not_defend(toy_vit, world, defence):
    head, _, report, means = world
    mask = defence[0]
    p, _ = random_sets_test(toy_vit, head, report, means, mask.heads, n_sets=24)
    assert p < 0.05


def test_textspan_labels_the_reading_head_with_words_and_some_head_with_colours(toy_vit, world, sweep):
    head, select, _, _ = world
    from clipaudit.probes.decompose import decompose

    concepts = default_concepts(head.classnames)
    d = decompose(toy_vit, torch.cat([select.clean, select.attacked]))
    outs = (d.heads + d.head_extra).cpu().numpy()
    texts = toy_vit.encode_texts(concepts).double().cpu().numpy()
    reader = sweep.loc[sweep["direct_effect"].idxmax()]
    top = text_span(outs[:, int(reader["layer"]), int(reader["head"])], texts, concepts, 5)
    assert any(is_word_text(t) for t in top["text"])
    first = [text_span(outs[:, l, h], texts, concepts, 1)["text"].iloc[0] for l, h in all_heads(toy_vit)]
    assert any(is_colour_text(t) for t in first)


def test_spatial_map_of_the_reading_head_lies_on_the_written_word(toy_vit, world):
    """Issue 17 item 7: the spatial map (token contributions toward the written word's logit minus
    the true class's). For the head that reads most (highest typographic score), the positive
    contribution is concentrated on the patches where the renderer drew the word (the planted
    location) far beyond their share of the image; a late head that does not read is the control."""
    from clipaudit.probes.heads import reading_scores, token_maps

    head, _, report, _ = world
    scores = reading_scores(toy_vit, report).sort_values("typographic_score", ascending=False)
    reader = (int(scores.iloc[0]["layer"]), int(scores.iloc[0]["head"]))
    control = (int(scores.iloc[-1]["layer"]), int(scores.iloc[-1]["head"]))  # reads least
    table_all, images = token_maps(toy_vit, head, report, [reader, control], n_images=16)
    assert len(images[reader]) == 16 and images[reader][0].size == (64, 64)
    idx = np.where(report.scored)[0][:16]
    word = report.word_tokens[idx].reshape(len(idx), 8, 8).numpy()

    def word_share(h):
        t = table_all[(table_all["layer"] == h[0]) & (table_all["head"] == h[1])]
        pos = t["contribution"].clip(lower=0).to_numpy()
        k = np.searchsorted(idx, t["image"].to_numpy())
        on = pos[word[k, t["row"].to_numpy(), t["col"].to_numpy()]].sum()
        return float(on / max(pos.sum(), 1e-12))

    share_pixels = float(word.mean())
    share, share_control = word_share(reader), word_share(control)
    print(f"word share of positive contribution: reader {reader} {share:.3f}, control {control} "
          f"{share_control:.3f}, word tokens {share_pixels:.3f}")
    assert share > 2 * share_pixels and share > 0.5 and share > share_control, (share, share_control, share_pixels)
    table = table_all[(table_all["layer"] == reader[0]) & (table_all["head"] == reader[1])]
    # the map sums to the head's whole direct contribution (tokens are an exact split)
    from clipaudit.probes.decompose import decompose, project

    d = decompose(toy_vit, report.attacked[idx[:1]], tokens=True)
    whole = project(d.heads, d, head.weights, toy_vit.logit_scale)[0, reader[0], reader[1]]
    true = int(report.true_idx[idx[0]])
    per_image = table[table["image"] == int(idx[0])]["contribution"].sum()
    cls_part = project(d.tokens[:, :, :, :1], d, head.weights, toy_vit.logit_scale)[0, reader[0], reader[1], 0]
    want = (whole[report.target_idx] - whole[true]) - (cls_part[report.target_idx] - cls_part[true])
    assert per_image == pytest.approx(float(want), rel=1e-4, abs=1e-6)
