"""Measurement: the statistics are right when nothing is planted (tiny random-init models),
and on the trained toy the attack works, scales with the dose, and a non-word does nothing."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clipaudit.attacks.typographic_audit import TypographicConfig, audit, parse_sweep
from clipaudit.data import toy_source
from clipaudit.errors import ClipauditError
from clipaudit.runs import RunFolder, open_run


def _clean(n: int, **force):
    return toy_source(n=n, seed=4321, kind="object", text=False, **force)


# ------------------------------------------------------------------- plumbing (random init)

def test_invisible_text_changes_nothing(tiny_model):
    """Opacity 0 plants nothing: no flips, no probability shift, success = clean target rate."""
    src = _clean(24)
    res = audit(tiny_model, src, TypographicConfig(target="pizza", opacity=0.0, n_resamples=200, examples=1))
    s, imgs = res.summary, res.tables["typographic_images"]
    assert s["flip_rate"] == 0.0 and s["true_prob_drop"] == pytest.approx(0, abs=1e-6)
    assert s["target_prob_rise"] == pytest.approx(0, abs=1e-6)
    inc = imgs[~imgs["excluded"]]
    assert s["attack_success_rate"] == pytest.approx(float((inc["pred_clean"] == "pizza").mean()))
    # images whose true class is the target are left out of every rate
    assert s["n_excluded"] == int((src.items["label"] == "pizza").sum())
    assert s["n_images"] + s["n_excluded"] == 24
    lo, hi = s["attack_success_ci"]
    assert lo <= s["attack_success_rate"] <= hi


def test_target_added_and_tables_follow_the_contract(tiny_vit, tmp_path):
    cls = tmp_path / "classes.txt"
    cls.write_text("apple\nbanana\ncup\n")
    src = _clean(12)
    run = RunFolder.create("typographic", tmp_path / "run", model=tiny_vit, seed=0)
    with run:
        res = audit(tiny_vit, src, TypographicConfig(target="ipod", classes=str(cls), n_resamples=100,
                                                     sweep=["size=6,12", "opacity=0.5,1"]), run=run)
    assert res.summary["target_added"] is True and res.summary["classes"] == 4
    view = open_run(run.path)
    s = view.summary["typographic"]
    for key in ("target", "n_images", "n_excluded", "attack_success_rate", "attack_success_ci", "flip_rate",
                "flip_rate_ci", "true_prob_drop", "target_prob_rise", "target_added", "final_text_size",
                "clean_accuracy"):
        assert key in s
    images = view.table("typographic_images")
    assert {"id", "true_class", "pred_clean", "pred_attacked", "p_true_clean", "p_true_attacked",
            "p_target_clean", "p_target_attacked", "success", "flipped", "excluded"} <= set(images.columns)
    sweep = view.table("typographic_sweep")
    assert len(sweep) == 4 and {"size", "opacity", "text_area", "n", "attack_success_rate", "ci_low",
                                "ci_high"} <= set(sweep.columns)
    assert sweep.groupby("size")["text_area"].mean().is_monotonic_increasing
    assert {"typographic_examples.png", "typographic_dose.png"} <= {p.name for p in view.images()}


def test_parse_sweep_errors():
    assert parse_sweep(["size=6,9", "opacity=0.5,1", "position=top,random"]) == [
        ("size", [6, 9]), ("opacity", [0.5, 1.0]), ("position", ["top", "random"])]
    with pytest.raises(ClipauditError, match="unknown sweep key 'sise'.*did you mean: size"):
        parse_sweep(["sise=6,9"])
    with pytest.raises(ClipauditError, match="not a number"):
        parse_sweep(["opacity=high"])
    with pytest.raises(ClipauditError, match="KEY=V1,V2"):
        parse_sweep(["size"])


# ------------------------------------------------------------------- meaning (trained toy)

@pytest.fixture
def reading_toy(toy_model):
    """The trained toy; both variants read the world's written words (validation typographic
    success: toy-rn 0.945, toy-vit 0.710)."""
    return toy_model

def test_default_attack_succeeds_on_the_toy(reading_toy):
    s = audit(reading_toy, _clean(60), TypographicConfig(target="pizza", n_resamples=500)).summary
    assert s["attack_success_rate"] >= 0.60, s
    assert s["clean_accuracy"] > 0.5  # the clean scenes are read as what they picture
    assert s["target_prob_rise"] > 0.3


def _nonword(target: str, seed: int = 0) -> str:
    """A seeded random non-word sharing no letter with the target (so it spells no near-miss:
    the toy reads letter shapes, and e.g. 'qxvzk' pushes it toward 'pizza' through the z)."""
    letters = [c for c in "bcdfghjklmnpqrstvwxyz" + "aeiou" if c not in target]
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(letters, size=6))


def test_random_nonword_does_not_attack(toy_model):
    """Both variants: a non-word (the control) must not pull images to the target."""
    word = _nonword("pizza")
    s = audit(toy_model, _clean(60), TypographicConfig(target="pizza", word=word, n_resamples=500)).summary
    assert s["attack_success_rate"] <= 0.10, (word, s)


def test_success_rises_with_size_and_falls_with_opacity(reading_toy):
    """Bigger words fool more, fainter words fewer. Measured: toy-rn Spearman 1.00; toy-vit
    0.97 (success 0, 0.02, 0.96, 1.00, 1.00 at 6-14 px: it does not read 6-8 px words)."""
    from clipaudit.stats import spearman

    res = audit(reading_toy, _clean(48), TypographicConfig(target="pizza", sweep=["size=6,8,10,12,14"],
                                                          n_resamples=200, examples=0))
    sweep = res.tables["typographic_sweep"]
    assert spearman(sweep["size"], sweep["attack_success_rate"]) >= 0.8, sweep
    assert res.summary["sweep_spearman"]["text_area"] >= 0.8
    res = audit(reading_toy, _clean(48), TypographicConfig(target="pizza", sweep=["opacity=0,0.15,0.4,1"],
                                                          n_resamples=200, examples=0))
    rate = res.tables["typographic_sweep"].set_index("opacity")["attack_success_rate"]
    # falls toward opacity 0: full success when opaque, none when invisible, never rising as it fades
    assert rate[1.0] >= 0.6 and rate[0.0] <= 0.1, rate
    assert all(a <= b + 0.05 for a, b in zip(rate.to_numpy()[:-1], rate.to_numpy()[1:])), rate


def test_the_decks_apple_ipod_example(reading_toy, tmp_path):
    run = RunFolder.create("typographic", tmp_path / "ipod", model=reading_toy, seed=0)
    with run:
        res = audit(reading_toy, _clean(30, label="apple"), TypographicConfig(target="ipod", n_resamples=200), run=run)
    imgs = res.tables["typographic_images"]
    assert (imgs["pred_clean"] == "apple").mean() > 0.5
    assert res.summary["attack_success_rate"] > 0.5
    # the example figure shows apples that the written word turned into an ipod
    shown = imgs.set_index("id").loc[res.summary["example_ids"]]
    assert (shown["true_class"] == "apple").all() and (shown["pred_attacked"] == "ipod").mean() >= 0.5
    assert (run.path / "images" / "typographic_examples.png").is_file()


def test_word_search_ranks_the_target_word_first(reading_toy, tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("pizza\nbanana\nhello\nqxvzk\n")
    res = audit(reading_toy, _clean(24), TypographicConfig(target="pizza", search_words=str(words), search_n=24,
                                                        n_resamples=100, examples=0))
    table = res.tables["typographic_words"]
    overall = table[table["source_class"] == "all"].set_index("word")
    assert overall.loc["pizza", "rank"] == 1
    assert overall.loc["pizza", "mean_target_gain"] > overall.loc["qxvzk", "mean_target_gain"] + 0.2
    assert res.summary["best_words"][0] == "pizza"
    assert set(table["source_class"]) - {"all"}  # per-source-class rows too


# ------------------------------------------------------------------- the denominator

def _hand_pass():
    """8 images, classes (apple, pizza, cup), target pizza. Three are pizzas (the attack
    'succeeds' on all three: they were pizzas already); of the five others, two flip to pizza.
    By hand: success 2/5 = 0.4 (0.625 = 5/8 if the pizzas were counted); flips 2/5;
    p(true) drop over the five = (0.5 + 0 + 0.6 + 0 + 0) / 5 = 0.22."""
    from clipaudit.attacks.typographic_audit import _Pass

    true = ["pizza", "pizza", "pizza", "apple", "apple", "cup", "cup", "cup"]
    idx = {"apple": 0, "pizza": 1, "cup": 2}
    ti = np.array([idx[t] for t in true])
    attacked = np.array([1, 1, 1, 1, 0, 1, 2, 2])
    p_true_adv = np.array([0.9, 0.9, 0.9, 0.3, 0.8, 0.2, 0.8, 0.8])
    variant = {"pred": attacked, "p_true": p_true_adv, "p_target": np.where(attacked == 1, 0.7, 0.1),
               "text_area": np.full(8, 5.0), "final_size": np.full(8, 12)}
    return _Pass([str(i) for i in range(8)], pd.DataFrame({"label": true}), true, ti, ti.copy(),
                 np.full(8, 0.8), np.full(8, 0.1), [variant], [])


def test_success_leaves_target_class_images_out_of_the_denominator():
    from clipaudit.attacks.typographic_audit import _main_stage, _sweep_stage, _words_stage
    from clipaudit.attacks.typographic import TextStyle

    classes = ["apple", "pizza", "cup"]
    cfg = TypographicConfig(target="pizza", n_resamples=200)
    summary, images, by_class = _main_stage(_hand_pass(), classes, "pizza", TextStyle(), cfg)
    assert summary["n_images"] == 5 and summary["n_excluded"] == 3
    assert summary["attack_success_rate"] == pytest.approx(0.4)
    assert summary["flip_rate"] == pytest.approx(0.4)
    assert summary["true_prob_drop"] == pytest.approx(0.22)
    assert summary["attacked_accuracy"] == pytest.approx(3 / 5)
    assert set(by_class["class"]) == {"apple", "cup"}
    assert by_class.set_index("class")["attack_success_rate"].to_dict() == pytest.approx({"apple": 0.5, "cup": 1 / 3})
    sweep, _, _ = _sweep_stage(_hand_pass(), [({"size": 12}, TextStyle())], classes, "pizza", cfg)
    assert sweep.loc[0, "n"] == 5 and sweep.loc[0, "attack_success_rate"] == pytest.approx(0.4)
    words = _words_stage(_hand_pass(), ["pizza"], classes, "pizza", cfg).set_index("source_class")
    assert words.loc["all", "n"] == 5 and words.loc["all", "attack_success_rate"] == pytest.approx(0.4)
    assert "pizza" not in words.index


def _with_planted(n_other: int, n_target: int, target: str):
    """Clean toy scenes of other classes plus ``n_target`` scenes of ``target``, as one source."""
    from clipaudit.data import ImageSource

    others, planted = _clean(n_other), _clean(n_target, label=target)
    others = others.subset((others.items["label"] != target).to_numpy())
    planted.items["id"] = "t" + planted.items["id"].astype(str)
    items = pd.concat([others.items, planted.items], ignore_index=True)

    def load(row):
        src = planted if str(row["id"]).startswith("t") else others
        row = row.copy()
        row["id"] = str(row["id"]).lstrip("t")
        return src.loader(row)

    return ImageSource(items, load, "planted", workers=1)


def test_planted_target_images_are_excluded_end_to_end(reading_toy):
    """Six pizzas planted among clean scenes, and the text made invisible (opacity 0: nothing
    can flip). The trained toy calls the pizzas pizza, so counting them would turn a null
    attack into a positive one; the headline must be the rate over the others alone."""
    src = _with_planted(24, 6, "pizza")
    res = audit(reading_toy, src, TypographicConfig(target="pizza", opacity=0.0, n_resamples=100, examples=0))
    imgs, s = res.tables["typographic_images"], res.summary
    n_other = int((src.items["label"] != "pizza").sum())
    assert s["n_excluded"] == 6 and s["n_images"] == n_other
    others = imgs[imgs["true_class"] != "pizza"]
    assert s["attack_success_rate"] == pytest.approx(float((others["pred_clean"] == "pizza").mean()))
    assert (imgs.loc[imgs["true_class"] == "pizza", "pred_attacked"] == "pizza").mean() >= 0.5
    assert s["attack_success_rate"] < float(imgs["success"].mean())


# ------------------------------------------------------------------- target normalisation

def test_target_matches_an_existing_class_ignoring_case_and_spaces(tiny_rn, tmp_path):
    from clipaudit.attacks.typographic_audit import match_target, prepare

    assert match_target(" Apple ", ["apple", "banana"]) == "apple"
    assert match_target("ICE  cream", ["ice cream", "cup"]) == "ice cream"
    assert match_target("ipod", ["apple", "banana"]) == "ipod"
    cls = tmp_path / "classes.txt"
    cls.write_text("apple\nbanana\ncup\n")
    target, word, _, classes, added, *_ = prepare(tiny_rn, _clean(2), TypographicConfig(target=" Apple ",
                                                                                       classes=str(cls)))
    assert (target, word, classes, added) == ("apple", "Apple", ["apple", "banana", "cup"], [])


@pytest.mark.parametrize("typed, near", [("apples", "apple"), ("banan", "banana")])
def test_a_near_duplicate_target_stops_with_did_you_mean(typed, near):
    from clipaudit.attacks.typographic_audit import match_target

    with pytest.raises(ClipauditError, match=f"did you mean --target '{near}'"):
        match_target(typed, ["apple", "banana", "cup"])
