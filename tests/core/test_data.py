"""Image sources: odd modes are converted, bad files are skipped and listed, never fatal."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from clipaudit.data import ImageLoadError, csv_source, folder_source, load_image, open_source, toy_source
from clipaudit.errors import ClipauditError

MODES = ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "I", "F", "1"]


def _make(mode: str, w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, size=(h, w), dtype=np.uint16))
        assert img.mode == "I;16"
        return img
    if mode in ("I", "F"):
        arr = rng.integers(0, 100000, size=(h, w)).astype(np.int32 if mode == "I" else np.float32)
        img = Image.fromarray(arr)
        assert img.mode == mode
        return img
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).convert(mode)


@settings(max_examples=25, deadline=None)
@given(mode=st.sampled_from(MODES), w=st.integers(1, 300), h=st.integers(1, 300))
def test_every_mode_and_size_becomes_rgb_pixels(tmp_path_factory, tiny_vit, mode, w, h):
    path = tmp_path_factory.mktemp("img") / ("x.tif" if mode in ("I;16", "I", "F", "CMYK") else "x.png")
    _make(mode, w, h).save(path)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (w, h)
    px = tiny_vit.to_pixels([img])
    assert px.shape == (1, 3, 64, 64) and float(px.min()) >= 0 and float(px.max()) <= 1


def test_transparent_pixels_become_white(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    rgba.save(tmp_path / "t.png")
    assert load_image(tmp_path / "t.png").getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_is_scaled_by_its_bit_depth_not_its_range(tmp_path):
    """65535 is white: a dark 16-bit image stays dark (it used to be stretched to full range)."""
    arr = np.array([[1000, 2000]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    assert load_image(tmp_path / "d.png").getpixel((1, 0)) == (8, 8, 8)  # 2000 / 65535 * 255 = 7.8


def _folder(tmp_path):
    root = tmp_path / "imgs"
    (root / "cats").mkdir(parents=True)
    (root / "dogs").mkdir()
    _make("RGB", 40, 30).save(root / "cats" / "a.jpg")
    _make("RGBA", 20, 20).save(root / "dogs" / "b.png")
    full = root / "dogs" / "full.png"
    _make("RGB", 50, 50).save(full)
    (root / "dogs" / "trunc.png").write_bytes(full.read_bytes()[:200])
    (root / "cats" / "fake.jpg").write_bytes(b"not an image at all")
    (root / "notes.txt").write_text("hello")
    return root


def test_folder_source_skips_and_lists_bad_files(tmp_path, tiny_rn):
    src = folder_source(_folder(tmp_path))
    batches = list(src.batches(tiny_rn, batch_size=2))
    ids = [i for b in batches for i in b.ids]
    assert sorted(ids) == ["cats/a.jpg", "dogs/b.png", "dogs/full.png"]
    skipped = dict(src.skipped)
    assert set(skipped) == {"notes.txt", "dogs/trunc.png", "cats/fake.jpg"}
    assert "truncated" in skipped["dogs/trunc.png"] and "not an image" in skipped["cats/fake.jpg"]
    labels = {i: l for b in batches for i, l in zip(b.ids, b.meta["label"])}
    assert labels["cats/a.jpg"] == "cats"


def test_huge_image_is_skipped_not_decoded(tmp_path, monkeypatch):
    import clipaudit.data as data

    _make("RGB", 100, 100).save(tmp_path / "big.png")
    monkeypatch.setattr(data, "MAX_PIXELS", 5000)
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(tmp_path / "big.png")


def test_empty_sources_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClipauditError, match="holds no images"):
        folder_source(tmp_path / "empty")
    with pytest.raises(ClipauditError, match="does not exist"):
        open_source(tmp_path / "nope")


def test_csv_source(tmp_path, tiny_vit):
    root = _folder(tmp_path)
    pd.DataFrame({"file": ["cats/a.jpg", "dogs/missing.png"], "race": ["x", "y"]}).to_csv(root / "meta.csv", index=False)
    src = csv_source(root / "meta.csv")
    batches = list(src.batches(tiny_vit))
    assert [b.ids for b in batches] == [["cats/a.jpg"]] and batches[0].meta["race"].tolist() == ["x"]
    assert src.skipped == [("dogs/missing.png", "file not found")]


def test_bad_csvs(tmp_path):
    (tmp_path / "nocol.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ClipauditError, match="no image path column"):
        csv_source(tmp_path / "nocol.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ClipauditError, match="cannot parse CSV"):
        csv_source(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("path,race\n")
    with pytest.raises(ClipauditError, match="holds no images"):
        csv_source(tmp_path / "header.csv")


def test_toy_source_is_deterministic(tiny_vit):
    a = next(toy_source(8, seed=5).batches(tiny_vit, 8))
    b = next(toy_source(8, seed=5).batches(tiny_vit, 8))
    c = next(toy_source(8, seed=6).batches(tiny_vit, 8))
    assert a.pixels.equal(b.pixels) and not a.pixels.equal(c.pixels)
    assert {"label", "word", "skin", "caption"} <= set(a.meta.columns)


def test_shards_partition_the_source():
    src = toy_source(10, seed=1)
    parts = [src.shard(r, 3).ids for r in range(3)]
    assert sorted(sum(parts, [])) == sorted(src.ids) and len(set(parts[0]) & set(parts[1])) == 0


def test_read_ahead_is_bounded_by_batches_not_the_folder(tiny_vit):
    """Decodes run at most two batches ahead of the consumer (they were all submitted at once)."""
    import threading
    import time

    from clipaudit.data import ImageSource

    lock = threading.Lock()
    state = {"decoded": 0, "consumed": 0, "most_ahead": 0}

    def loader(row):
        img = Image.new("RGB", (8, 8), (int(row["id"]) % 256, 0, 0))
        with lock:
            state["decoded"] += 1
            state["most_ahead"] = max(state["most_ahead"], state["decoded"] - state["consumed"])
        return img

    n, batch = 96, 4
    src = ImageSource(pd.DataFrame({"id": [str(i) for i in range(n)]}), loader, "counting", workers=4)
    ids = []
    for b in src.batches(tiny_vit, batch_size=batch):
        time.sleep(0.01)  # a model slower than the decoders
        with lock:
            state["consumed"] += len(b.ids)
        ids += b.ids
    assert ids == [str(i) for i in range(n)]  # order kept
    assert state["most_ahead"] <= 3 * batch, state  # this batch, the next two in flight


def test_stopping_early_leaves_no_decodes_running(tiny_vit):
    from clipaudit.data import ImageSource

    calls = []
    src = ImageSource(pd.DataFrame({"id": [str(i) for i in range(200)]}),
                      lambda row: calls.append(row["id"]) or Image.new("RGB", (8, 8)), "counting", workers=4)
    it = src.batches(tiny_vit, batch_size=5)
    next(it)
    it.close()
    assert len(calls) <= 3 * 5


def test_a_subset_keeps_what_the_source_knows():
    from clipaudit.bias.datasets import open_dataset

    src = toy_source(8, seed=3, kind="object")
    sub = src.subset([True, False] * 4)
    assert len(sub) == 4 and list(sub.ids) == src.ids[::2]
    assert sub.classnames == src.classnames and sub.pictures is src.pictures and sub.layout == "toy"
    people = open_dataset("toy:16")
    part = people.shard(0, 2)
    assert part.attributes == people.attributes == ("skin", "hair", "age") and part.layout == "toy"


def test_default_classes_prefer_the_sources_vocabulary_then_its_labels_then_the_model(tiny_rn):
    import dataclasses

    import pandas as pd

    from clipaudit.errors import ClipauditError
    from clipaudit.zeroshot import default_classes

    src = toy_source(4, seed=3, kind="object")
    assert default_classes(tiny_rn, src) == list(src.classnames)  # all 16 classes, not only the 4 drawn
    labelled = dataclasses.replace(src, classnames=None, items=src.items.assign(label=["b", "a", "b", "a"]))
    assert default_classes(tiny_rn, labelled) == ["a", "b"]
    bare = dataclasses.replace(src, classnames=None, items=pd.DataFrame({"id": ["0", "1"]}))
    assert default_classes(tiny_rn, bare) == list(tiny_rn.classnames)
    with pytest.raises(ClipauditError, match="--classes"):
        default_classes(dataclasses.replace(tiny_rn, classnames=None), bare)
