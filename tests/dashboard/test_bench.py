"""The live bench without a browser: uploads are checked (size, type, decompression bombs),
writing a word moves the toy's probabilities, ablating a unit changes them exactly as the core
ablation does, and without --model there is no bench."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from clipaudit.cli import main
from clipaudit.dashboard import bench as bench_mod
from clipaudit.dashboard.app import create_app, render_page
from clipaudit.dashboard.bench import MAX_UPLOAD_BYTES, Bench, decode_upload, scene_image
from clipaudit.dashboard.data import RunStore
from clipaudit.dashboard.page_bench import compute
from clipaudit.hooks import ablate

from .helpers import text


def _data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


def _png(size=(40, 30), colour=(200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def bench(toy_model):
    return Bench(toy_model)


@pytest.fixture(scope="module")
def store(runs_root):
    return RunStore(runs_root)


def test_upload_decodes_in_memory():
    img = decode_upload(_data_url(_png()), "red.png")
    assert img.size == (40, 30) and img.mode == "RGB" and img.getpixel((0, 0)) == (200, 10, 10)


@pytest.mark.parametrize("contents,why", [
    (_data_url(b"%PDF-1.4 not an image at all"), "is not an image Pillow can read"),
    (_data_url(b"hello", "text/plain"), "is not an image Pillow can read"),
    ("hello", "did not arrive as a file"),
    ("data:image/png;base64,@@@@", "is not valid base64"),
    (_data_url(_png()[:60]), "damaged image"),
])
def test_bad_uploads_are_one_line_messages(contents, why):
    with pytest.raises(ValueError, match=why):
        decode_upload(contents, "x.bin")


def test_upload_over_50_mb_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(bench_mod, "MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(ValueError, match=r"'big.png' is 0.0 MB; the limit is 0.0 MB"):
        decode_upload(_data_url(b"\0" * 2000), "big.png")
    assert MAX_UPLOAD_BYTES == 50 * 1024 * 1024


def test_decompression_bomb_is_refused():
    # a 20,000 x 20,000 one-bit PNG: ~60 kB on disk, 400 megapixels decoded
    buf = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buf, format="PNG")
    assert len(buf.getvalue()) < 200_000
    with pytest.raises(ValueError, match="decompression bomb"):
        decode_upload(_data_url(buf.getvalue()), "bomb.png")


def test_writing_ipod_moves_the_probabilities(bench, store):
    plain = compute(bench, store, None, "apple", 0, "", None, "center", "note", None)
    written = compute(bench, store, None, "apple", 0, "ipod", None, "center", "note", None)
    assert plain["error"] == "" and written["error"] == ""
    p = written["probs"].set_index("class")
    assert p.loc["ipod", "word"] > p.loc["ipod", "clean"] + 0.2  # the toy reads the word (planted fact)
    assert p["word"].sum() == pytest.approx(1.0, abs=1e-5)
    assert p.index[0] == "ipod"


def test_ablating_a_unit_matches_the_core_ablation(bench, store, toy_model):
    out = compute(bench, store, None, "apple", 0, "", None, "center", "note", 7)
    pixels = toy_model.to_pixels(scene_image("apple", 0))
    with torch.no_grad(), ablate(toy_model, bench.resolved, [7]):
        expected = torch.softmax(bench.head(pixels), -1)[0].numpy()
    got = out["probs"].set_index("class").loc[bench.classes, "ablated"].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_clamping_a_unit_matches_the_core_patch_and_moves_the_probabilities(bench, store, toy_model):
    out = compute(bench, store, None, "apple", 0, "", None, "center", "note", 7, 25.0)
    pixels = toy_model.to_pixels(scene_image("apple", 0))
    with torch.no_grad(), ablate(toy_model, bench.resolved, [7], 25.0):
        expected = torch.softmax(bench.head(pixels), -1)[0].numpy()
    got = out["probs"].set_index("class").loc[bench.classes, "ablated"].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    ablated = compute(bench, store, None, "apple", 0, "", None, "center", "note", 7, None)
    assert not np.allclose(got, ablated["probs"].set_index("class").loc[bench.classes, "ablated"].to_numpy())


@pytest.mark.parametrize("value,why", [("x", "must be a number"), (float("nan"), "finite"), (1e9, "within")])
def test_bad_clamp_values_are_a_message(bench, store, value, why):
    out = compute(bench, store, None, "apple", 0, "", None, "center", "note", 7, value)
    assert why in out["error"] and out["probs"] is None


def test_top_units_are_the_largest_activations(bench, toy_model):
    from clipaudit.hooks import capture, neurons

    pixels = toy_model.to_pixels(scene_image("pizza", 3))
    with torch.no_grad(), capture(toy_model, [bench.resolved]) as acts:
        toy_model.encode_images(pixels)
    act = neurons(acts[bench.resolved.path], bench.resolved.layout)[0]
    top = bench.top_units(pixels, k=5)
    assert list(top["unit"]) == torch.argsort(act, descending=True)[:5].tolist()


@pytest.mark.parametrize("word,unit,why", [
    ("木字", None, "the font has no glyph for '木', '字'"),
    ("", 10_000, "unit 10000 is not in"),
    ("", "x", "must be a whole number"),
])
def test_bench_bad_input_is_a_message(bench, store, word, unit, why):
    out = compute(bench, store, None, "apple", 0, word, None, "center", "note", unit)
    assert why in out["error"] and out["probs"] is None


def test_upload_through_compute_and_page(bench, store, toy_model, runs_root):
    out = compute(bench, store, _data_url(_png((64, 64))), "apple", 0, "", None, "center", "note", None)
    assert out["error"] == "" and out["image"].startswith("data:image/png;base64,")
    bad = compute(bench, store, _data_url(b"not an image"), "apple", 0, "", None, "center", "note", None)
    assert "is not an image" in bad["error"]
    app = create_app(runs_root, model=toy_model)
    tree = render_page(app.clipaudit_store, "/bench", None, None, extra=(app.clipaudit_bench,))
    assert "Live bench" in text(tree) and "ipod" in text(tree)


def test_without_model_there_is_no_bench(runs_root):
    app = create_app(runs_root)
    assert app.clipaudit_bench is None
    assert "No page at /bench" in text(render_page(app.clipaudit_store, "/bench", None, None))


def test_cli_loads_the_model_for_the_bench(monkeypatch, capsys, runs_root, toy_model):
    from dash import Dash

    import clipaudit.model as model_mod

    seen = {}
    monkeypatch.setattr(model_mod, "load_model", lambda name, **kw: seen.setdefault("model", toy_model))
    monkeypatch.setattr(Dash, "run", lambda self, **kw: seen.update(kw))
    assert main(["dashboard", "--runs", str(runs_root), "--model", "toy"]) == 0
    assert seen["host"] == "127.0.0.1"
    assert "live bench with toy at /bench" in capsys.readouterr().out


def test_bench_lists_the_heads_that_push_the_prediction(bench, store, toy_model):
    from clipaudit.probes.decompose import decompose, project

    out = compute(bench, store, None, "apple", 0, "", None, "center", "note", None)
    heads = out["heads"]
    assert heads is not None and len(heads) >= 1
    assert list(heads["contribution"]) == sorted(heads["contribution"], reverse=True)
    assert heads["predicted"].iloc[0] == out["probs"].iloc[0]["class"]
    # the listed best head is the argmax of the direct logit attribution over every head
    pixels = toy_model.to_pixels(scene_image("apple", 0))
    d = decompose(toy_model, pixels)
    dla = project(d.heads, d, bench.head.weights.float(), toy_model.logit_scale)[0][..., bench.classes.index(
        heads["predicted"].iloc[0])]
    l, h = divmod(int(dla.flatten().argmax()), dla.shape[1])
    assert (int(heads["layer"].iloc[0]), int(heads["head"].iloc[0])) == (l, h)
