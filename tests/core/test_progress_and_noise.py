"""Progress bars say which stage is running; known third-party noise stays out of the terminal."""
from __future__ import annotations

import logging
import sys

import pytest

from clipaudit.data import toy_source


class _Bars:
    """A stand-in for ``clipaudit.cli.progress`` that records each bar's name."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, iterable, total=None, desc=""):
        self.names.append(desc)
        return iterable


def _objects(n: int):
    return toy_source(n, seed=11, kind="object", text=False)


def test_typographic_bars_name_the_pass_sweep_and_word_search(tiny_vit, tmp_path):
    from clipaudit.attacks.typographic_audit import TypographicConfig, audit

    words = tmp_path / "words.txt"
    words.write_text("pizza\nzorb\n")
    bars = _Bars()
    audit(tiny_vit, _objects(4), TypographicConfig(target="pizza", sweep=["size=8,12"], search_words=str(words),
                                                   search_n=2, n_resamples=20, examples=0), progress=bars)
    assert bars.names == ["typographic", "sweep", "word search"]


def test_adversarial_bars_name_the_attack_and_each_sweep_eps(tiny_vit):
    from clipaudit.attacks.adversarial_audit import AdversarialConfig, audit

    bars = _Bars()
    audit(tiny_vit, _objects(2), AdversarialConfig(attack="fgsm", eps=4 / 255, eps_sweep=(2 / 255,),
                                                   sanity_n=1, examples=0), progress=bars)
    assert bars.names == ["attack", "attack eps=0.007843"]


def test_bias_and_scan_bars_are_named(tiny_vit):
    from clipaudit.bias.audit import embed_images
    from clipaudit.probes.scan import scan

    bars = _Bars()
    embed_images(tiny_vit, _objects(2), batch_size=2, progress=bars)
    scan(tiny_vit, _objects(2), "penultimate", k=1, batch_size=2, progress=bars)
    assert bars.names == ["bias", "scan"]


def test_featvis_import_does_not_raise_the_torch_jit_warning():
    """lucent -> kornia calls torch.jit.script at import, a FutureWarning on every neurons run.

    The modules are imported afresh (and the originals put back) so the import-time warning fires.
    """
    import warnings

    from clipaudit.probes.featvis import _transforms

    held = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] in ("lucent", "kornia")}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _transforms(64)
        assert any(k.startswith("kornia") for k in sys.modules)  # the import really ran again
    finally:
        for k in [k for k in sys.modules if k.split(".")[0] in ("lucent", "kornia")]:
            del sys.modules[k]
        sys.modules.update(held)
    assert not [w for w in caught if "torch.jit" in str(w.message)]


def test_open_clip_log_lines_do_not_precede_our_error(tmp_path, caplog):
    """open_clip logged 'No pretrained weights loaded' just before our own one-line error."""
    import torch

    from clipaudit.errors import ClipauditError
    from clipaudit.model import load_model

    bad = tmp_path / "other.pt"
    torch.save({"not_a_clip_weight": torch.zeros(2)}, bad)
    with caplog.at_level(logging.DEBUG), pytest.raises(ClipauditError, match="does not fit architecture RN50"):
        load_model("RN50", pretrained=str(bad), device="cpu")
    assert not [r for r in caplog.records if "pretrained weights" in r.getMessage()]
    assert not logging.getLogger().filters  # the filter is gone after the call
