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


def test_weat_reports_the_one_sided_p_of_caliskan_beside_the_two_sided():
    """Pooled s = (1, 0, -1, 0): of the 6 splits, 2 reach mean difference >= 1 (one-sided 1/3,
    Caliskan et al.'s P[s(X_i, Y_i) > s(X, Y)]) and 4 reach |difference| >= 1 (two-sided 2/3)."""
    x, y, a, b = _weat_vectors()
    test = WeatTest("hand", "text", ("x1", "x2"), ("y1", "y2"), ("a",), ("b",))
    row = text_weat(test, x, y, a, b)
    assert row["p_one_sided"] == pytest.approx(1 / 3) and row["p"] == pytest.approx(2 * row["p_one_sided"])
    reverse = text_weat(test, y, x, a, b)  # d < 0: the X-to-A association is not there
    assert reverse["p_one_sided"] == pytest.approx(1.0)  # every split reaches a difference >= -1


def test_weat_one_sided_p_matches_scipy_exact_permutation():
    from scipy.stats import permutation_test

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    x, y = rng.normal(size=(5, 6)) + a.mean(0), rng.normal(size=(4, 6))
    test = WeatTest("rand", "text", tuple("abcde"), tuple("fghi"), ("a",), ("b",))
    row = text_weat(test, x, y, a, b)
    s_x, s_y = metrics.weat_association(x, a, b), metrics.weat_association(y, a, b)
    ref = permutation_test((s_x, s_y), lambda u, v, axis: u.mean(axis) - v.mean(axis), n_resamples=np.inf,
                           alternative="greater", vectorized=True)
    assert row["exact"] and row["p_one_sided"] == pytest.approx(ref.pvalue)
    # the two-sided p counts |difference| >= |observed| (not scipy's doubled smaller tail)
    two = permutation_test((s_x, s_y), lambda u, v, axis: np.abs(u.mean(axis) - v.mean(axis)), n_resamples=np.inf,
                           alternative="greater", vectorized=True)
    assert row["p"] == pytest.approx(two.pvalue, rel=1e-6)


def test_weat_table_keeps_one_sided_p_unadjusted():
    from clipaudit.bias.probes import WEAT_COLUMNS, adjust_weat

    x, y, a, b = _weat_vectors()
    test = WeatTest("hand", "text", ("x1", "x2"), ("y1", "y2"), ("a",), ("b",))
    df = adjust_weat([text_weat(test, x, y, a, b), text_weat(test, y, x, a, b)])
    assert list(df.columns) == WEAT_COLUMNS
    assert df.p_one_sided.tolist() == pytest.approx([1 / 3, 1.0])
    assert df.p_holm.tolist() == pytest.approx([1.0, 1.0])  # Holm adjusts the two-sided p: min(1, 2 * 2/3)
