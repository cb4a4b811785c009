"""Every audit measures the model in eval mode and hands it back as it found it: a model left in
train mode must not have its BatchNorm statistics rewritten by an attack's forwards."""
from __future__ import annotations

import warnings

import pytest

from clipaudit.bias.datasets import open_dataset
import torch

from clipaudit.data import toy_source
from clipaudit.model import eval_mode, load_model


def _state(model) -> dict[str, torch.Tensor]:
    """Every parameter and buffer (BatchNorm running mean/var and batch counts included)."""
    return {k: v.detach().clone() for k, v in model.model.state_dict().items()}


@pytest.fixture
def rn_in_train_mode():
    """A fresh random-init toy-rn (ModifiedResNet: BatchNorm everywhere), left in train mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model("toy-rn", pretrained="none", device="cpu")
    model.model.train()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.model.modules())
    return model


def _adversarial(model):
    from clipaudit.attacks.adversarial_audit import AdversarialConfig, audit

    audit(model, toy_source(4, seed=3, kind="object", text=False),
          AdversarialConfig(eps=4 / 255, steps=2, sanity_n=2, examples=0))


def _typographic(model):
    from clipaudit.attacks.typographic_audit import TypographicConfig, audit

    audit(model, toy_source(4, seed=3, kind="object", text=False),
          TypographicConfig(target="pizza", n_resamples=100, examples=0))


def _bias(model):
    from clipaudit.bias.audit import BiasConfig, audit

    audit(model, open_dataset("toy:16"), BiasConfig(bootstrap=100, permutations=100, k=4))


@pytest.mark.parametrize("run_audit", [_adversarial, _typographic, _bias], ids=["adversarial", "typographic", "bias"])
def test_an_audit_leaves_a_train_mode_model_untouched(rn_in_train_mode, run_audit):
    model = rn_in_train_mode
    before = _state(model)
    run_audit(model)
    after = _state(model)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"the audit rewrote {changed[:4]}"
    assert all(m.training for m in model.model.modules()), "train mode was not handed back"


def test_eval_mode_restores_each_modules_own_flag_even_on_error():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2), torch.nn.Dropout(0.5))
    net.train()
    net[1].eval()  # a mixed state: only the BatchNorm frozen
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(net):
            assert not any(m.training for m in net.modules())
            raise RuntimeError("boom")
    assert [m.training for m in net.modules()] == [True, True, False, True]
