"""clipaudit.diff: paired differences find a planted change, report none where none was planted,
and refuse runs on different inputs."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from tests.fixtures.synthetic_runs import SyntheticModel, adversarial_result, neurons_result, typographic_result
from clipaudit.diff import DIFF_COLUMNS, diff_runs
from clipaudit.errors import ClipauditError
from clipaudit.result import Result
from clipaudit.runs import RunFolder


def _save(root, name, result):
    run = RunFolder.create(result.section, out=root / name, model=SyntheticModel(), seed=0, argv=[result.section])
    with run:
        result.save(run)
    return run.path


def test_planted_improvement_is_found_with_ci_excluding_zero(synthetic_runs):
    df = diff_runs(synthetic_runs["typographic"], synthetic_runs["typographic_b"])
    assert list(df.columns) == DIFF_COLUMNS
    row = df.set_index("metric").loc["attack_success_rate"]
    a = pd.read_csv(synthetic_runs["typographic"] / "typographic_images.csv")
    b = pd.read_csv(synthetic_runs["typographic_b"] / "typographic_images.csv")
    a, b = a[~a["excluded"]], b[~b["excluded"]]
    assert row["a"] == pytest.approx(a["success"].mean())
    assert row["b"] == pytest.approx(b["success"].mean())
    assert row["difference"] == pytest.approx(row["b"] - row["a"])
    assert row["n_pairs"] == len(a)
    assert row["ci_low"] > 0  # strength 0.4 -> 0.8 was planted
    assert row["ci_low"] <= row["difference"] <= row["ci_high"]
    assert bool(row["paired"])


def test_same_run_twice_gives_zero_difference(synthetic_runs, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(synthetic_runs["typographic"], copy)
    df = diff_runs(synthetic_runs["typographic"], copy)
    assert np.allclose(df["difference"], 0) and np.allclose(df["ci_low"], 0) and np.allclose(df["ci_high"], 0)


def test_no_planted_difference_ci_covers_zero(tmp_path):
    a = _save(tmp_path, "a", typographic_result(seed=1, strength=0.6))
    b = _save(tmp_path, "b", typographic_result(seed=2, strength=0.6))
    row = diff_runs(a, b).set_index("metric").loc["attack_success_rate"]
    assert row["ci_low"] < 0 < row["ci_high"]


def test_different_image_ids_are_refused(synthetic_runs):
    with pytest.raises(ClipauditError, match="not on the same inputs.*0 shared"):
        diff_runs(synthetic_runs["typographic"], synthetic_runs["typographic_other"])


def test_partly_overlapping_ids_are_refused_not_silently_intersected(tmp_path):
    a = _save(tmp_path, "a", typographic_result(n_images=40))
    b = _save(tmp_path, "b", typographic_result(n_images=40, id_offset=10))
    with pytest.raises(ClipauditError, match="30 shared"):
        diff_runs(a, b)


def test_runs_of_different_audits_are_refused(synthetic_runs):
    with pytest.raises(ClipauditError, match="share no audit"):
        diff_runs(synthetic_runs["typographic"], synthetic_runs["adversarial"])
    with pytest.raises(ClipauditError, match="unknown audit 'typo'"):
        diff_runs(synthetic_runs["typographic"], synthetic_runs["typographic_b"], audit="typo")


def test_adversarial_pairs_on_id(tmp_path):
    a = _save(tmp_path, "a", adversarial_result(seed=0))
    b = _save(tmp_path, "b", adversarial_result(seed=0))
    df = diff_runs(a, b, audit="adversarial").set_index("metric")
    assert set(df.index) == {"clean_accuracy", "robust_accuracy", "attack_success_rate"}
    assert np.allclose(df["difference"], 0)


def test_neurons_pair_by_index_and_refuse_other_layer(tmp_path):
    a = _save(tmp_path, "a", neurons_result(n_neurons=30, seed=0))
    res = neurons_result(n_neurons=30, seed=0)
    res.tables["neurons"]["is_multimodal"] = True  # every neuron multimodal in B
    b = _save(tmp_path, "b", res)
    row = diff_runs(a, b, audit="neurons").set_index("metric").loc["multimodal_share"]
    assert row["a"] == pytest.approx(5 / 30) and row["b"] == 1.0 and row["ci_low"] > 0
    other = neurons_result(n_neurons=30, seed=0)
    other.summary["layer"] = "block:0"
    c = _save(tmp_path, "c", other)
    with pytest.raises(ClipauditError, match="layer penultimate vs block:0"):
        diff_runs(a, c)


def test_bias_per_image_table_is_paired_and_group_table_is_not(tmp_path, synthetic_runs):
    ids = [f"p{i}" for i in range(80)]
    base = pd.DataFrame({"id": ids, "skin": ["tone1"] * 40 + ["tone0"] * 40, "harmful": [0] * 80})
    worse = base.assign(harmful=[1] * 30 + [0] * 50)
    a = _save(tmp_path, "a", Result("bias", {"bias_predictions": base}, {}, {"n_images": 80}))
    b = _save(tmp_path, "b", Result("bias", {"bias_predictions": worse}, {}, {"n_images": 80}))
    row = diff_runs(a, b).set_index("metric").loc["harmful_rate"]
    assert row["difference"] == pytest.approx(30 / 80) and row["ci_low"] > 0 and bool(row["paired"])
    grouped = diff_runs(synthetic_runs["bias"], synthetic_runs["bias"])
    assert not grouped["paired"].any() and np.allclose(grouped["difference"], 0)
    assert "harmful_rate[skin=tone1]" in set(grouped["metric"])


def test_an_incomparable_audit_is_left_out_and_the_others_compared(tmp_path, capsys):
    """toy-rn vs toy-vit full audits: the neurons differ (other layer width) but the images agree."""
    from clipaudit.cli import main
    from clipaudit.dashboard.data import RunStore
    from clipaudit.dashboard.page_compare import layout
    from clipaudit.diff import left_out

    from .helpers import text

    def full(name, n_neurons, strength, model):
        run = RunFolder.create("audit", out=tmp_path / name, model=model, seed=0, argv=["audit"])
        for res in (neurons_result(n_neurons=n_neurons, seed=0), typographic_result(seed=0, strength=strength)):
            res.save(run)
        run.finish()
        return tmp_path / name

    a = full("rn", 30, 0.4, SyntheticModel(weights_hash="rn"))
    b = full("vit", 24, 0.8, SyntheticModel(weights_hash="vit"))
    df = diff_runs(a, b)
    assert set(df["audit"]) == {"typographic"}
    why = left_out(df)
    assert list(why) == ["neurons"] and "30 vs 24 neurons" in why["neurons"]
    assert "--layer, --images, --n-images and --seed" in why["neurons"] and "--data" not in why["neurons"]
    with pytest.raises(ClipauditError, match="30 vs 24 neurons"):
        diff_runs(a, b, audit="neurons")
    assert main(["diff", str(a), str(b), "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert "attack_success_rate" in out and "left out: neurons: runs rn and vit are not on the same inputs (neurons: 30 vs 24 neurons" in out
    store = RunStore(tmp_path)
    page = layout(store, store.get("rn"), store.get("vit"))
    assert "Left out neurons" in text(page) and "attack_success_rate" in str(page)
