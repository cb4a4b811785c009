"""``clipaudit typographic`` bad inputs: one clear ``error:`` line, exit 2, no traceback."""
from __future__ import annotations

import pytest

from clipaudit.cli import main

BASE = ["typographic", "--pretrained", "none", "--device", "cpu", "--n-images", "4", "--bootstrap", "50"]


@pytest.mark.parametrize("extra, message", [
    (["--target", ""], "--target is empty"),
    (["--target", "   "], "--target is empty"),
    (["--target", "x" * 80], "does not fit on a 64 px image even at the minimum size"),
    (["--target", "pizza", "--font", "/no/such/font.ttf"], "font file '/no/such/font.ttf' does not exist"),
    (["--target", "pizza", "--classes", "/no/such/classes.txt"], "class file '/no/such/classes.txt' does not exist"),
    (["--target", "pizza", "--sweep", "sise=6,9"], "unknown sweep key 'sise'"),
    (["--target", "пицца"], "no glyphs for"),
])
def test_bad_input_is_one_clear_line(extra, message, capsys, tmp_path):
    code = main(BASE + ["--out", str(tmp_path / "run")] + extra)
    err = capsys.readouterr().err
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_a_run_prints_the_headline_and_writes_the_folder(capsys, tmp_path):
    code = main(BASE + ["--target", "ipod", "--out", str(tmp_path / "run"), "--classes", str(_classes(tmp_path))])
    out = capsys.readouterr().out
    assert code == 0
    assert "target 'ipod' was not in the class list; added it" in out
    assert "attack success" in out and (tmp_path / "run" / "typographic_images.csv").is_file()


def _classes(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("apple\nbanana\n")
    return path


def test_a_target_differing_only_in_case_and_spaces_uses_the_existing_class(capsys, tmp_path):
    code = main(BASE + ["--target", " Apple ", "--out", str(tmp_path / "run"), "--classes", str(_classes(tmp_path))])
    out = capsys.readouterr().out
    assert code == 0
    assert "note: target ' Apple ' matched the class 'apple'" in out and "added it" not in out
    assert "toward 'apple'" in out


def test_a_near_duplicate_target_is_refused_with_did_you_mean(capsys, tmp_path):
    code = main(BASE + ["--target", "apples", "--out", str(tmp_path / "run"), "--classes", str(_classes(tmp_path))])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "did you mean --target 'apple'" in lines[0]
    assert not (tmp_path / "run").exists()


def test_a_one_class_head_is_refused(capsys, tmp_path):
    """Only 'pizza' to choose from: every image 'becomes' pizza, so success would read 1.000 [1.00, 1.00]."""
    one = tmp_path / "one.txt"
    one.write_text("pizza\n")
    code = main(BASE + ["--target", "pizza", "--classes", str(one), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "the zero-shot head has 1 class(es) ('pizza')" in lines[0]
    assert "at least two classes" in lines[0]
