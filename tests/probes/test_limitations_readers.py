"""Readers for the real shift datasets' layouts, on tiny synthetic folders."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from clipaudit.errors import ClipauditError

SYNSETS = "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\nn02504458 African elephant, Loxodonta africana\n"


def _img(path, ext=".JPEG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 120, np.uint8)).save(path.with_suffix(ext), format="PNG" if ext == ".png" else "JPEG")


@pytest.fixture()
def root(tmp_path):
    (tmp_path / "LOC_synset_mapping.txt").write_text(SYNSETS)
    return tmp_path


def _labels(src):
    return sorted(zip(src.items["label"], src.items["imagenet_index"]))


def test_wnid_layouts_name_classes_from_the_synset_list_with_their_index(root):
    from clipaudit.probes.datasets import open_spec

    for layout, sub in (("imagenet", "train"), ("imagenet-r", "imagenet-r"), ("imagenet-a", "imagenet-a"),
                        ("imagenet-sketch", "sketch-data/sketch")):
        _img(root / sub / "n01443537" / "a")
        _img(root / sub / "n02504458" / "b")
        spec_dir = root / sub.split("/")[0]
        src = open_spec(f"{layout}:{spec_dir}")
        assert _labels(src) == [("African elephant", 2), ("goldfish", 1)], layout


def test_imagenet_v2_folders_are_indices_into_the_synsets(root):
    from clipaudit.probes.datasets import open_spec

    _img(root / "v2" / "0" / "x", ".jpeg")
    _img(root / "v2" / "2" / "y", ".jpeg")
    src = open_spec(f"imagenet-v2:{root / 'v2'}")
    assert _labels(src) == [("African elephant", 2), ("tench", 0)]
    assert sorted(src.items["wnid"]) == ["n01440764", "n02504458"]
    _img(root / "v2" / "7" / "z", ".jpeg")
    with pytest.raises(ClipauditError, match="class indices 0-2; found 7"):
        open_spec(f"imagenet-v2:{root / 'v2'}")


def test_without_a_synset_file_the_builtin_imagenet_list_names_the_classes(tmp_path, monkeypatch):
    """ImageNet-1k facts checked independently: index 0 is n01440764 (tench), 1 n01443537 (goldfish),
    385 n02504013 (Indian elephant), 386 n02504458 (African elephant; CLIP calls it "African bush elephant"), 999 n15075141 (toilet tissue)."""
    from clipaudit.probes.datasets import builtin_synsets, open_spec

    monkeypatch.delenv("CLIPAUDIT_IMAGENET_SYNSETS", raising=False)
    syn = builtin_synsets()
    assert len(syn) == 1000 and len({w for w, _ in syn}) == 1000
    assert syn[0][0] == "n01440764" and syn[1] == ("n01443537", "goldfish")
    assert syn[385][0] == "n02504013" and syn[386][0] == "n02504458" and syn[999][0] == "n15075141"
    _img(tmp_path / "a" / "b" / "v2" / "1" / "x", ".jpeg")
    _img(tmp_path / "a" / "b" / "v2" / "386" / "y", ".jpeg")
    src = open_spec(f"imagenet-v2:{tmp_path / 'a' / 'b' / 'v2'}")
    assert _labels(src) == [("African bush elephant", 386), ("goldfish", 1)]  # CLIP's name for it
    _img(tmp_path / "r" / "imagenet-r" / "n02504458" / "z")
    assert _labels(open_spec(f"imagenet-r:{tmp_path / 'r' / 'imagenet-r'}")) == [("African bush elephant", 386)]


def test_flat_imagenet_val_reads_the_solution_csv(root):
    from clipaudit.probes.datasets import open_spec

    _img(root / "val" / "ILSVRC2012_val_00000001")
    _img(root / "val" / "ILSVRC2012_val_00000002")
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 1 2 3 4\n"
                                               "ILSVRC2012_val_00000002,n02504458 5 6 7 8\n")
    assert _labels(open_spec(f"imagenet-val:{root / 'val'}")) == [("African elephant", 2), ("tench", 0)]


def test_objectnet_keeps_the_imagenet_overlap_named_by_its_first_imagenet_class(tmp_path):
    from clipaudit.probes.datasets import open_spec

    on = tmp_path / "objectnet-1.0"
    _img(on / "images" / "alarm_clock" / "1", ".png")
    _img(on / "images" / "bills_money" / "2", ".png")  # no ImageNet class: left out
    (on / "mappings").mkdir()
    (on / "mappings" / "folder_to_objectnet_label.json").write_text(json.dumps(
        {"alarm_clock": "Alarm clock", "bills_money": "Bills (money)"}))
    (on / "mappings" / "objectnet_to_imagenet_1k.json").write_text(json.dumps({"Alarm clock": "analog clock; digital clock"}))
    src = open_spec(f"objectnet:{on}")
    assert src.items["label"].tolist() == ["analog clock"]
    assert src.items["imagenet_classes"].tolist() == ["analog clock; digital clock"]
    assert src.items["objectnet_label"].tolist() == ["Alarm clock"]


def test_bad_layouts_and_folders_are_refused_in_one_line(root):
    from clipaudit.probes.datasets import open_spec

    with pytest.raises(ClipauditError, match="unknown dataset layout 'imagenet-q'.*valid: imagenet, imagenet-val"):
        open_spec(f"imagenet-q:{root}")
    with pytest.raises(ClipauditError, match="imagenet-r folder .* does not exist"):
        open_spec(f"imagenet-r:{root / 'nope'}")
    _img(root / "bad" / "cats" / "a")
    with pytest.raises(ClipauditError, match="non-wnid class folders: cats"):
        open_spec(f"imagenet:{root / 'bad'}")
    with pytest.raises(ClipauditError, match="objectnet folder .* lacks mappings/folder_to_objectnet_label.json"):
        open_spec(f"objectnet:{root / 'bad'}")
