"""Dataset readers: FairFace, UTKFace, generic CSV and toy people; bad rows listed, never a crash."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipaudit.bias.datasets import detect_layout, open_dataset
from clipaudit.errors import ClipauditError


def _img(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 120, np.uint8)).save(path)


@pytest.fixture
def fairface(tmp_path: Path) -> Path:
    for i in range(4):
        _img(tmp_path / "val" / f"{i}.jpg")
    (tmp_path / "fairface_label_val.csv").write_text(
        "file,age,gender,race,service_test\n"
        "val/0.jpg,20-29,Male,Black,True\n"
        "val/1.jpg,3-9,Female,White,False\n"
        "val/2.jpg,30-39,Female,Martian,False\n"
        "val/3.jpg,50-59,Male,East Asian,True\n"
        "val/missing.jpg,10-19,Male,Indian,True\n")
    return tmp_path


def test_fairface_reads_and_lists_unknown_values(fairface: Path):
    ds = open_dataset(str(fairface))
    assert ds.layout == "fairface" and ds.attributes == ("race", "gender", "age")
    assert list(ds.items["id"]) == ["val/0.jpg", "val/1.jpg", "val/3.jpg", "val/missing.jpg"]
    assert [i for i, _ in ds.source.skipped] == ["val/2.jpg"]
    assert ds.source.skipped[0][1].startswith("unknown race value 'Martian' (valid: White, Black")
    assert len(ds.content_hash()) == 16


def test_fairface_missing_file_is_skipped_when_loading(fairface: Path, tiny_vit):
    ds = open_dataset(str(fairface / "fairface_label_val.csv"), layout="fairface")
    ids = [i for b in ds.source.batches(tiny_vit, 8) for i in b.ids]
    assert ids == ["val/0.jpg", "val/1.jpg", "val/3.jpg"]
    assert ("val/missing.jpg", "file not found") in ds.source.skipped


def test_fairface_missing_column_is_an_error(tmp_path: Path):
    (tmp_path / "labels.csv").write_text("file,age,race\na.jpg,20-29,Black\n")
    with pytest.raises(ClipauditError, match="missing column.*gender"):
        open_dataset(str(tmp_path / "labels.csv"), layout="fairface")


def test_utkface_parses_names_and_skips_malformed(tmp_path: Path):
    for name in ["25_0_1_20170116174525125.jpg.chip.jpg", "4_1_0_20170109.jpg", "72_1_3_2017.jpg",
                 "61_1_20170109142408075.jpg", "notes.txt"]:
        _img(tmp_path / name) if name.endswith(".jpg") else (tmp_path / name).write_text("x")
    ds = open_dataset(str(tmp_path))
    assert ds.layout == "utkface"
    rows = ds.items.set_index("id")
    assert rows.loc["25_0_1_20170116174525125.jpg.chip.jpg", ["race", "gender", "age"]].tolist() == ["Black", "Male", "20-29"]
    assert rows.loc["4_1_0_20170109.jpg", "age"] == "3-9"
    assert rows.loc["72_1_3_2017.jpg", "age"] == "more than 70"
    reasons = dict(ds.source.skipped)
    assert "malformed" in reasons["61_1_20170109142408075.jpg"] and "extension" in reasons["notes.txt"]


def test_generic_csv_needs_attributes_that_exist(tmp_path: Path):
    _img(tmp_path / "a.png")
    (tmp_path / "set.csv").write_text("path,group\na.png,g1\n")
    assert detect_layout(str(tmp_path / "set.csv")) == "csv"
    assert open_dataset(str(tmp_path / "set.csv"), attributes=["group"]).attributes == ("group",)
    with pytest.raises(ClipauditError, match="needs --attributes"):
        open_dataset(str(tmp_path / "set.csv"))
    with pytest.raises(ClipauditError, match="'grp' is not a column.*valid: group"):
        open_dataset(str(tmp_path / "set.csv"), attributes=["grp"])


def test_toy_people():
    ds = open_dataset("toy:40")
    assert ds.layout == "toy" and len(ds.items) == 40 and set(ds.items["kind"]) == {"person"}
    assert set(ds.items["skin"]) <= {"tone0", "tone1", "tone2", "tone3"}
    noprops = open_dataset("toy-noprops:80")
    assert (noprops.items["role"] == "").all() and 0 < len(noprops.items) < 80


@pytest.mark.parametrize("spec,layout,match", [
    ("toy:x", "auto", "bad toy dataset"),
    ("/nonexistent/place", "auto", "does not exist"),
    ("toy", "imagenet", "unknown --layout"),
    ("toy:3", "auto", "at least 8"),
])
def test_bad_dataset_specs(spec, layout, match):
    with pytest.raises(ClipauditError, match=match):
        open_dataset(spec, layout)
