"""Broken models must not look healthy: a checkpoint with NaN weights stops every audit with one
clear line (non-finite embeddings), instead of "flagged: none" and "attack success 0.000"."""
from __future__ import annotations

import pytest
import torch

from clipaudit.cli import main
from clipaudit.errors import ClipauditError
from clipaudit.model import load_model


def _nan_checkpoint(tmp_path, model, prefix: str):
    """The tiny model's weights with every tensor under ``prefix`` set to NaN."""
    sd = {k: (torch.full_like(v, float("nan")) if k.startswith(prefix) and v.is_floating_point() else v)
          for k, v in model.model.state_dict().items()}
    assert any(k.startswith(prefix) for k in sd)
    path = tmp_path / f"nan_{prefix.strip('.')}.pt"
    torch.save({"state_dict": sd}, path)
    return path


def test_non_finite_embeddings_are_refused_at_the_encoders(tmp_path, tiny_vit):
    model = load_model("toy-vit", pretrained=str(_nan_checkpoint(tmp_path, tiny_vit, "visual.")), device="cpu")
    with pytest.raises(ClipauditError, match=r"non-finite image embeddings \(NaN or inf\) for 2 of 2 inputs"):
        model.encode_images(torch.rand(2, 3, 64, 64))
    model.encode_texts(["a photo of a cat."])  # the text tower is intact
    model = load_model("toy-vit", pretrained=str(_nan_checkpoint(tmp_path, tiny_vit, "token_embedding")),
                       device="cpu")
    with pytest.raises(ClipauditError, match="non-finite text embeddings"):
        model.classifier(["cat", "dog"])


def test_a_finite_model_passes_the_check(tiny_vit):
    emb = tiny_vit.encode_images(torch.rand(2, 3, 64, 64))
    assert bool(torch.isfinite(emb).all())


@pytest.mark.parametrize("argv", [
    ["adversarial", "--n-images", "2", "--steps", "1", "--sanity-n", "2", "--examples", "0"],
    ["typographic", "--target", "pizza", "--n-images", "2", "--bootstrap", "20", "--examples", "0"],
    ["bias", "--images", "toy:8", "--bootstrap", "100", "--permutations", "100", "--k", "4"],
    ["neurons", "--n-images", "8", "--top", "2", "--steps", "1", "--no-attribution", "--n-words", "2",
     "--n-pictures", "2", "--k", "2"],
], ids=["adversarial", "typographic", "bias", "neurons"])
def test_every_audit_stops_on_a_nan_checkpoint_with_one_line(argv, tmp_path, tiny_vit, capsys):
    path = _nan_checkpoint(tmp_path, tiny_vit, "visual.")
    code = main(argv + ["--model", "toy-vit", "--pretrained", str(path), "--device", "cpu",
                        "--out", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert code != 0, captured.out
    errors = [ln for ln in captured.err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "non-finite image embeddings" in errors[0], captured.err
    assert "Traceback" not in captured.err
