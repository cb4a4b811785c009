"""The attack ensemble's parts: DLR loss, margin, Square, the sequential worst case (issue 20)."""
from __future__ import annotations

import math

import pytest
import torch

from clipaudit.attacks.ensemble import (EnsembleSettings, dlr_targeted_loss, margin, run_ensemble, square_attack,
                                        square_p)
from clipaudit.errors import ClipauditError


# ------------------------------------------------------------------------------ losses

def test_targeted_dlr_by_hand():
    # sorted logits 5, 3, 1, 0, -1: denominator 5 - (1 + 0) / 2 = 4.5; z_y - z_t = 5 - 3 = 2
    z = torch.tensor([[5.0, 3.0, 1.0, 0.0, -1.0]])
    got = dlr_targeted_loss(z, torch.tensor([0]), torch.tensor([1]))
    assert got.item() == pytest.approx(-2 / 4.5)
    # toward a lower class the loss is lower (further from the target)
    assert dlr_targeted_loss(z, torch.tensor([0]), torch.tensor([4])).item() == pytest.approx(-6 / 4.5)
    # invariant to the temperature and to a shift of all logits (why AutoAttack uses it)
    assert dlr_targeted_loss(7 * z + 3, torch.tensor([0]), torch.tensor([1])).item() == pytest.approx(got.item())


def test_targeted_dlr_needs_four_classes():
    with pytest.raises(ValueError, match="at least 4 classes"):
        dlr_targeted_loss(torch.zeros(1, 3), torch.tensor([0]), torch.tensor([1]))


def test_margin_by_hand():
    z = torch.tensor([[2.0, 5.0, 1.0], [4.0, 1.0, 3.5]])
    assert margin(z, torch.tensor([1, 0])).tolist() == pytest.approx([3.0, 0.5])
    assert margin(z, torch.tensor([0, 2])).tolist() == pytest.approx([-3.0, -0.5])


def test_square_schedule():
    assert square_p(0, 10000) == 0.8
    assert square_p(10, 10000) == 0.8
    assert square_p(11, 10000) == 0.4
    assert square_p(9000, 10000) == pytest.approx(0.8 / 512)
    assert square_p(2, 1000) == 0.4  # rescaled: iteration 2 of 1000 is iteration 20 of 10,000


# ------------------------------------------------------------------------------ Square

class _Linear(torch.nn.Module):
    """A planted classifier: class 1 wins exactly when the image's mean brightness passes 0.5."""

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(m), 40 * (m - 0.5)], -1)


def test_square_finds_a_planted_weakness_and_respects_the_ball():
    x = torch.full((6, 3, 16, 16), 0.49)  # class 0, 0.01 below the boundary (eps reaches 0.031)
    labels = torch.zeros(6, dtype=torch.long)
    out = square_attack(_Linear(), x, labels, eps=8 / 255, queries=300, seed=0)
    assert out.success.all()  # +8/255 on enough pixels crosses 0.5
    assert (out.adv - x).abs().max() <= 8 / 255 + 1e-6
    assert out.adv.min() >= 0 and out.adv.max() <= 1
    assert (out.queries <= 300).all()
    assert torch.equal(_Linear()(out.adv).argmax(-1) != labels, out.success)


def test_square_cannot_beat_a_budget_too_small():
    x = torch.full((4, 3, 16, 16), 0.40)  # 0.1 below the boundary, eps 8/255 = 0.031 can never cross it
    out = square_attack(_Linear(), x, torch.zeros(4, dtype=torch.long), eps=8 / 255, queries=100, seed=0)
    assert not out.success.any()
    assert (out.queries == 100).all()  # it tried with the whole budget


def test_square_same_seed_same_points():
    x = torch.rand(3, 3, 16, 16)
    a = square_attack(_Linear(), x, torch.zeros(3, dtype=torch.long), 4 / 255, 50, seed=3)
    b = square_attack(_Linear(), x, torch.zeros(3, dtype=torch.long), 4 / 255, 50, seed=3)
    assert torch.equal(a.adv, b.adv)


@pytest.mark.parametrize("queries", [0, -5])
def test_square_query_budget_must_be_positive(queries):
    with pytest.raises(ClipauditError, match="--queries must be >= 1"):
        square_attack(_Linear(), torch.rand(1, 3, 8, 8), torch.zeros(1, dtype=torch.long), 4 / 255, queries)


@pytest.mark.parametrize("kw,needle", [({"queries": 0}, "--queries"), ({"steps": 0}, "--steps"),
                                       ({"n_targets": 0}, "--n-targets"), ({"attacks": ("fab",)}, "unknown"),
                                       ({"eot": 0}, "--eot")])
def test_settings_refuse_degenerate_budgets(kw, needle):
    with pytest.raises(ClipauditError, match=needle):
        EnsembleSettings(**kw).check()


# --------------------------------------------------------------------------- on the toy

@pytest.fixture(scope="module")
def toy_batch(toy_rn):
    from clipaudit.data import open_source
    from clipaudit.toy.world import OBJECT_CLASSES
    from clipaudit.zeroshot import iterate

    head = toy_rn.classifier(list(OBJECT_CLASSES))
    src = open_source("toy", n=24, seed=1234, kind="object", text=False)
    b = next(iter(iterate(src, toy_rn, 24, None)))
    y = torch.tensor([OBJECT_CLASSES.index(l) for l in b.meta["label"]])
    return head, b.pixels.float(), y


def test_worst_case_is_at_most_every_single_attack_on_every_image(toy_batch):
    head, x, y = toy_batch
    out = run_ensemble(head, x, y, 1 / 255, settings=EnsembleSettings(steps=10, n_targets=3, queries=100,
                                                                      individual=True))
    for name, col in out.robust.items():
        for i, alone in enumerate(col):
            if alone is not None:  # attacked alone: the worst case can never be more robust
                assert not (bool(out.worst[i]) and not alone), (name, i)
    # the worst case is the AND over attacks, image by image
    for i in range(len(x)):
        alive = [c[i] for c in out.robust.values() if c[i] is not None]
        assert bool(out.worst[i]) == (bool(out.clean_correct[i]) and all(alive))
    assert 0 < int(out.worst.sum()) < len(x)  # 1/255 is a budget where the answer is not trivial
    # broken_by names the first attack of the order that broke the image, even when later ones did too
    for i, who in enumerate(out.broken_by):
        if not bool(out.clean_correct[i]):
            assert who == "clean"
            continue
        first = next((a for a in ("apgd-ce", "apgd-t", "square") if out.robust[a][i] is False), "")
        assert who == first, (i, who, first)


def test_sequence_attacks_only_images_still_standing_and_names_the_breaker(toy_batch):
    head, x, y = toy_batch
    out = run_ensemble(head, x, y, 2 / 255, settings=EnsembleSettings(steps=10, n_targets=3, queries=100))
    order = ["apgd-ce", "apgd-t", "square"]
    for i, who in enumerate(out.broken_by):
        if who in order:
            k = order.index(who)
            assert out.robust[who][i] is False
            assert all(out.robust[a][i] is True for a in order[:k])  # earlier attacks failed on it
            assert all(out.robust[a][i] is None for a in order[k + 1:])  # later ones never ran on it
            assert head(out.adv[i:i + 1]).argmax(-1).item() != y[i].item()  # the kept point really fools
    assert (out.adv - x).abs().max() <= 2 / 255 + 1e-6


def test_square_alone_fools_the_undefended_toy_at_8_255(toy_rn):
    """Issue 20: Square alone fools toy-rn at linf 8/255 on >= 90% of 64 toy scenes with a budget
    of 10,000 queries per image (the Square paper's budget). Measured: 59/64 = 0.922 (and 57/64 =
    0.891 with AutoAttack's 5,000, which would miss the goal)."""
    from clipaudit.data import open_source
    from clipaudit.toy.world import OBJECT_CLASSES
    from clipaudit.zeroshot import iterate

    head = toy_rn.classifier(list(OBJECT_CLASSES))
    b = next(iter(iterate(open_source("toy", n=64, seed=1234, kind="object", text=False), toy_rn, 64, None)))
    y = torch.tensor([OBJECT_CLASSES.index(l) for l in b.meta["label"]])
    out = square_attack(head, b.pixels.float(), y, 8 / 255, queries=10_000, seed=0)
    assert out.success.float().mean().item() >= 0.9
    assert (out.queries <= 10_000).all()


# ------------------------------------------------------------------ against a peer implementation

def _overlap(k1: int, n1: int, k2: int, n2: int) -> bool:
    from clipaudit.stats import proportion_ci

    a, b = proportion_ci(k1, n1), proportion_ci(k2, n2)
    return a[0] <= b[1] and b[0] <= a[1]


def test_apgd_t_agrees_with_torchattacks(toy_batch):
    """Same model, images, budget (linf 2/255, 10 steps, every wrong class as a target): the
    success rates of our APGD-T and torchattacks.APGDT are within each other's 95% intervals."""
    torchattacks = pytest.importorskip("torchattacks")
    head, x, y = toy_batch
    x, y = x[:12], y[:12]
    ours = run_ensemble(head, x, y, 2 / 255, settings=EnsembleSettings(attacks=("apgd-t",), steps=10, n_targets=15))
    k_ours = sum(1 for v in ours.robust["apgd-t"] if v is False)
    peer = torchattacks.APGDT(head, eps=2 / 255, steps=10, n_restarts=1, seed=0, n_classes=16)
    peer.set_device("cpu")
    adv = peer(x, y)
    with torch.no_grad():
        k_peer = int((head(adv).argmax(-1) != y).sum())
    n = int(ours.clean_correct.sum())
    assert 0 < k_ours < n or 0 < k_peer < n  # a budget where the rate is informative
    assert _overlap(k_ours, n, k_peer, n), (k_ours, k_peer, n)


def test_square_agrees_with_torchattacks(toy_batch):
    torchattacks = pytest.importorskip("torchattacks")
    head, x, y = toy_batch
    x, y = x[:12], y[:12]
    ours = square_attack(head, x, y, 8 / 255, queries=300, seed=0)
    peer = torchattacks.Square(head, eps=8 / 255, n_queries=300, seed=0)
    peer.set_device("cpu")
    adv = peer(x, y)
    with torch.no_grad():
        k_peer = int((head(adv).argmax(-1) != y).sum())
    k_ours = int(ours.success.sum())
    assert 0 < k_ours < len(x)
    assert _overlap(k_ours, len(x), k_peer, len(x)), (k_ours, k_peer)
