"""`clipaudit audit` (the main job) and `clipaudit diff` on the embedded toy."""
from __future__ import annotations

import json

import pytest

from clipaudit.cli import main
from clipaudit.runs import open_run


@pytest.fixture(scope="module")
def audit_run(tmp_path_factory, toy_rn):
    out = tmp_path_factory.mktemp("audit") / "run"
    assert main(["audit", "--quick", "--out", str(out), "--seed", "3"]) == 0
    return out


def test_audit_runs_every_audit_into_one_folder(audit_run, capsys):
    view = open_run(audit_run)
    from clipaudit import AUDITS

    assert view.manifest["audits"] == [name for name in AUDITS if AUDITS[name].plan is not None]
    assert view.manifest["audits"][:4] == ["neurons", "typographic", "adversarial", "bias"]
    assert view.manifest["status"] == "complete" and view.manifest["command"] == "audit"
    assert set(view.summary) >= {"neurons", "typographic", "adversarial", "bias"}
    # the toy's planted facts show up in the headline numbers
    assert view.summary["typographic"]["attack_success_rate"] >= 0.6
    assert view.summary["adversarial"]["robust_accuracy"] < view.summary["adversarial"]["clean_accuracy"]
    html = (audit_run / "report.html").read_text()
    assert "L-typographic" in html and "not measured in this run" in html and "data:image/png;base64" in html
    assert (audit_run / "bias_report.html").is_file()


def test_diff_of_identical_runs_is_zero_and_refuses_other_inputs(audit_run, tmp_path, capsys):
    assert main(["diff", str(audit_run), str(audit_run), "--audit", "typographic", "--to", str(tmp_path / "d.csv")]) == 0
    out = capsys.readouterr().out
    assert "attack_success_rate" in out
    import pandas as pd

    table = pd.read_csv(tmp_path / "d.csv")
    assert (table["difference"].abs() < 1e-12).all()
    different = tmp_path / "c"
    assert main(["typographic", "--target", "pizza", "--n-images", "50", "--seed", "4", "--out", str(different)]) == 0
    capsys.readouterr()
    assert main(["diff", str(audit_run), str(different), "--audit", "typographic"]) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_audit_rejects_unknown_skip(capsys):
    assert main(["audit", "--skip", "nuerons"]) == 2
    assert "not an audit" in capsys.readouterr().err


def test_audit_validates_every_sub_audit_before_the_first_starts(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["audit", "--quick", "--target", "   ", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "typographic audit would fail" in err and "--target is empty" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # neurons (first in the plan) never started


def test_audit_aborted_by_a_failing_sub_audit_is_marked_failed(tmp_path, capsys, monkeypatch):
    from clipaudit import audit_cli

    empty = tmp_path / "no-images"
    empty.mkdir()
    plan = {"adversarial": ["adversarial", "--n-images", "2", "--images", str(empty)]}
    monkeypatch.setattr(audit_cli, "audit_plan", lambda args: plan)
    out = tmp_path / "run"
    assert main(["audit", "--quick", "--out", str(out)]) == 2
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "failed" and m["audits_detail"]["audit"]["status"] == "failed"
    assert m["finished"] is not None
