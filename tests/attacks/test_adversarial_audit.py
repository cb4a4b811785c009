"""The audit on tiny random-init CLIPs: contract tables, sanity checks (and that they catch a
masked gradient), skipped images."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from clipaudit.attacks import adversarial as adv
from clipaudit.attacks.adversarial_audit import AdversarialConfig, audit
from clipaudit.data import ImageSource, folder_source, toy_source
from clipaudit.errors import ClipauditError
from clipaudit.runs import RunFolder, open_run


def _unlabelled(n=12, seed=7):
    """Toy objects without a label column: the clean prediction is the class to keep."""
    src = toy_source(n, seed=seed, kind="object", text=False)
    return ImageSource(src.items.drop(columns=["label"]), src.loader, "custom", workers=1)


def test_audit_writes_the_contract(tiny_vit, tmp_path):
    cfg = AdversarialConfig(attack="pgd", eps=8 / 255, steps=4, eps_sweep=(0.0, 2 / 255), sanity_n=8,
                            examples=2, batch_size=8)
    run = RunFolder.create("adversarial", tmp_path / "run", model=tiny_vit, seed=0, config=cfg.record())
    with run:
        res = audit(tiny_vit, toy_source(10, seed=3, kind="object", text=False), cfg, run=run)
    view = open_run(tmp_path / "run")
    s = view.summary["adversarial"]
    for key in ("attack", "norm", "eps", "steps", "restarts", "mode", "target", "clean_accuracy",
                "robust_accuracy", "robust_accuracy_ci", "attack_success_rate", "attack_success_ci",
                "mean_norm", "max_norm", "sanity_passed"):
        assert key in s
    images = view.table("adversarial_images")
    assert {"id", "true_class", "pred_clean", "pred_adv", "correct_clean", "correct_adv", "success", "norm",
            "eps"} <= set(images.columns)
    assert len(images) == 10 and (images["norm"] <= 8 / 255 + 1e-6).all()
    curve = view.table("adversarial_curve")
    assert list(curve["eps"]) == pytest.approx([0.0, 2 / 255, 8 / 255])
    assert {"eps", "n", "clean_accuracy", "robust_accuracy", "ci_low", "ci_high", "attack_success_rate"} <= set(curve)
    assert curve["robust_accuracy"].iloc[0] == pytest.approx(curve["clean_accuracy"].iloc[0])  # eps 0
    assert {"class", "n", "clean_accuracy", "robust_accuracy", "ci_low", "ci_high"} <= set(
        view.table("adversarial_by_class").columns)
    sanity = view.table("adversarial_sanity")
    assert set(sanity["check"]) >= {"eps_zero_unchanged", "more_steps_not_weaker", "beats_random_noise",
                                    "within_eps_and_pixel_range", "robust_accuracy_falls_with_eps"}
    assert s["sanity_passed"] == bool(sanity["passed"].all())
    assert any(p.name == "adversarial_examples.png" for p in view.images())
    # robust accuracy is recomputed from the per-image table, not invented
    assert s["robust_accuracy"] == pytest.approx(images["correct_adv"].astype(bool).mean())
    assert res.summary["attack"] == "pgd"


def test_sanity_passes_for_a_real_attack_and_flags_a_masked_gradient(tiny_vit, monkeypatch):
    cfg = AdversarialConfig(attack="fgsm", eps=8 / 255, sanity_n=12, examples=0, batch_size=12)
    honest = audit(tiny_vit, _unlabelled(), cfg)
    sanity = honest.tables["adversarial_sanity"].set_index("check")["passed"]
    assert honest.summary["attack_success_rate"] > 0.2
    assert bool(sanity["beats_random_noise"]) and honest.summary["sanity_passed"]

    def masked(objective, x, idx):  # a model whose gradient is zero: the attack cannot move
        loss, logits = objective(x, idx)
        return loss.detach(), logits.detach(), torch.zeros_like(x)

    monkeypatch.setattr(adv, "_grad", masked)
    broken = audit(tiny_vit, _unlabelled(), cfg)
    sanity = broken.tables["adversarial_sanity"].set_index("check")["passed"]
    assert broken.summary["attack_success_rate"] == 0.0
    assert not bool(sanity["beats_random_noise"])
    assert broken.summary["sanity_passed"] is False


def test_target_is_added_and_success_is_targeted(tiny_vit):
    cfg = AdversarialConfig(target="submarine", attack="pgd", eps=16 / 255, steps=6, sanity_n=4, examples=0)
    res = audit(tiny_vit, toy_source(8, seed=2, kind="object", text=False), cfg)
    s = res.summary
    assert s["target"] == "submarine" and s["target_added"] and s["n_classes"] == 17
    images = res.tables["adversarial_images"]
    assert s["attack_success_rate"] == pytest.approx((images["pred_adv"] == "submarine").mean())


def test_unloadable_images_are_listed_not_fatal(tiny_vit, tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    (root / "apple").mkdir(parents=True)
    (root / "banana").mkdir()  # two class folders: a one-class head is refused
    Image.new("RGB", (64, 64), (200, 30, 30)).save(root / "apple" / "good.png")
    Image.new("RGB", (64, 64), (230, 220, 40)).save(root / "banana" / "good.png")
    (root / "apple" / "broken.png").write_bytes(b"\x89PNG not really")
    cfg = AdversarialConfig(eps=4 / 255, steps=2, sanity_n=2, examples=1, classes=None)
    run = RunFolder.create("adversarial", tmp_path / "run", model=tiny_vit)
    with run:
        res = audit(tiny_vit, folder_source(root), cfg, run=run)
    assert res.summary["n_images"] == 2 and res.summary["n_skipped"] == 1
    assert list(pd.read_csv(tmp_path / "run" / "skipped.csv")["id"]) == ["apple/broken.png"]


def test_all_images_unloadable_is_a_clear_error(tiny_vit, tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"nope")
    with pytest.raises(ClipauditError, match="no image could be loaded"):
        audit(tiny_vit, folder_source(root), AdversarialConfig(classes=None, steps=1))


def test_non_fp32_model_is_refused(tiny_vit):
    import dataclasses

    half = dataclasses.replace(tiny_vit, precision="fp16")
    with pytest.raises(ClipauditError, match="fp32"):
        audit(half, toy_source(2), AdversarialConfig())


# ------------------------------------------------------------------- config consistency

def test_fgsm_records_one_step_and_refuses_more():
    assert AdversarialConfig(attack="fgsm").steps == 1 and AdversarialConfig(attack="fgsm").record()["steps"] == 1
    assert AdversarialConfig(attack="pgd").steps == 10
    with pytest.raises(ClipauditError, match="FGSM takes exactly one step"):
        AdversarialConfig(attack="fgsm", steps=5).validate()
    with pytest.raises(ClipauditError, match="FGSM takes exactly one step"):
        AdversarialConfig(attack="fgsm", restarts=3).validate()


@pytest.mark.parametrize("attack, eps, step, sweep, ok", [
    ("pgd", 4 / 255, 4 / 255, (), True),          # a step of exactly eps is allowed
    ("pgd", 4 / 255, 5 / 255, (), False),         # above eps
    ("pgd", 4 / 255, 2.0, (), False),             # 2 meant as 2/255
    ("pgd", 4 / 255, 2 / 255, (0, 1 / 255), False),  # above the smallest positive sweep eps
    ("pgd", 4 / 255, 1 / 255, (0, 1 / 255), True),   # eps 0 in a sweep is no budget to compare
    ("apgd", 4 / 255, 8 / 255, (), True),         # APGD's own first step is 2 eps
    ("apgd", 4 / 255, 9 / 255, (), False),
])
def test_step_size_above_eps_is_refused(attack, eps, step, sweep, ok):
    cfg = AdversarialConfig(attack=attack, eps=eps, step_size=step, eps_sweep=sweep)
    if ok:
        assert cfg.validate() is cfg
    else:
        with pytest.raises(ClipauditError, match="--step-size .* is above"):
            cfg.validate()


def test_the_l2_ceiling_is_checked_against_the_models_size(tiny_vit):
    """64 px: sqrt(3) * 64 = 110.85 is the diagonal of the pixel cube; a hair above is refused."""
    AdversarialConfig(norm="l2", eps=110.85).validate(tiny_vit.image_size)
    with pytest.raises(ClipauditError, match="diagonal of the 64px pixel cube"):
        AdversarialConfig(norm="l2", eps=110.86).validate(tiny_vit.image_size)


def test_random_start_is_recorded(tiny_vit):
    src = toy_source(4, seed=2, kind="object", text=False)
    cfg = AdversarialConfig(eps=2 / 255, steps=2, random_start=False, sanity_n=4, examples=0)
    s = audit(tiny_vit, src, cfg).summary
    assert s["random_start"] is False and s["steps"] == 2
