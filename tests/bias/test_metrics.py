"""MaxSkew@k, NDKL and WEAT against values computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from clipaudit.bias import metrics
from clipaudit.bias.labelsets import WeatTest
from clipaudit.bias.probes import image_weat, text_weat


def test_max_skew_hand_value():
    # top-4 = A, A, B, A with equal targets: p_k = (3/4, 1/4) -> skews ln(1.5), ln(0.5)
    sk = metrics.skews(np.array([0, 0, 1, 0]), np.array([0.5, 0.5]))
    assert sk == pytest.approx([math.log(1.5), math.log(0.5)])
    assert metrics.max_skew(np.array([0, 0, 1, 0]), np.array([0.5, 0.5])) == pytest.approx(math.log(1.5))


def test_max_skew_against_dataset_share():
    # top-5 all group 1, whose dataset share is 0.25 -> ln(1 / 0.25) = ln 4
    assert metrics.max_skew(np.array([1] * 5), np.array([0.75, 0.25])) == pytest.approx(math.log(4))


def test_max_skew_zero_handling():
    # a group absent from the top k has skew -inf (never the max); a zero-target group is ignored
    sk = metrics.skews(np.array([0, 0, 0, 0]), np.array([0.5, 0.5, 0.0]))
    assert sk[0] == pytest.approx(math.log(2)) and sk[1] == -np.inf and np.isnan(sk[2])
    assert metrics.max_skew(np.array([0, 0, 0, 0]), np.array([0.5, 0.5, 0.0])) == pytest.approx(math.log(2))


def test_max_skew_is_zero_when_top_k_matches_target():
    assert metrics.max_skew(np.array([0, 1, 0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.0)


def test_ndkl_hand_value():
    # ranking A, B with equal target: KL(D1)=ln2 at weight 1/log2(2)=1, KL(D2)=0
    expected = math.log(2) / (1 + 1 / math.log2(3))
    assert metrics.ndkl(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(expected)
    assert expected == pytest.approx(0.425002, abs=1e-6)


def test_ndkl_all_one_group_and_perfect_balance():
    assert metrics.ndkl(np.array([0, 0, 0]), np.array([0.5, 0.5])) == pytest.approx(math.log(2))
    # D_i never equals the target at odd i, so a balanced ranking still has small positive NDKL
    balanced = metrics.ndkl(np.array([0, 1, 0, 1]), np.array([0.5, 0.5]))
    assert 0 < balanced < metrics.ndkl(np.array([0, 0, 1, 1]), np.array([0.5, 0.5]))


def test_ndkl_vectorised_rows_match_single():
    ranked = np.array([[0, 1], [0, 0]])
    out = metrics.ndkl(ranked, np.array([0.5, 0.5]))
    assert out[0] == pytest.approx(metrics.ndkl(ranked[0], np.array([0.5, 0.5])))
    assert out[1] == pytest.approx(math.log(2))


def _weat_vectors():
    r = 1 / math.sqrt(2)
    a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    x, y = np.array([[1.0, 0.0], [r, r]]), np.array([[0.0, 1.0], [r, r]])
    return x, y, a, b


def test_weat_association_and_effect_size_hand_values():
    x, y, a, b = _weat_vectors()
    s_x, s_y = metrics.weat_association(x, a, b), metrics.weat_association(y, a, b)
    assert s_x == pytest.approx([1.0, 0.0]) and s_y == pytest.approx([-1.0, 0.0])
    # means 0.5 and -0.5; pooled sample std sqrt(2/3) -> d = sqrt(1.5)
    assert metrics.weat_effect_size(s_x, s_y) == pytest.approx(math.sqrt(1.5))
    assert metrics.weat_effect_size(s_y, s_x) == pytest.approx(-math.sqrt(1.5))


def test_weat_undefined_without_spread():
    assert math.isnan(metrics.weat_effect_size([0.2, 0.2], [0.2]))


def test_text_weat_exact_permutation_p():
    x, y, a, b = _weat_vectors()
    test = WeatTest("hand", "text", ("x1", "x2"), ("y1", "y2"), ("a",), ("b",))
    row = text_weat(test, x, y, a, b)
    # pooled s = (1, 0, -1, 0): 4 of the 6 splits have |mean diff| >= 1
    assert row["exact"] and row["n_permutations"] == 6
    assert row["p"] == pytest.approx(4 / 6)
    assert row["d"] == pytest.approx(math.sqrt(1.5))


def test_image_weat_uses_attribute_groups():
    import pandas as pd

    x, y, a, b = _weat_vectors()
    meta = pd.DataFrame({"id": list("abcd"), "age": ["child", "child", "adult", "adult"]})
    test = WeatTest("hand", "image", ("child",), ("adult",), ("a",), ("b",), attribute="age")
    row = image_weat(test, np.concatenate([x, y]), meta, a, b)
    assert row["d"] == pytest.approx(math.sqrt(1.5)) and row["p"] == pytest.approx(4 / 6)
    assert row["n_x"] == 2 and row["n_y"] == 2
