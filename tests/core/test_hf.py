"""transformers CLIP / SigLIP behind AuditModel, and the zero-shot scoring rule (issue 21).

Reference values come from transformers itself (get_image_features / get_text_features /
logits_per_image with the checkpoint's own processor) or from open_clip's forward, never from
clipaudit's code path.
"""
from __future__ import annotations

import copy
import json
import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("transformers")

from clipaudit.errors import ClipauditError  # noqa: E402
from clipaudit.hooks import ablate, patch, resolve_layer, run_with_cache  # noqa: E402
from clipaudit.model import load_model  # noqa: E402
from clipaudit.zeroshot import predict_probs  # noqa: E402
from tests.fixtures.hf_models import write_clip, write_siglip  # noqa: E402

CLASSES = ["dog", "cat", "car", "tree"]


@pytest.fixture(scope="session")
def hf_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {"clip": write_clip(root / "clip"), "siglip": write_siglip(root / "siglip")}


@pytest.fixture(scope="session", params=["clip", "siglip"])
def kind(request):
    return request.param


@pytest.fixture(scope="session")
def loaded(hf_folders):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {k: load_model(str(f), device="cpu", text_cache=False) for k, f in hf_folders.items()}


def _reference(hf_folders, kind):
    """transformers' own model and processor parts, loaded independently of clipaudit."""
    import transformers

    cls = transformers.CLIPModel if kind == "clip" else transformers.SiglipModel
    folder = str(hf_folders[kind])
    model = cls.from_pretrained(folder).eval()
    return (model, transformers.AutoImageProcessor.from_pretrained(folder),
            transformers.AutoTokenizer.from_pretrained(folder))


def _pooled(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _images(n=3, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [(40, 52), (33, 33), (64, 48)]
    return [Image.fromarray((rng.random((*sizes[i % 3], 3)) * 255).astype("uint8")) for i in range(n)]


def _text_inputs(tok, kind, texts):
    # SigLIP's documented usage pads to max_length; CLIP's pads to the longest with a mask.
    if kind == "siglip":
        return {"input_ids": tok(texts, padding="max_length", max_length=16, return_tensors="pt")["input_ids"]}
    return dict(tok(texts, padding=True, return_tensors="pt"))


# -- 1. embeddings equal transformers' own -------------------------------------------------

def test_image_embeddings_equal_transformers(hf_folders, loaded, kind):
    ref, proc, _ = _reference(hf_folders, kind)
    images = _images()
    with torch.no_grad():
        want = _pooled(ref.get_image_features(**proc(images=images, return_tensors="pt")))
    model = loaded[kind]
    got = model.encode_images(model.to_pixels(images), normalize=False)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_text_embeddings_equal_transformers(hf_folders, loaded, kind):
    ref, _, tok = _reference(hf_folders, kind)
    texts = ["a photo of a dog.", "a cat", "an image of a large red car on a road"]
    with torch.no_grad():
        want = _pooled(ref.get_text_features(**_text_inputs(tok, kind, texts)))
    got = loaded[kind].encode_texts(texts, normalize=False)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_pixels_are_the_processors_preprocessing_without_normalisation(hf_folders, loaded, kind):
    _, proc, _ = _reference(hf_folders, kind)
    images = _images()
    normalised = proc(images=images, return_tensors="pt")["pixel_values"]
    model = loaded[kind]
    pixels = model.to_pixels(images)
    assert pixels.shape == (3, 3, 32, 32) and 0 <= float(pixels.min()) and float(pixels.max()) <= 1
    mean = torch.tensor(proc.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(proc.image_std).view(1, 3, 1, 1)
    torch.testing.assert_close((pixels - mean) / std, normalised, atol=1e-5, rtol=0)


def test_context_length_and_token_counts_come_from_the_checkpoint(loaded, kind):
    model = loaded[kind]
    assert model.context_length == 16
    # "a photo of a dog" is 5 BPE tokens; CLIP's tokenizer adds start and end
    assert model.token_counts(["a photo of a dog"]) == [7]
    with pytest.warns(UserWarning, match="16-token text context"):
        model.encode_texts(["word " * 20])


def test_manifest_records_backend_processor_and_scoring(loaded, kind):
    facts = loaded[kind].describe()
    json.dumps(facts)  # a manifest must be JSON
    assert facts["arch"] == "vit" and facts["image_size"] == 32
    assert facts["backend"] == ("transformers CLIPModel" if kind == "clip" else "transformers SiglipModel")
    if kind == "clip":
        # transformers' CLIPConfig initialises logit_scale to 2.6592 (= log 1/0.07)
        assert facts["scoring"] == {"rule": "softmax", "scale": pytest.approx(np.exp(2.6592), rel=1e-5)}
        assert facts["preprocess"]["do_center_crop"] is True
    else:
        assert facts["scoring"] == {"rule": "sigmoid", "scale": pytest.approx(10.0), "bias": pytest.approx(-2.0)}
        assert facts["preprocess"]["mean"] == [0.5, 0.5, 0.5]


# -- 2. layers and hooks -------------------------------------------------------------------

def _activation_fn(kind):
    if kind == "clip":  # quick_gelu, Radford et al.'s approximation
        return lambda x: x * torch.sigmoid(1.702 * x)
    return lambda x: torch.nn.functional.gelu(x, approximate="tanh")


def test_penultimate_is_the_last_mlps_hidden_units(hf_folders, loaded, kind):
    ref, proc, _ = _reference(hf_folders, kind)
    model = loaded[kind]
    layer = resolve_layer(model, "penultimate")
    assert layer.path == "visual.body.encoder.layers.1.mlp.activation_fn"
    assert layer.layout == "nld" and layer.n_neurons == 48  # intermediate_size of the config
    images = _images()
    seen = {}
    last = ref.vision_model.encoder.layers[-1].mlp.fc1
    handle = last.register_forward_hook(lambda _m, _i, out: seen.setdefault("fc1", out.detach()))
    try:
        with torch.no_grad():
            ref.get_image_features(**proc(images=images, return_tensors="pt"))
    finally:
        handle.remove()
    emb, cache = run_with_cache(model, model.to_pixels(images), "penultimate")
    torch.testing.assert_close(cache["penultimate"], _activation_fn(kind)(seen["fc1"]), atol=1e-5, rtol=0)
    assert torch.equal(emb, model.encode_images(model.to_pixels(images)))  # hooked forward == bare


def test_block_aliases_and_early_exit(loaded, kind):
    model = loaded[kind]
    assert resolve_layer(model, "block:-1").path == "visual.body.encoder.layers.1"
    assert resolve_layer(model, "block:0").layout == "nld"
    pixels = model.to_pixels(_images())
    emb, cache = run_with_cache(model, pixels, "block:0", stop_at=True)
    assert emb is None and cache.neurons("block:0").shape == (3, 32)


def test_ablating_penultimate_equals_weight_surgery(hf_folders, loaded, kind):
    ref, proc, _ = _reference(hf_folders, kind)
    model = loaded[kind]
    images = _images()
    ids = [0, 5, 47]
    cut = copy.deepcopy(ref)
    with torch.no_grad():  # zero activations feed nothing into fc2: zero those input columns
        cut.vision_model.encoder.layers[-1].mlp.fc2.weight[:, ids] = 0
        want = _pooled(cut.get_image_features(**proc(images=images, return_tensors="pt")))
    bare = model.encode_images(model.to_pixels(images), normalize=False)
    with ablate(model, "penultimate", ids, 0.0):
        got = model.encode_images(model.to_pixels(images), normalize=False)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert not torch.allclose(got, bare, atol=1e-4)
    with patch(model, "penultimate", lambda a, _l: a):
        same = model.encode_images(model.to_pixels(images), normalize=False)
    assert torch.equal(same, bare)


# -- 3. scoring rule -----------------------------------------------------------------------

def _hf_logits(hf_folders, kind, images):
    ref, proc, tok = _reference(hf_folders, kind)
    texts = [f"a photo of a {c}." for c in CLASSES]
    with torch.no_grad():
        out = ref(**_text_inputs(tok, kind, texts), pixel_values=proc(images=images, return_tensors="pt")["pixel_values"])
    return out.logits_per_image


def test_siglip_probabilities_are_transformers_sigmoids(hf_folders, loaded):
    model = loaded["siglip"]
    images = _images(3)
    head = model.classifier(CLASSES)
    assert head.rule == "sigmoid"
    want = torch.sigmoid(_hf_logits(hf_folders, "siglip", images))
    pixels = model.to_pixels(images)
    torch.testing.assert_close(head(pixels), _hf_logits(hf_folders, "siglip", images), atol=1e-5, rtol=0)
    got = predict_probs(head, pixels)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert not torch.allclose(got.sum(1), torch.ones(3), atol=1e-2)  # independent per class


def test_clip_probabilities_are_transformers_softmax(hf_folders, loaded):
    model = loaded["clip"]
    images = _images(3)
    head = model.classifier(CLASSES)
    assert head.rule == "softmax"
    want = _hf_logits(hf_folders, "clip", images).softmax(-1)
    torch.testing.assert_close(predict_probs(head, model.to_pixels(images)), want, atol=1e-6, rtol=0)


def test_a_sigmoid_model_in_a_softmax_head_is_refused(loaded):
    with pytest.raises(ValueError, match="scores with a sigmoid.*use rule='sigmoid'"):
        loaded["siglip"].classifier(CLASSES, rule="softmax")
    with pytest.raises(ValueError, match="scores with a softmax"):
        loaded["clip"].classifier(CLASSES, rule="sigmoid")


@pytest.fixture(scope="module")
def open_clip_siglip(tmp_path_factory):
    """A tiny open_clip architecture trained-as-SigLIP (``init_logit_bias``), random init."""
    import open_clip

    cfg = {"embed_dim": 32, "init_logit_bias": -2.0,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
    folder = tmp_path_factory.mktemp("oc_cfg")
    (folder / "tiny-sigmoid-clip-test.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model("tiny-sigmoid-clip-test", pretrained="none", device="cpu", text_cache=False)


def test_open_clip_siglip_scores_with_a_sigmoid(open_clip_siglip):
    import open_clip

    model = open_clip_siglip
    assert model.scoring == "sigmoid" and model.describe()["scoring"]["bias"] == pytest.approx(-2.0)
    pixels = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    head = model.classifier(CLASSES)
    tokens = open_clip.tokenize([f"a photo of a {c}." for c in CLASSES], context_length=16)
    with torch.no_grad():
        img, txt, scale, bias = model.model(model.normalize(pixels), tokens)[:4]
    want = torch.sigmoid(scale * img @ txt.T + bias)
    got = predict_probs(head, pixels)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="sigmoid"):
        model.classifier(CLASSES, rule="softmax")


def test_open_clip_softmax_models_keep_their_rule(tiny_vit):
    head = tiny_vit.classifier(["apple", "pizza", "car"])
    assert tiny_vit.scoring == "softmax" and tiny_vit.describe()["scoring"]["rule"] == "softmax"
    pixels = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(predict_probs(head, pixels).sum(1), torch.ones(2))


# -- 5. bad input --------------------------------------------------------------------------

def test_a_folder_of_neither_format_says_what_it_found(tmp_path):
    (tmp_path / "weights.ckpt").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ClipauditError, match=r"neither a transformers model.*found: notes.txt, weights.ckpt"):
        load_model(str(tmp_path), device="cpu")


def test_an_open_clip_folder_is_pointed_at_its_weights(tmp_path):
    (tmp_path / "open_clip_config.json").write_text("{}")
    (tmp_path / "open_clip_pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ClipauditError, match="open_clip folder.*--pretrained .*open_clip_pytorch_model.bin"):
        load_model(str(tmp_path), device="cpu")


def test_a_transformers_model_that_is_not_a_dual_encoder_is_refused_by_class(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(ClipauditError, match="holds a transformers BertModel, not a CLIP/SigLIP dual encoder"):
        load_model(str(tmp_path), device="cpu")


def test_a_hub_id_absent_from_the_cache_says_what_to_do(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ClipauditError, match="not in the local Hugging Face cache.*huggingface-cli download"):
        load_model("nobody/no-such-clip", device="cpu")


def test_a_hub_id_in_the_cache_loads(hf_folders, tmp_path, monkeypatch):
    import shutil

    import huggingface_hub.constants as hc

    snap = tmp_path / "models--someone--tiny-clip" / "snapshots" / ("0" * 40)
    shutil.copytree(hf_folders["clip"], snap)
    (tmp_path / "models--someone--tiny-clip" / "refs").mkdir()
    (tmp_path / "models--someone--tiny-clip" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model("someone/tiny-clip", device="cpu", text_cache=False)
    assert model.name == "someone/tiny-clip" and model.describe()["backend"] == "transformers CLIPModel"


# -- 4. every audit runs end to end through the CLI ----------------------------------------

def _cli(argv):
    from clipaudit.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(argv)


_AUDITS = {
    "typographic": ["--target", "dog", "--n-images", "8", "--bootstrap", "100"],
    "neurons": ["--n-images", "16", "--top", "2", "--steps", "4", "--n-words", "4", "--n-pictures", "4",
                "--attribution-images", "2"],
    "adversarial": ["--n-images", "6", "--steps", "2", "--sanity-n", "4"],
    "bias": ["--n-images", "40", "--bootstrap", "100", "--permutations", "100"],
}


@pytest.mark.parametrize("audit", list(_AUDITS))
def test_audits_run_end_to_end_on_transformers_models(hf_folders, kind, audit, tmp_path, capsys):
    classes = tmp_path / "classes.txt"
    classes.write_text("dog\ncat\ncar\n")
    extra = ["--classes", str(classes)] if audit in ("typographic", "adversarial") else []
    out = tmp_path / "run"
    rc = _cli([audit, "--model", str(hf_folders[kind]), "--device", "cpu", "--out", str(out), *_AUDITS[audit], *extra])
    assert rc == 0, capsys.readouterr()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["model"]["scoring"]["rule"] == ("softmax" if kind == "clip" else "sigmoid")
    assert manifest["model"]["backend"].startswith("transformers")
    assert "written to" in capsys.readouterr().out


def test_bad_model_folder_is_one_line_and_exit_2_through_the_cli(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit", "architectures": ["ViTModel"]}))
    assert _cli(["typographic", "--model", str(tmp_path), "--target", "dog", "--device", "cpu",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ViTModel, not a CLIP/SigLIP dual encoder" in err


def test_attacks_on_a_sigmoid_model_use_its_sigmoid_loss(loaded):
    """Issue 21: an attack on a SigLIP head maximises the model's own sigmoid loss, not a softmax
    cross-entropy: -sum_j log sigmoid(s_j z_j), s = +1 for the label and -1 for the others."""
    from clipaudit.attacks.adversarial import Objective

    model = loaded["siglip"]
    head = model.classifier(CLASSES)
    pixels = model.to_pixels(_images(2))
    labels = torch.tensor([0, 2])
    loss, logits = Objective(head, labels)(pixels)
    z = logits.double()
    want = []
    for i, y in enumerate(labels.tolist()):
        terms = [math.log(1 / (1 + math.exp(-(z[i, j].item() if j == y else -z[i, j].item())))) for j in range(len(CLASSES))]
        want.append(-sum(terms))
    torch.testing.assert_close(loss.double(), torch.tensor(want, dtype=torch.float64), atol=1e-5, rtol=1e-5)
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    assert not torch.allclose(loss, ce, atol=1e-3)  # a softmax objective would be a different number
    target_loss, _ = Objective(head, labels, target=1)(pixels)
    assert target_loss.shape == (2,) and bool((target_loss <= 0).all())  # minus a sum of -log terms


def test_head_decomposition_of_a_transformers_clip_is_exact(hf_folders, loaded):
    """Issue 21: `clipaudit heads`' decomposition on transformers' attention modules: the parts sum
    to the model's own embedding, tokens sum to heads, and the CLS attention rows equal the ones
    transformers returns with output_attentions."""
    import transformers

    from clipaudit.probes.decompose import decompose, n_heads

    model = loaded["clip"]
    pixels = model.to_pixels(_images(3))
    d = decompose(model, pixels, tokens=True)
    assert d.max_rel_error < 1e-5
    torch.testing.assert_close(d.tokens.sum(3), d.heads)
    ref = transformers.CLIPModel.from_pretrained(str(hf_folders["clip"]), attn_implementation="eager").eval()
    with torch.no_grad():
        out = ref.vision_model(pixel_values=model.normalize(pixels), output_attentions=True)
    layers, heads = n_heads(model)
    assert (layers, heads) == (len(out.attentions), out.attentions[0].shape[1])
    for l, att in enumerate(out.attentions):
        torch.testing.assert_close(d.attention[:, l].float(), att[:, :, 0].float(), atol=1e-5, rtol=1e-4)


def test_head_decomposition_refuses_siglip_attention_pooling(loaded):
    from clipaudit.probes.decompose import decompose

    model = loaded["siglip"]
    with pytest.raises(ClipauditError, match="MAP pooling"):
        decompose(model, model.to_pixels(_images(1)))


def test_head_ablation_on_a_transformers_clip_equals_zeroing_its_slice(loaded):
    """Zero-ablating head (l, h) through clipaudit's patch equals zeroing that head's slice of the
    concatenated head outputs going into transformers' out_proj (an independent pre-hook)."""
    from clipaudit.probes.head_ablation import HeadMask, ablate_heads

    model = loaded["clip"]
    pixels = model.to_pixels(_images(2))
    attn = model.model.visual.body.encoder.layers[1].self_attn
    dh = attn.head_dim

    def zero_head(_mod, args):
        x = args[0].clone()
        x[..., 2 * dh:3 * dh] = 0
        return (x,)

    handle = attn.out_proj.register_forward_pre_hook(zero_head)
    try:
        with torch.no_grad():
            want = model.encode_images(pixels, normalize=False)
    finally:
        handle.remove()
    with torch.no_grad(), ablate_heads(model, HeadMask([(1, 2)], "zero")):
        got = model.encode_images(pixels, normalize=False)
    with torch.no_grad():
        clean = model.encode_images(pixels, normalize=False)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(got, clean, atol=1e-4)


def test_heads_audit_runs_on_a_transformers_clip_and_refuses_siglip_in_one_line(hf_folders, tmp_path, capsys):
    out = tmp_path / "heads"
    assert _cli(["heads", "--model", str(hf_folders["clip"]), "--device", "cpu", "--n-images", "12",
                 "--out", str(out)]) == 0, capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())["heads"]
    assert summary["decomposition_max_rel_error"] < 1e-5
    capsys.readouterr()
    assert _cli(["heads", "--model", str(hf_folders["siglip"]), "--device", "cpu", "--n-images", "12",
                 "--out", str(tmp_path / "sig")]) == 2
    err = capsys.readouterr().err
    assert "MAP pooling" in err and "Traceback" not in err
