"""toy-fare: the FARE fine-tune (clipaudit.toy.fare) and the ranking the robust-CLIP papers report."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from clipaudit.cli import main
from clipaudit.toy.fare import FareConfig, fare_loss, fine_tune, inner_attack


class _Embed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(3 * 8 * 8, 4)

    def forward(self, x):
        return self.w(x.flatten(1))


def test_fare_loss_is_the_squared_embedding_distance():
    f = _Embed()
    x = torch.rand(5, 3, 8, 8)
    target = f(x).detach()
    assert fare_loss(f, x, target).item() == pytest.approx(0.0, abs=1e-10)
    shifted = target + torch.tensor([1.0, 2.0, 0.0, 0.0])  # distance^2 = 1 + 4 = 5 for every image
    assert fare_loss(f, x, shifted).item() == pytest.approx(5.0, rel=1e-5)


def test_inner_attack_stays_in_the_ball_and_raises_the_loss():
    torch.manual_seed(0)
    f = _Embed()
    x = torch.rand(6, 3, 8, 8)
    target = f(x).detach()
    adv = inner_attack(f, lambda p: p, x, target, eps=4 / 255, steps=10, generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= 4 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    noise = (x + (torch.rand_like(x) * 2 - 1) * 4 / 255).clamp(0, 1)
    assert fare_loss(f, adv, target) > fare_loss(f, noise, target)
    # for a linear embedding the best corner along one output row k gives (eps * ||w_k||_1)^2;
    # the ascent must get at least half way to the smallest of these (a descent gets ~2% of it)
    corner = min(((4 / 255) * f.w.weight[k].abs().sum()).item() ** 2 for k in range(4))
    assert fare_loss(f, adv, target).item() >= 0.5 * corner


def test_fine_tune_is_deterministic_and_touches_only_the_image_tower(tmp_path):
    cfg = FareConfig(steps=2, batch_size=4, pgd_steps=2, seed=3)
    a = fine_tune(cfg)
    b = fine_tune(cfg)
    from clipaudit.model import load_model

    base = load_model("toy-rn", device="cpu").model.state_dict()
    sa, sb = a.state_dict(), b.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    changed = [k for k in sa if not torch.equal(sa[k], base[k])]
    assert changed and all(k.startswith("visual.") for k in changed)


@pytest.mark.parametrize("kw,needle", [({"eps": 0}, "--eps"), ({"eps": 0.5}, "--eps"), ({"steps": 0}, "steps"),
                                       ({"pgd_steps": 0}, "pgd_steps"), ({"lr": 0}, "lr")])
def test_fare_config_refuses_out_of_range(kw, needle):
    with pytest.raises(ValueError, match=needle):
        FareConfig(**kw).check()


def test_cli_fare_writes_loadable_weights(tmp_path, capsys):
    out = tmp_path / "fare"
    assert main(["toy", "train", "--fare", "--steps", "1", "--batch", "2", "--pgd-steps", "1", "--out", str(out)]) == 0
    facts = json.loads((out / "toy-fare.facts.json").read_text())
    assert facts["training"]["method"].startswith("FARE") and facts["training"]["base"] == "toy-rn"
    from clipaudit.model import load_model

    m = load_model("toy-rn", str(out / "toy-fare.safetensors"), device="cpu")
    assert m.encode_images(torch.rand(1, 3, 64, 64)).shape == (1, 128)


# ------------------------------------------------------------------- the ranking (issue 20)

@pytest.fixture(scope="module")
def robust_clip_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("robust-clip")
    runs = {}
    for name in ("toy-rn", "toy-fare"):
        out = tmp / name
        assert main(["adversarial", "--model", name, "--protocol", "robust-clip", "--n-images", "64", "--steps", "10",
                     "--n-targets", "3", "--queries", "100", "--sanity-n", "8", "--device", "cpu",
                     "--out", str(out)]) == 0
        runs[name] = out
    return runs


def test_toy_fare_ranks_above_toy_rn_at_2_and_4_over_255(robust_clip_runs):
    """The protocol reproduces the robust-CLIP papers' ordering on the model organism: the FARE
    fine-tune's worst-case robust accuracy is above toy-rn's at both budgets, CIs apart."""
    curves = {n: pd.read_csv(p / "adversarial_curve.csv").set_index("eps") for n, p in robust_clip_runs.items()}
    for eps in (2 / 255, 4 / 255):
        rn = curves["toy-rn"].loc[curves["toy-rn"].index.to_series().sub(eps).abs().idxmin()]
        fare = curves["toy-fare"].loc[curves["toy-fare"].index.to_series().sub(eps).abs().idxmin()]
        assert fare["ci_low"] > rn["ci_high"], (eps, fare.to_dict(), rn.to_dict())


def test_robust_clip_table_reports_the_clean_cost(robust_clip_runs):
    t = {n: pd.read_csv(p / "adversarial_robust_clip.csv").iloc[0] for n, p in robust_clip_runs.items()}
    for row in t.values():
        assert {"clean", "linf 2/255", "linf 4/255"} <= set(row.index)
        assert row["linf 4/255"] <= row["linf 2/255"] <= row["clean"]
    summary = json.loads((robust_clip_runs["toy-fare"] / "summary.json").read_text())["adversarial"]
    assert summary["protocol"] == "robust-clip" and summary["eps_sweep"] == pytest.approx([2 / 255, 4 / 255])
    assert summary["n_images"] == 64
