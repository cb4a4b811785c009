"""``clipaudit adversarial`` from the command line: bad input is one line + exit 2."""
from __future__ import annotations

import json

import pytest

from clipaudit.cli import main


BASE = ["adversarial", "--model", "toy-vit", "--pretrained", "none", "--device", "cpu", "--n-images", "4",
        "--steps", "2", "--sanity-n", "4", "--examples", "1"]


@pytest.mark.parametrize("flags,needle", [
    (["--eps=-1/255"], "negative"),
    (["--eps", "2"], "above 1"),
    (["--eps", "four/255"], "cannot read --eps"),
    (["--eps-sweep", "0,1/255,x"], "cannot read --eps-sweep"),
    (["--eps-sweep", "0,1.5"], "above 1"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--restarts", "0"], "--restarts must be >= 1"),
    (["--step-size", "0"], "--step-size must be > 0"),
    (["--target", "  "], "--target is empty"),
    (["--target", " ".join(["verylongword"] * 20)], "too long"),
    (["--images", "/no/such/folder"], "does not exist"),
    (["--step-size", "2"], "--step-size 2 is above eps"),
    (["--attack", "fgsm"], "FGSM takes exactly one step"),  # BASE passes --steps 2
    (["--norm", "l2", "--eps", "110.86"], "diagonal of the 64px pixel cube"),
])
def test_bad_input_is_one_line_and_exit_2(flags, needle, capsys, tmp_path):
    code = main(BASE + ["--out", str(tmp_path / "run")] + flags)
    err = capsys.readouterr().err
    assert code == 2
    line = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(line) == 1 and needle in line[0], err
    assert "Traceback" not in err


def test_images_that_all_fail_to_load(capsys, tmp_path):
    bad = tmp_path / "imgs"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"not a png")
    code = main(BASE + ["--images", str(bad), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "no image could be loaded (1 skipped" in err and "Traceback" not in err
    assert (tmp_path / "run" / "skipped.csv").read_text().splitlines()[1].startswith("x.png,")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed"


def test_cli_run_prints_headline_and_writes_summary(capsys, tmp_path):
    code = main(BASE + ["--eps", "0.0314", "--target", "pizza", "--eps-sweep", "0,2/255",
                        "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0
    assert "robust accuracy" in out and "sanity:" in out
    s = json.loads((tmp_path / "run" / "summary.json").read_text())["adversarial"]
    assert s["eps"] == pytest.approx(0.0314) and s["target"] == "pizza" and s["eps_sweep"][:2] == [0.0, 2 / 255]
    assert f"{s['attack_success_rate']:.3f}" in out


def test_fgsm_records_one_step_in_printout_config_and_summary(capsys, tmp_path):
    flags = [f for f in BASE if f not in ("--steps", "2")]
    code = main(flags + ["--attack", "fgsm", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0 and "FGSM linf" in out and "1 step" in out
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    config = manifest.get("config") or manifest["configs"]["adversarial"]
    assert config["steps"] == 1 and config["restarts"] == 1
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["adversarial"]["steps"] == 1


@pytest.mark.parametrize("target", [None, "pizza"])
def test_a_one_class_head_is_refused(target, capsys, tmp_path):
    one = tmp_path / "one.txt"
    one.write_text("pizza\n")
    code = main(BASE + ["--classes", str(one), "--out", str(tmp_path / "run")] + (["--target", target] if target else []))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    line = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(line) == 1 and "the zero-shot head has 1 class(es) ('pizza')" in line[0], err
