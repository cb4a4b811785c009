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
    assert [i for i, _ in ds.skipped] == ["val/2.jpg"]
    assert ds.skipped[0][1].startswith("unknown race value 'Martian' (valid: White, Black")
    assert len(ds.content_hash()) == 16


def test_fairface_missing_file_is_skipped_when_loading(fairface: Path, tiny_vit):
    ds = open_dataset(str(fairface / "fairface_label_val.csv"), layout="fairface")
    ids = [i for b in ds.batches(tiny_vit, 8) for i in b.ids]
    assert ids == ["val/0.jpg", "val/1.jpg", "val/3.jpg"]
    assert ("val/missing.jpg", "file not found") in ds.skipped


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
    reasons = dict(ds.skipped)
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


# -- issue 15/14: which label table, which separator, missing is missing, each image once ------------

def test_fairface_folder_with_train_and_val_csvs_asks_which(fairface: Path):
    (fairface / "fairface_label_train.csv").write_text("file,age,gender,race\nval/0.jpg,20-29,Male,White\n")
    with pytest.raises(ClipauditError, match=r"2 label CSVs \(fairface_label_train.csv, fairface_label_val.csv\)"):
        open_dataset(str(fairface))
    assert detect_layout(str(fairface)) == "fairface"
    ds = open_dataset(str(fairface / "fairface_label_val.csv"))  # the CSV named is the one used
    assert len(ds.items) == 4


def test_tsv_is_read_as_tab_separated(tmp_path: Path):
    for i in range(3):
        _img(tmp_path / f"{i}.jpg")
    (tmp_path / "people.tsv").write_text("path\tgroup, with comma\tage\n0.jpg\ta, b\tyoung\n"
                                         "1.jpg\tc\told\n2.jpg\ta, b\told\n")
    ds = open_dataset(str(tmp_path / "people.tsv"), attributes=["group, with comma", "age"])
    assert ds.items["group, with comma"].tolist() == ["a, b", "c", "a, b"]
    assert ds.items["age"].tolist() == ["young", "old", "old"]
    (tmp_path / "ff").mkdir()
    _img(tmp_path / "ff" / "x.jpg")
    (tmp_path / "ff" / "labels.tsv").write_text("file\tage\tgender\trace\nx.jpg\t20-29\tMale\tIndian\n")
    ff = open_dataset(str(tmp_path / "ff"))
    assert ff.layout == "fairface" and ff.items["race"].tolist() == ["Indian"]


def test_empty_cells_and_literal_nan_are_missing_not_groups(tmp_path: Path):
    for i in range(6):
        _img(tmp_path / f"{i}.jpg")
    (tmp_path / "d.csv").write_text("path,gender,age\n0.jpg,f,NaN\n1.jpg,m,\n2.jpg,,old\n3.jpg,NA,young\n"
                                    "4.jpg,f, n/a \n5.jpg,null,old\n")
    ds = open_dataset(str(tmp_path / "d.csv"), attributes=["gender", "age"])
    assert ds.items["gender"].tolist() == ["f", "m", None, None, "f", None]
    assert ds.items["age"].tolist() == [None, None, "old", "young", None, "old"]
    assert set(ds.items["gender"].dropna()) == {"f", "m"}  # no group named "NaN", "NA" or ""
    assert len(ds.items) == 6  # rows are kept: another attribute of the same image may be known


def test_duplicate_rows_are_counted_once_with_a_note(tmp_path: Path, capsys):
    for i in range(8):
        _img(tmp_path / f"{i}.jpg")
    rows = [f"{i}.jpg,{'a' if i < 4 else 'b'}" for i in range(8)]
    (tmp_path / "d.csv").write_text("path,group\n" + "\n".join(rows + rows[:4]) + "\n")  # 12 rows, 8 files
    ds = open_dataset(str(tmp_path / "d.csv"), attributes=["group"])
    assert len(ds.items) == 8 and ds.items["group"].value_counts().to_dict() == {"a": 4, "b": 4}
    dups = [i for i, why in ds.skipped if why.startswith("duplicate row")]
    assert dups == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert "4 duplicate row(s)" in capsys.readouterr().err


def test_one_image_with_conflicting_rows_is_refused(tmp_path: Path):
    _img(tmp_path / "0.jpg")
    _img(tmp_path / "1.jpg")
    (tmp_path / "d.csv").write_text("path,group\n0.jpg,a\n1.jpg,a\n0.jpg,b\n")
    with pytest.raises(ClipauditError, match=r"image '0.jpg' is listed 2 times with different attributes \(a vs b\)"):
        open_dataset(str(tmp_path / "d.csv"), attributes=["group"])
