"""Attack mechanics on tiny random-init CLIPs: budgets, eps = 0, objectives, APGD schedule."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clipaudit.attacks import adversarial as adv
from clipaudit.attacks.adversarial import Objective, attack, check_eps, parse_eps, perturbation_norms
from clipaudit.data import toy_source
from clipaudit.errors import ClipauditError
from clipaudit.toy.world import OBJECT_CLASSES


def _batch(model, n=8, seed=5):
    return next(toy_source(n, seed=seed, kind="object", text=False).batches(model, n)).pixels


@pytest.fixture(scope="module")
def vit_setup(tiny_vit):
    head = tiny_vit.classifier(OBJECT_CLASSES)
    x = _batch(tiny_vit, 12)
    with torch.no_grad():
        y = head(x).argmax(-1)
    return tiny_vit, head, x, y


def test_parse_eps_accepts_fractions_and_decimals():
    assert parse_eps("4/255") == pytest.approx(4 / 255)
    assert parse_eps("0.0157") == pytest.approx(0.0157)
    assert parse_eps(" 8 / 255 ") == pytest.approx(8 / 255)
    for bad in ("abc", "4/0", "4/255/2", "", "nan", "inf"):
        with pytest.raises(ClipauditError, match="eps"):
            parse_eps(bad)


def test_check_eps_range_depends_on_norm():
    with pytest.raises(ClipauditError, match="negative"):
        check_eps(-0.01, "linf")
    with pytest.raises(ClipauditError, match="above 1"):
        check_eps(1.5, "linf")
    assert check_eps(1.0, "linf") == 1.0
    assert check_eps(1.5, "l2", 64) == 1.5  # L2 budgets are sums over pixels
    with pytest.raises(ClipauditError, match="diagonal"):
        check_eps(200.0, "l2", 64)


@pytest.mark.parametrize("name", ["fgsm", "pgd", "apgd"])
@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_every_adversarial_image_is_in_the_ball_and_pixel_range(tiny_model, name, norm, eps):
    head = tiny_model.classifier(OBJECT_CLASSES[:6])
    x = _batch(tiny_model, 6)
    out = attack(Objective(head, head(x).argmax(-1).detach()), x, name, eps, norm, steps=4, restarts=2,
                 early_stop=False)
    linf, l2 = perturbation_norms(out.adv, x)
    norms = linf if norm == "linf" else l2
    assert float(norms.max()) <= eps + 1e-6
    assert float(out.adv.min()) >= 0.0 and float(out.adv.max()) <= 1.0
    # the attack used its budget (a no-op attack would also satisfy the bound)
    assert float(norms.max()) > 0.5 * eps


@pytest.mark.parametrize("name", ["fgsm", "pgd", "apgd"])
def test_eps_zero_changes_nothing(vit_setup, name):
    _, head, x, y = vit_setup
    out = attack(Objective(head, y), x, name, 0.0, "linf", steps=3)
    assert torch.equal(out.adv, x)
    assert not bool(out.success.any())
    assert torch.equal(head(out.adv).argmax(-1), y)


def test_success_flags_match_the_returned_images(vit_setup):
    _, head, x, y = vit_setup
    out = attack(Objective(head, y), x, "pgd", 8 / 255, "linf", steps=10)
    with torch.no_grad():
        pred = head(out.adv).argmax(-1)
    assert torch.equal(out.success, pred != y)
    assert float(out.success.float().mean()) >= 0.5  # random-init ViT is easy to fool at 8/255


def test_early_stop_is_compute_only(vit_setup):
    """Dropping fooled images from the batch saves steps but fools exactly the same images."""
    _, head, x, y = vit_setup
    fast = attack(Objective(head, y), x, "pgd", 4 / 255, "linf", steps=8, seed=3, early_stop=True)
    full = attack(Objective(head, y), x, "pgd", 4 / 255, "linf", steps=8, seed=3, early_stop=False)
    assert torch.equal(fast.success, full.success)
    assert fast.gradient_steps < full.gradient_steps == 8 * len(x)


def test_targeted_attack_reaches_target_and_beats_noise(vit_setup):
    _, head, x, y = vit_setup
    target = OBJECT_CLASSES.index("pizza")
    out = attack(Objective(head, y, target=target), x, "pgd", 16 / 255, "linf", steps=10)
    with torch.no_grad():
        pred = head(out.adv).argmax(-1)
        noise = head(adv.random_noise(x, 16 / 255, "linf", torch.Generator().manual_seed(0))).argmax(-1)
    assert float((pred == target).float().mean()) >= 0.9
    assert int((pred == target).sum()) > int((noise == target).sum())


def test_more_steps_never_weaker_per_image(vit_setup):
    """The best iterate is kept: with the same start and step, 20 steps keep every success and
    every loss that 5 steps reached."""
    _, head, x, y = vit_setup
    kw = dict(attack="pgd", eps=2 / 255, norm="linf", step_size=0.5 / 255, seed=1, early_stop=False)
    few = attack(Objective(head, y), x, steps=5, **kw)
    many = attack(Objective(head, y), x, steps=20, **kw)
    assert bool((many.success | ~few.success).all())
    assert bool((many.loss >= few.loss - 1e-5).all())


def test_embedding_mode_pulls_toward_target_text(vit_setup):
    model, head, x, y = vit_setup
    t = OBJECT_CLASSES.index("ipod")
    text = head.weights[t]
    clean = model.encode_images(x).detach()
    out = attack(Objective(head, y, target=t, mode="embedding", anchor=text), x, "pgd", 8 / 255, "linf", steps=8,
                 early_stop=False)
    after = model.encode_images(out.adv).detach()
    assert bool(((after @ text) > (clean @ text) + 1e-3).all())


def test_untargeted_embedding_mode_moves_away_from_clean_image(vit_setup):
    model, head, x, y = vit_setup
    clean = model.encode_images(x).detach()
    cos = []
    for eps in (1 / 255, 8 / 255):
        out = attack(Objective(head, y, mode="embedding", anchor=clean), x, "pgd", eps, "linf", steps=6,
                     early_stop=False)
        cos.append(float((model.encode_images(out.adv).detach() * clean).sum(-1).mean()))
    assert cos[0] < 0.9999 and cos[1] < cos[0]


def test_apgd_checkpoints_follow_croce_hein():
    # p = 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 of the iterations
    assert sorted(adv._apgd_checkpoints(100)) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_projection_is_exact_for_l2():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 8, 8, generator=g)
    far = x + torch.randn(4, 3, 8, 8, generator=g)
    p = adv.project(far, x, 0.3, "l2")
    assert float((p - x).flatten(1).norm(dim=1).max()) <= 0.3 + 1e-6
    assert math.isclose(float((p - x).flatten(1).norm(dim=1).min()), 0.3, rel_tol=0.2)
    assert float(p.min()) >= 0 and float(p.max()) <= 1


def test_bad_attack_arguments_raise_clear_errors(vit_setup):
    _, head, x, y = vit_setup
    obj = Objective(head, y)
    with pytest.raises(ClipauditError, match="unknown attack"):
        attack(obj, x, "cw")
    with pytest.raises(ClipauditError, match="steps"):
        attack(obj, x, "pgd", steps=0)
    with pytest.raises(ClipauditError, match="above 1"):
        attack(obj, x, "pgd", eps=2.0)
    with pytest.raises(ClipauditError, match="unknown mode"):
        Objective(head, y, mode="pixels")


# ------------------------------------------------------------------- L2 geometry at the boundary

def _dyadic_pair(radius_per_pixel: float):
    """x = 0.5 everywhere; x_adv moves 4 pixels by ``radius_per_pixel`` each, so the L2 norm of
    the move is exactly 2 * radius_per_pixel in float32 (all values are dyadic)."""
    x = torch.full((1, 3, 8, 8), 0.5)
    moved = x.clone()
    moved[0, 0, 0, :4] += radius_per_pixel
    return x, moved


@pytest.mark.parametrize("per_pixel, eps", [(0.25, 1.0), (0.5, 1.0), (0.125, 0.25)])
def test_l2_projection_leaves_points_in_the_ball_unchanged(per_pixel, eps):
    """Inside (norm 0.5 < 1) and exactly on the sphere (norm 1 = eps; norm 0.25 = eps): the
    nearest point of the ball is the point itself, bit for bit."""
    x, moved = _dyadic_pair(per_pixel)
    assert float((moved - x).flatten().norm()) <= eps
    assert torch.equal(adv.project(moved, x, eps, "l2"), moved)


def test_l2_projection_puts_points_outside_onto_the_sphere():
    """A move of norm 1 projected on the 0.5 ball: same direction, half the length (by hand:
    each of the 4 moved pixels goes from +0.5 to +0.25)."""
    x, moved = _dyadic_pair(0.5)
    out = adv.project(moved, x, 0.5, "l2")
    expected = x.clone()
    expected[0, 0, 0, :4] += 0.25
    assert torch.allclose(out, expected, atol=1e-6)
    assert float((out - x).double().flatten().norm()) <= 0.5


def test_l2_eps_ceiling_is_the_pixel_cube_diagonal():
    """A 64 px model's pixels live in the cube [0, 1]^(3*64*64); its diagonal, the largest L2
    distance between two images, is sqrt(12288) = 110.8513 (= sqrt(3) * 64)."""
    diagonal = math.sqrt(3 * 64 * 64)
    assert check_eps(diagonal, "l2", 64) == diagonal
    assert check_eps(110.85, "l2", 64) == 110.85
    with pytest.raises(ClipauditError, match="diagonal"):
        check_eps(110.852, "l2", 64)
    assert adv.max_eps("l2", 224) == pytest.approx(387.979, abs=1e-3)  # sqrt(3 * 224 * 224)


# ------------------------------------------------------------------- random start

def test_pgd_without_random_start_is_one_hand_rolled_step(vit_setup):
    """random_start=False, one step: the step is x + alpha * sign(grad of CE at x), kept in the
    ball and [0, 1]; the attack returns it for every image where it raised the loss or fooled
    the model, else x (the best iterate). Computed here by hand with autograd."""
    _, head, x, y = vit_setup
    x, y = x[:4], y[:4]
    eps, alpha = 4 / 255, 1 / 255
    xg = x.clone().requires_grad_(True)
    loss0 = F.cross_entropy(head(xg), y, reduction="none")
    (g,) = torch.autograd.grad(loss0.sum(), xg)
    x1 = torch.min(torch.max(x + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
    with torch.no_grad():
        logits1 = head(x1)
        loss1 = F.cross_entropy(logits1, y, reduction="none")
    took = (logits1.argmax(-1) != y) | (loss1 > loss0.detach())
    assert bool(took.any())
    expected = torch.where(took.view(-1, 1, 1, 1), x1, x)
    runs = [attack(Objective(head, y), x, "pgd", eps, "linf", steps=1, step_size=alpha, seed=s, early_stop=False,
                   random_start=False) for s in (0, 1)]
    assert torch.equal(runs[0].adv, runs[1].adv)  # deterministic: the seed no longer matters
    assert torch.allclose(runs[0].adv, expected, atol=1e-6)
    rand = [attack(Objective(head, y), x, "pgd", eps, "linf", steps=1, step_size=alpha, seed=s, early_stop=False)
            for s in (0, 1)]
    assert not torch.equal(rand[0].adv, rand[1].adv)  # the default still starts at random
