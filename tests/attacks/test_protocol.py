"""``clipaudit adversarial --protocol``: worst case, masking caught, BPDA, bad flags (issue 20)."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from clipaudit.cli import main
from clipaudit.stats import proportion_ci

FAST = ["--steps", "10", "--n-targets", "2", "--queries", "150", "--sanity-n", "16", "--device", "cpu"]


def _run(tmp_path, name, *flags):
    out = tmp_path / name
    assert main(["adversarial", *flags, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())["adversarial"]
    return out, summary


# ------------------------------------------------------------------------------ bad flags

@pytest.mark.parametrize("flags,needle", [
    (["--protocol", "autoatack"], "unknown --protocol 'autoatack'"),
    (["--protocol", "autoattack", "--queries", "0"], "--queries must be >= 1"),
    (["--protocol", "robust-clip", "--eps", "8/255"], "robust-clip fixes"),
    (["--protocol", "robust-clip", "--eps-sweep", "0,1/255"], "drop --eps-sweep"),
    (["--protocol", "autoattack", "--attack", "pgd"], "drop --attack"),
    (["--protocol", "autoattack", "--target", "pizza"], "drop --target"),
    (["--protocol", "autoattack", "--norm", "l2"], "l-inf only"),
    (["--protocol", "autoattack", "--ensemble", "apgd-ce,fab"], "unknown --ensemble attack 'fab'"),
    (["--protocol", "autoattack", "--n-targets", "0"], "--n-targets must be >= 1"),
    (["--ensemble", "square"], "add --protocol"),
    (["--eot", "0"], "--eot must be >= 1"),
    (["--bpda"], "non-differentiable input stage"),
])
def test_bad_protocol_flags_are_one_line_and_exit_2(flags, needle, capsys, tmp_path):
    code = main(["adversarial", "--model", "toy-rn", "--n-images", "2", "--device", "cpu",
                 "--out", str(tmp_path / "r"), *flags])
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "r" / "summary.json").exists()


# ------------------------------------------------------------------------------ masking

@pytest.fixture(scope="module")
def masked_runs(tmp_path_factory):
    """toy-rn, toy-masked and toy-masked with BPDA under one small protocol, same images."""
    tmp = tmp_path_factory.mktemp("masking")
    common = ["--protocol", "autoattack", "--eps", "4/255", "--n-images", "48", *FAST]
    return {name: _run(tmp, name, "--model", model, *common, *extra)
            for name, model, extra in (("rn", "toy-rn", []), ("masked", "toy-masked", []),
                                       ("bpda", "toy-masked", ["--bpda"]))}


def test_masked_toy_looks_robust_to_gradients_and_is_flagged(masked_runs):
    _, s = masked_runs["masked"]
    out, _ = masked_runs["masked"]
    ens = pd.read_csv(out / "adversarial_ensemble.csv")
    after_ce = ens[ens["attack"] == "apgd-ce"]["robust_accuracy"].item()
    _, rn = masked_runs["rn"]
    assert after_ce >= rn["robust_accuracy"] + 0.5  # APGD alone calls it robust
    assert s["masking_suspected"] is True
    assert "gradients_vanish" in s["masking_flags"]


def test_undefended_toy_is_not_flagged(masked_runs):
    _, s = masked_runs["rn"]
    assert s["masking_suspected"] is False and s["masking_flags"] == []


def test_bpda_recovers_the_undefended_robust_accuracy_within_ci(masked_runs):
    _, rn = masked_runs["rn"]
    _, bpda = masked_runs["bpda"]
    assert bpda["bpda"] is True and bpda["masking_suspected"] is False
    lo, hi = bpda["robust_accuracy_ci"]
    assert lo <= rn["robust_accuracy"] <= hi
    lo, hi = rn["robust_accuracy_ci"]
    assert lo <= bpda["robust_accuracy"] <= hi


def test_protocol_run_folder_is_complete_and_consistent(masked_runs):
    out, s = masked_runs["rn"]
    images = pd.read_csv(out / "adversarial_images.csv")
    ens = pd.read_csv(out / "adversarial_ensemble.csv")
    worst = ens[ens["attack"] == "worst case"]["robust_accuracy"].item()
    assert worst == pytest.approx(images["correct_adv"].astype(bool).mean())
    assert worst == pytest.approx(s["robust_accuracy"])
    lo, hi = proportion_ci(int(images["correct_adv"].astype(bool).sum()), len(images))
    assert s["robust_accuracy_ci"] == pytest.approx([lo, hi])
    # cumulative robust accuracy never rises along the sequence, and ends at the worst case
    seq = ens[ens["attack"] != "worst case"].sort_values("stage")["robust_accuracy"].tolist()
    assert all(b <= a + 1e-12 for a, b in zip(seq, seq[1:])) and seq[-1] == pytest.approx(worst)
    # broken_by agrees with the per-attack columns
    for r in images.itertuples():
        if r.broken_by == "apgd-ce":
            assert str(r.robust_apgd_ce) == "False"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["configs"]["adversarial"]["protocol"] == "autoattack"
    assert manifest["configs"]["adversarial"]["queries"] == 150


def test_masked_model_records_its_input_stage(masked_runs):
    out, _ = masked_runs["masked"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["name"] == "toy-masked"
    assert manifest["model"]["input_stage"]["differentiable"] is False


# ------------------------------------------------------------------------------ the stage

def test_quantized_stage_has_zero_gradient_and_bpda_is_straight_through(toy_rn):
    from clipaudit.model import load_model

    masked = load_model("toy-masked", device="cpu")
    x = torch.rand(3, 3, 64, 64)
    xr = x.clone().requires_grad_(True)
    masked.encode_images(xr).sum().backward()
    assert torch.count_nonzero(xr.grad) == 0
    q = torch.round(x * 255) / 255  # what the stage feeds the tower
    with masked.bpda():
        xb = x.clone().requires_grad_(True)
        masked.encode_images(xb).sum().backward()
    xq = q.clone().requires_grad_(True)
    toy_rn.encode_images(xq).sum().backward()
    torch.testing.assert_close(xb.grad, xq.grad, rtol=1e-3, atol=1e-5)  # identity backward at q(x)
    assert masked.input_stage.bpda is False  # restored after the block


def test_dashboard_shows_the_verdict_the_broken_by_table_and_per_attack_curves(masked_runs, tmp_path):
    import shutil

    from clipaudit.dashboard.app import render_page
    from clipaudit.dashboard.data import RunStore
    from tests.dashboard.helpers import by_id, text

    for name in ("masked", "rn"):
        shutil.copytree(masked_runs[name][0], tmp_path / name)
    store = RunStore(tmp_path)
    masked = render_page(store, "/adversarial", "masked", None)
    assert "Gradient masking suspected" in text(masked) and "gradients_vanish" in text(masked)
    broken = by_id(masked, "adversarial-broken-by")
    assert broken is not None and "survived" in text(broken)
    honest = render_page(store, "/adversarial", "rn", None)
    assert "Gradient masking suspected" not in text(honest) and "no gradient-masking check flagged" in text(honest)
    assert by_id(honest, "adversarial-ensemble") is not None
