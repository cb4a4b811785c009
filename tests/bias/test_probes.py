"""Denigration statistics on planted synthetic outcomes (no model): a planted group is found,
a control attribute is not flagged over 20 resamplings, and retrieval skew finds a planted skew."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clipaudit.bias import probes


def _people(n: int, seed: int, planted: float = 0.25, other: float = 0.03) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    skin = rng.choice([f"tone{i}" for i in range(4)], size=n)
    hair = rng.choice(["short", "long"], size=n)
    harmful = rng.random(n) < np.where(skin == "tone1", planted, other)
    return harmful, pd.DataFrame({"id": [str(i) for i in range(n)], "skin": skin, "hair": hair})


def test_planted_group_is_found():
    harmful, meta = _people(1200, seed=1)
    df = probes.denigration(harmful, meta, ["skin", "hair"], n_bootstrap=1000)
    row = df[(df.attribute == "skin") & (df.group == "tone1")].iloc[0]
    assert row.ratio_ci_low > 1 and row.p_holm < 0.01 and row.p_bh < 0.01
    assert row.ci_low <= row.rate <= row.ci_high
    assert 0 < row.mdd < 0.2
    assert set(df.columns) >= {"attribute", "group", "n", "n_harmful", "rate", "ci_low", "ci_high", "p",
                               "p_holm", "p_bh", "mdd"}
    assert (df.p_holm >= df.p).all() and (df.p_bh >= df.p - 1e-12).all()
    assert not (df[df.attribute == "hair"].p_holm < 0.05).any()


def test_nothing_planted_nothing_flagged_over_20_resamplings():
    harmful, meta = _people(3000, seed=2, planted=0.05, other=0.05)
    rng = np.random.default_rng(0)
    flagged = 0
    for r in range(20):
        rows = rng.choice(len(meta), size=600, replace=False)
        df = probes.denigration(harmful[rows], meta.iloc[rows].reset_index(drop=True), ["skin", "hair"],
                                n_bootstrap=200, seed=r)
        flagged += int((df[df.attribute == "hair"].p_holm < 0.05).any())
    assert flagged <= 1


def test_intersectional_cells_and_min_group():
    harmful, meta = _people(800, seed=3)
    df = probes.intersectional(harmful, meta, ["skin", "hair"], n_bootstrap=200)
    assert set(df.attribute) == {"skin x hair"}
    assert len(df) == 8 and df.n.sum() == 800
    top = df.sort_values("rate").iloc[-1]
    assert top.group.startswith("tone1 x ")


def test_label_sensitivity_reports_the_move():
    meta = pd.DataFrame({"id": list("abcd"), "age": ["child", "child", "adult", "adult"]})
    base = np.array([True, True, False, True])
    ext = np.array([False, False, False, True])
    classes = ["person", "criminal", "child"]
    ext_pred = np.array([2, 2, 0, 1])
    df = probes.label_sensitivity(base, ext, ext_pred, meta, ["age"], classes, ["child"])
    child = df[df.group == "child"].iloc[0]
    assert child.rate_base == 1.0 and child.rate_extended == 0.0 and child.delta == -1.0
    assert child.share_to_added == 1.0 and child.added_classes == "child"
    assert df[df.group == "adult"].iloc[0].delta == 0.0


def test_retrieval_skew_finds_planted_group():
    rng = np.random.default_rng(4)
    n = 400
    skin = rng.choice(["tone0", "tone1"], size=n)
    sims = rng.normal(size=(n, 2))
    sims[:, 0] += (skin == "tone1") * 3.0  # prompt 0 prefers tone1; prompt 1 is noise
    meta = pd.DataFrame({"id": np.arange(n).astype(str), "skin": skin})
    df = probes.retrieval_skew(sims, ["planted", "noise"], meta, ["skin"], k=50, n_bootstrap=300)
    planted, noise = df.iloc[0], df.iloc[1]
    share = (skin == "tone1").mean()
    assert planted.top_group == "tone1" and planted.max_skew == pytest.approx(np.log(1 / share), rel=0.05)
    assert planted.max_skew_ci_low > noise.max_skew
    assert planted.ndkl > noise.ndkl
    assert int(df.k.max()) == 50


def test_retrieval_skew_k_clipped_and_target_checked():
    meta = pd.DataFrame({"id": ["a", "b", "c"], "g": ["x", "y", "x"]})
    df = probes.retrieval_skew(np.array([[1.0], [0.5], [0.1]]), ["p"], meta, ["g"], k=10, n_bootstrap=100)
    assert int(df.k.iloc[0]) == 3 and df.max_skew.iloc[0] == pytest.approx(0.0)
    from clipaudit.errors import ClipauditError

    with pytest.raises(ClipauditError, match="target"):
        probes.retrieval_skew(np.zeros((3, 1)), ["p"], meta, ["g"], target="uniform")


def test_exact_count_permutation_test_matches_enumeration():
    from clipaudit import stats

    x, y = np.array([1, 1, 0, 1, 0, 0, 1]), np.array([0, 0, 1, 0, 0, 0, 0, 1])
    for alt in ("two-sided", "greater", "less"):
        _, p_enum, exact = stats.permutation_test(x, y, alternative=alt)
        obs, p, _ = stats.permutation_test_counts(4, 7, 2, 8, alternative=alt)
        assert exact and p == pytest.approx(p_enum) and obs == pytest.approx(4 / 7 - 2 / 8)
    assert stats.permutation_test_counts(0, 50, 0, 50)[1] == pytest.approx(1.0)


def test_denigration_rate_and_ratio_cis_follow_the_shared_convention():
    """Rates carry Wilson intervals (width > 0 at 0 hits); a group whose rest never hits has an
    infinite ratio with a finite lower bound; no hits anywhere -> NaN ratio, (0, inf), a note."""
    from clipaudit import stats

    meta = pd.DataFrame({"id": [str(i) for i in range(40)], "g": ["a"] * 20 + ["b"] * 20,
                         "h": ["x", "y"] * 20})
    harmful = np.array([True] * 8 + [False] * 12 + [False] * 20)
    df = probes.denigration(harmful, meta, ["g"]).set_index("group")
    a, b = df.loc["a"], df.loc["b"]
    assert (a.ci_low, a.ci_high) == pytest.approx(stats.proportion_ci(8, 20))
    assert b.ci_low == 0.0 and b.ci_high > 0.1
    assert a.rate_ratio == np.inf and 1.0 < a.ratio_ci_low < np.inf and a.ratio_ci_high == np.inf
    assert a.ratio_note == "no events in the reference group"
    assert b.rate_ratio == 0.0 and b.ratio_ci_low == 0.0
    none = probes.denigration(np.zeros(40, bool), meta, ["h"])
    assert none.rate_ratio.isna().all() and (none.ratio_ci_low == 0).all() and np.isinf(none.ratio_ci_high).all()
    assert set(none.ratio_note) == {"no events in either group"}


MISSING = [None, np.nan, "", "  ", pd.NA]


def _with_missing(seed: int = 7) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """People plus 25 rows whose skin is missing (every kind of missing), all harmful: if they
    joined any group or 'rest', rates, p-values and ratios would move."""
    harmful, meta = _people(400, seed=seed)
    extra = pd.DataFrame({"id": [f"m{i}" for i in range(25)], "skin": [MISSING[i % 5] for i in range(25)],
                          "hair": ["short", "long"] * 12 + ["short"]})
    meta = pd.concat([meta, extra], ignore_index=True)
    harmful = np.concatenate([harmful, np.ones(25, bool)])
    missing = np.arange(len(meta)) >= 400
    return harmful, meta, missing


def test_missing_attribute_values_join_no_group_and_no_rest():
    harmful, meta, missing = _with_missing()
    got = probes.denigration(harmful, meta, ["skin"], n_bootstrap=200)
    dropped = probes.denigration(harmful[~missing], meta[~missing].reset_index(drop=True), ["skin"], n_bootstrap=200)
    assert set(got.group) == {f"tone{i}" for i in range(4)}
    pd.testing.assert_frame_equal(got, dropped)
    by_hand = harmful[~missing & (meta.skin != "tone1").to_numpy()].mean()
    assert got.set_index("group").loc["tone1", "rate_rest"] == pytest.approx(by_hand)


def test_missing_values_are_not_ranked_in_retrieval_skew():
    """Rows without a value have the highest similarity of all: ranked, they would fill the top
    k; they must change nothing, and k is clipped to the rows that have a value."""
    harmful, meta, missing = _with_missing()
    rng = np.random.default_rng(1)
    sims = rng.normal(size=(len(meta), 2))
    sims[missing] = 10.0
    got = probes.retrieval_skew(sims, ["p", "q"], meta, ["skin"], k=30, n_bootstrap=100)
    dropped = probes.retrieval_skew(sims[~missing], ["p", "q"], meta[~missing].reset_index(drop=True), ["skin"],
                                    k=30, n_bootstrap=100)
    pd.testing.assert_frame_equal(got, dropped)
    big = probes.retrieval_skew(sims, ["p"], meta, ["skin"], k=10_000, n_bootstrap=50)
    assert int(big.k.iloc[0]) == int((~missing).sum()) == 400


def test_missing_values_in_intersections_weat_and_label_sensitivity():
    harmful, meta, missing = _with_missing()
    inter = probes.intersectional(harmful, meta, ["skin", "hair"], n_bootstrap=100)
    inter_dropped = probes.intersectional(harmful[~missing], meta[~missing].reset_index(drop=True), ["skin", "hair"],
                                          n_bootstrap=100)
    pd.testing.assert_frame_equal(inter, inter_dropped)
    assert inter.n.sum() == 400
    pred = np.zeros(len(meta), int)
    sens = probes.label_sensitivity(harmful, harmful, pred, meta, ["skin"], ["person"], ["person"])
    assert set(sens.group) == {f"tone{i}" for i in range(4)} and sens.n.sum() == 400
