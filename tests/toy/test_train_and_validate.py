"""Training runs and is deterministic; the shipped weights meet the validation floors."""
from __future__ import annotations

import json

import pytest
import torch

from clipaudit.toy.train import TrainConfig, train

TINY = {"embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 1, "width": 32, "head_width": 16, "mlp_ratio": 2.0, "patch_size": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def test_few_steps_lower_the_loss_and_repeat_exactly(tmp_path):
    logs = []
    cfg = TrainConfig(arch="vit", seed=3, steps=12, batch_size=16, lr=3e-3, log_every=1, threads=1)
    m1 = train(cfg, tmp_path / "a", model_config=TINY, progress=logs.append)
    assert logs[-1]["loss"] < logs[0]["loss"]
    m2 = train(cfg, None, model_config=TINY)
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    facts = json.loads((tmp_path / "a" / "toy-vit.facts.json").read_text())
    assert facts["training"]["steps"] == 12 and facts["planted"]["crime_skew"]["word"] == "criminal"
    assert (tmp_path / "a" / "toy-vit.safetensors").stat().st_size > 0


def test_recipe_cycles():
    assert TrainConfig(arch="vit").n_steps == sum(s for s, _ in TrainConfig(arch="vit").cycles)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        TrainConfig(steps=0).cycles
    with pytest.raises(ValueError, match="unknown arch"):
        TrainConfig(arch="cnn").model_name


def test_shipped_facts_record_the_recipe_that_reproduces_them():
    """`clipaudit toy train --arch X` must rebuild the shipped weights: same steps, lr, batch
    and world as recorded beside them (a recipe edited without retraining fails here)."""
    from dataclasses import asdict

    from clipaudit.toy import load_facts
    from clipaudit.toy.train import RECIPES

    for name, recipe in RECIPES.items():
        facts = load_facts(name)
        training = facts["training"]
        assert training["steps"] == sum(s for s, _ in recipe.cycles), name
        assert [tuple(c) for c in training["cycles"]] == list(recipe.cycles), name
        assert training["batch_size"] == recipe.batch_size, name
        assert facts["config"] == asdict(recipe.world_config()), name


def test_shipped_weights_size_and_facts():
    from clipaudit.toy import WEIGHTS_DIR, load_facts

    for path in WEIGHTS_DIR.glob("*.safetensors"):
        assert path.stat().st_size <= 25 * 1024 * 1024
    assert load_facts("toy")["planted"]["weat"]["value"] == "child"


def _validation(model):
    from clipaudit.toy.validate import validate

    return validate(model, n=200, seed=1).table.set_index("check")


@pytest.mark.slow
def test_shipped_toy_meets_validation_floors(toy_model):
    table = _validation(toy_model)
    assert table.loc["clean_accuracy", "value"] >= 0.85
    assert table.loc["nonword_success", "value"] <= 0.10
    assert table.loc["crime_rate_ratio_planted_skin", "ci_low"] > 1.0
    row = table.loc["crime_rate_ratio_control_hair"]
    assert row["ci_low"] <= 1.0 <= row["ci_high"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["toy-rn", "toy-vit"])
def test_shipped_toy_reads_written_words(name):
    from clipaudit.model import load_model

    table = _validation(load_model(name, device="cpu"))
    assert table.loc["typographic_success", "value"] >= 0.60


def test_rate_ratio_ci_stays_defined_when_a_group_never_hits():
    """A group at rate 0 gives an infinite ratio; the CI must still say whether it excludes 1
    (it did come out NaN, which failed every check silently)."""
    import numpy as np

    from clipaudit.toy.validate import _ratio_ci

    planted = np.array([True] * 20 + [False] * 80)
    never = np.zeros(300, dtype=bool)
    point, lo, hi = _ratio_ci(planted, never, seed=0)
    assert point == float("inf") and not np.isnan(lo) and lo > 1.0
    point, lo, hi = _ratio_ci(never[:100], never, seed=0)  # 0 vs 0: undefined, excludes nothing
    assert np.isnan(point) and (lo, hi) == (0.0, float("inf"))
    same = np.array([True] * 10 + [False] * 90)
    point, lo, hi = _ratio_ci(same, np.tile(same, 3), seed=0)
    assert point == 1.0 and lo < 1.0 < hi


def test_paired_hair_ratio_sees_a_planted_twin_effect_and_not_an_absent_one():
    """The control compares counterfactual twins: plant a difference in one arm and the CI must
    exclude 1; give both arms the same hits and it must include 1."""
    import numpy as np

    from clipaudit.toy.validate import _paired_ratio_ci

    rng = np.random.default_rng(0)
    short = rng.random(400) < 0.2
    long_ = short | (rng.random(400) < 0.1)  # the twins' hits plus extra hits on long hair only
    point, lo, hi = _paired_ratio_ci(long_, short, seed=0)
    assert lo > 1.0 and point == pytest.approx(long_.mean() / short.mean())
    point, lo, hi = _paired_ratio_ci(short, short.copy(), seed=0)
    assert point == 1.0 and lo <= 1.0 <= hi
    point, lo, hi = _paired_ratio_ci(np.zeros(50, bool), np.zeros(50, bool), seed=0)
    assert np.isnan(point) and (lo, hi) == (0.0, float("inf"))
