"""Model loading and the pixel-space convention."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from clipaudit.errors import ClipauditError
from clipaudit.model import load_model


def _photo(seed: int, size=(97, 71)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


def test_pixels_match_open_clip_preprocess(tiny_model):
    """encode_images(to_pixels(img)) == open_clip preprocess + encode_image, to 1e-5."""
    from open_clip.transform import image_transform

    imgs = [_photo(0), _photo(1, (64, 200))]
    ours = tiny_model.encode_images(tiny_model.to_pixels(imgs), normalize=False)
    preprocess = image_transform(tiny_model.image_size, is_train=False, mean=tiny_model.mean, std=tiny_model.std)
    with torch.no_grad():
        theirs = tiny_model.model.encode_image(torch.stack([preprocess(i) for i in imgs]))
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_pixels_are_unnormalised_and_in_range(tiny_vit):
    px = tiny_vit.to_pixels([_photo(3)])
    assert px.shape == (1, 3, 64, 64)
    assert 0.0 <= float(px.min()) and float(px.max()) <= 1.0


def test_wrong_resolution_is_rejected(tiny_vit):
    with pytest.raises(ValueError, match="64x64"):
        tiny_vit.encode_images(torch.rand(1, 3, 32, 32))


def test_classifier_averages_templates(tiny_vit):
    head = tiny_vit.classifier(["apple", "pizza"], ["a photo of a {}.", "a drawing of a {}."])
    t = tiny_vit.encode_texts(["a photo of a apple.", "a drawing of a apple."])
    expected = torch.nn.functional.normalize(t.mean(0), dim=0)
    assert torch.allclose(head.weights[0], expected, atol=1e-6)
    px = torch.rand(3, 3, 64, 64)
    logits = head(px)
    manual = tiny_vit.logit_scale * tiny_vit.encode_images(px) @ head.weights.T
    assert logits.shape == (3, 2) and torch.allclose(logits, manual, atol=1e-5)


def test_classifier_rejects_bad_templates_and_duplicates(tiny_vit):
    with pytest.raises(ValueError, match="placeholder"):
        tiny_vit.classifier(["a"], ["no placeholder"])
    with pytest.raises(ValueError, match="unique"):
        tiny_vit.classifier(["a", "a"])


def test_random_init_is_recorded(tiny_rn):
    d = tiny_rn.describe()
    assert d["random_init"] is True and d["pretrained"] == "none" and d["arch"] == "resnet"
    assert len(d["weights_hash"]) == 16


def test_weights_hash_changes_with_weights():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = load_model("toy-rn", pretrained="none", device="cpu")
        b = load_model("toy-rn", pretrained="none", device="cpu")
    assert a.weights_hash == b.weights_hash  # same seed, same init
    with torch.no_grad():
        next(b.model.parameters()).add_(1.0)
    b._hash = None
    assert a.weights_hash != b.weights_hash


def test_local_checkpoints_round_trip(tmp_path, tiny_vit):
    """An open_clip state dict saved by a test loads back into the same architecture."""
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in tiny_vit.model.state_dict().items()}}, path)
    m = load_model("toy-vit", pretrained=str(path), device="cpu")
    assert m.weights_hash == tiny_vit.weights_hash and m.pretrained == str(path)


def test_wrong_architecture_checkpoint_is_one_clear_error(tmp_path, tiny_rn):
    path = tmp_path / "rn.pt"
    torch.save(tiny_rn.model.state_dict(), path)
    with pytest.raises(ClipauditError, match="does not fit architecture toy-vit"):
        load_model("toy-vit", pretrained=str(path), device="cpu")


def test_corrupt_and_missing_checkpoints(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02garbage" * 10)
    with pytest.raises(ClipauditError, match="cannot read checkpoint"):
        load_model("toy-vit", pretrained=str(bad), device="cpu")
    with pytest.raises(ClipauditError, match="does not exist"):
        load_model("toy-vit", pretrained=str(tmp_path / "missing.pt"), device="cpu")


def test_pickled_code_is_refused(tmp_path):
    """weights_only=True: a checkpoint whose unpickling would run code is rejected *before* the
    code runs. The payload writes a sentinel file; a plain torch.load shows it does (the
    control), and after load_model refuses the checkpoint the sentinel does not exist."""
    from pathlib import Path

    sentinel = tmp_path / "payload_ran.txt"

    class Evil:
        def __reduce__(self):
            return (Path.write_text, (sentinel, "pwned"))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, path)
    torch.load(str(path), weights_only=False)  # control: unsafe unpickling runs the payload
    assert sentinel.read_text() == "pwned"
    sentinel.unlink()
    with pytest.raises(ClipauditError, match="cannot read checkpoint"):
        load_model("toy-vit", pretrained=str(path), device="cpu")
    assert not sentinel.exists(), "the checkpoint's payload ran while loading"


def test_unknown_names_and_tags_suggest():
    with pytest.raises(ClipauditError, match="did you mean: .*ViT-B-32"):
        load_model("ViT-B-33", pretrained="none")
    with pytest.raises(ClipauditError, match="unknown pretrained tag 'opneai'.*openai"):
        load_model("RN50", pretrained="opneai")
    with pytest.raises(ClipauditError, match="needs --pretrained"):
        load_model("RN50")
    with pytest.raises(ClipauditError, match="unknown model 'toy-xl'; did you mean: toy-rn, toy"):
        load_model("toy-xl")


def test_openai_style_state_dict_from_path(tmp_path):
    """A bare OpenAI-style state dict (architecture inferred from shapes) loads by path."""
    import open_clip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = open_clip.create_model("RN50", pretrained=None).eval()
    sd = ref.state_dict()
    sd["input_resolution"] = torch.tensor(224)
    sd["context_length"] = torch.tensor(77)
    sd["vocab_size"] = torch.tensor(49408)
    path = tmp_path / "rn50_openai.pt"
    torch.save(sd, path)
    m = load_model(str(path), device="cpu")
    assert m.arch == "resnet" and m.image_size == 224
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        ref_emb = torch.nn.functional.normalize(ref.encode_image(m.normalize(x)), dim=-1)
    assert torch.allclose(m.encode_images(x), ref_emb, atol=1e-4)


# ------------------------------------------------------------- checkpoints of known origin

_TINY_ARCH = "clipaudit-test-tiny"
_TINY_CFG = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16,
                                             "head_width": 16},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}
# A made-up tag with the kind of preprocessing PE-Core / SigLIP publish (values written by hand here).
_TINY_TAG = {"url": "", "hf_hub": "", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
             "interpolation": "bilinear", "resize_mode": "squash", "quick_gelu": True}


@pytest.fixture
def tiny_registered(monkeypatch, tmp_path):
    """A tiny architecture with one pretrained tag in open_clip's registries, and a random-init
    state dict of it saved to a path (what a user downloaded elsewhere)."""
    import open_clip
    import open_clip.factory
    import open_clip.pretrained

    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, _TINY_ARCH, _TINY_CFG)
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, _TINY_ARCH, {"sq": _TINY_TAG})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = open_clip.create_model(_TINY_ARCH, pretrained=None, force_quick_gelu=True)
    path = tmp_path / "tiny.pt"
    torch.save(module.state_dict(), path)
    return path


def test_the_real_registry_gives_pe_core_its_own_preprocessing():
    """The issue's case: PE-Core-T-16-384 was given OpenAI mean/std, shortest, bicubic."""
    from clipaudit.model import preprocess_from_tag

    pp = preprocess_from_tag("PE-Core-T-16-384", "meta")
    assert pp["mean"] == (0.5, 0.5, 0.5) and pp["std"] == (0.5, 0.5, 0.5)
    assert pp["resize_mode"] == "squash" and pp["interpolation"] == "bilinear"
    assert preprocess_from_tag("ViT-B-32", "openai")["quick_gelu"] is True  # OpenAI's weights need QuickGELU


def test_pretrained_tag_gives_a_checkpoint_its_published_preprocessing(tiny_registered):
    from open_clip.transformer import QuickGELU

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "assumed" warning when the origin is named
        m = load_model(_TINY_ARCH, pretrained=str(tiny_registered), device="cpu", pretrained_tag="sq")
    assert m.mean == (0.5, 0.5, 0.5) and m.std == (0.5, 0.5, 0.5)
    pp = m.describe()["preprocess"]
    assert pp["resize_mode"] == "squash" and pp["interpolation"] == "bilinear" and pp["quick_gelu"] is True
    assert pp["assumed"] is False and "sq" in pp["source"]
    assert any(isinstance(mod, QuickGELU) for mod in m.model.modules())
    # squash: a 64x32 picture is stretched to 32x32, not centre-cropped
    img = Image.fromarray(np.concatenate([np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 255, np.uint8)], 1))
    px = m.to_pixels(img)
    assert float(px[0, :, :, 0].mean()) < 0.05 and float(px[0, :, :, -1].mean()) > 0.95
    # normalisation inside: (x - 0.5) / 0.5
    assert torch.allclose(m.normalize(torch.full((1, 3, 32, 32), 0.75)), torch.full((1, 3, 32, 32), 0.5))


def test_unknown_origin_is_said_plainly(tiny_registered, capsys):
    with pytest.warns(UserWarning, match="unknown origin: assumed .*--pretrained-tag"):
        m = load_model(_TINY_ARCH, pretrained=str(tiny_registered), device="cpu")
    assert m.describe()["preprocess"]["assumed"] is True
    from clipaudit.cli import main

    assert main(["layers", "--model", _TINY_ARCH, "--pretrained", str(tiny_registered)]) == 0
    notes = [ln for ln in capsys.readouterr().err.splitlines() if "unknown origin" in ln]
    assert len(notes) == 1 and notes[0].startswith("NOTE:")


def test_bad_pretrained_tags_are_one_line_errors(tiny_registered, capsys):
    from clipaudit.cli import main

    assert main(["layers", "--model", _TINY_ARCH, "--pretrained", str(tiny_registered), "--pretrained-tag", "sqq"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown --pretrained-tag 'sqq'") and "sq" in err and len(err.splitlines()) == 1
    with pytest.raises(ClipauditError, match="checkpoint path"):
        load_model("toy", pretrained_tag="openai")


# -- the toy is a model like any other (open_clip's config registry, no special loading path) --------

def test_loading_the_toy_does_not_import_the_training_loop():
    import subprocess
    import sys

    code = ("import sys, warnings; warnings.simplefilter('ignore'); from clipaudit.model import load_model; "
            "load_model('toy'); print('clipaudit.toy.train' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_toy_architectures_live_in_open_clips_registry(toy_rn):
    import open_clip

    assert {"toy-rn", "toy-vit"} <= set(open_clip.list_models())
    assert open_clip.get_tokenizer("toy-rn")(["a pizza"]).shape == (1, 16)
    assert toy_rn.name == "toy-rn" and toy_rn.pretrained == "shipped"


def test_a_checkpoint_named_like_the_toy_loads_as_a_checkpoint(toy_rn, tmp_path):
    import torch

    from clipaudit.model import load_model

    path = tmp_path / "toy_x.pt"
    torch.save(toy_rn.model.state_dict(), path)
    as_file = load_model(str(path), device="cpu")
    assert as_file.name == str(path) and as_file.weights_hash == toy_rn.weights_hash
    as_arch = load_model("toy-rn", pretrained=str(path), device="cpu")
    assert as_arch.pretrained == str(path) and as_arch.weights_hash == toy_rn.weights_hash


def test_random_init_is_the_same_every_time():
    from clipaudit.model import load_model

    a, b = (load_model("toy-vit", pretrained="none", device="cpu") for _ in range(2))
    assert a.weights_hash == b.weights_hash
