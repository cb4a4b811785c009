"""Damaged run folders are named as damaged, with the reason, by every reader: ``open_run``,
``list_runs``, the dashboard, ``clipaudit diff`` and ``clipaudit bias report``."""
from __future__ import annotations

import json

import pytest

from clipaudit.cli import main
from tests.fixtures.synthetic_runs import SyntheticModel, bias_result, typographic_result
from clipaudit.errors import ClipauditError
from clipaudit.runs import RunFolder, list_runs, open_run

DAMAGES = {
    "manifest-list": ("manifest.json", "[1, 2, 3]", "manifest.json holds a list, not an object"),
    "started-int": ("manifest.json", None, "field 'started' is a number"),
    "summary-corrupt": ("summary.json", '{"typographic": {"attack_success_rate": 0.', "summary.json is not valid JSON"),
    "summary-list": ("summary.json", "[]", "summary.json holds a list"),
}


def _run(folder, result):
    run = RunFolder.create(result.section, folder, model=SyntheticModel(), seed=0, argv=[result.section])
    result.save(run)
    run.finish()
    return folder


def _damage(folder, kind):
    name, text, _ = DAMAGES[kind]
    if text is None:  # a valid manifest whose start time is a number
        m = json.loads((folder / name).read_text())
        m["started"] = 1700000000
        text = json.dumps(m)
    (folder / name).write_text(text)


@pytest.fixture()
def root(tmp_path):
    _run(tmp_path / "good", typographic_result(seed=0))
    for kind in DAMAGES:
        _damage(_run(tmp_path / kind, typographic_result(seed=0)), kind)
    return tmp_path


def test_open_run_names_the_damage(root):
    for kind, (_, _, reason) in DAMAGES.items():
        with pytest.raises(ClipauditError, match=reason):
            open_run(root / kind)
        view = open_run(root / kind, allow_damaged=True)
        assert reason in view.damaged and view.summary == {} and view.manifest == {}
    assert open_run(root / "good").damaged is None


def test_list_runs_lists_damaged_runs_last_with_the_reason(root):
    assert [v.name for v in list_runs(root)] == ["good"]
    views = list_runs(root, include_damaged=True)
    assert views[0].name == "good" and views[0].damaged is None
    assert {v.name: v.damaged for v in views[1:]}.keys() == set(DAMAGES)
    for v in views[1:]:
        assert DAMAGES[v.name][2] in v.damaged


def test_dashboard_lists_damaged_runs_and_still_renders(root):
    from clipaudit.dashboard.app import render_page
    from clipaudit.dashboard.data import RunStore

    from tests.dashboard.helpers import text

    store = RunStore(root)
    runs, broken = store.scan()
    assert [store.run_name(v) for v in runs] == ["good"]
    reasons = {b.name: b.reason for b in broken}
    for kind, (_, _, reason) in DAMAGES.items():
        assert reason in reasons[kind]
    page = text(render_page(store, "/", None, None))
    assert "started-int" in page and "field 'started' is a number" in page
    assert "good" in text(render_page(store, "/typographic", "good", None))


@pytest.mark.parametrize("kind", list(DAMAGES))
def test_diff_refuses_a_damaged_run_in_one_line(root, kind, capsys):
    assert main(["diff", str(root / "good"), str(root / kind), "--bootstrap", "20"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: run folder") and DAMAGES[kind][2] in err and len(err.strip().splitlines()) == 1


def test_bias_report_refuses_a_damaged_run(tmp_path, capsys):
    run = _run(tmp_path / "b", bias_result())
    (run / "summary.json").write_text('{"bias": ')
    assert main(["bias", "report", str(run), "--format", "md"]) == 2
    err = capsys.readouterr().err
    assert "summary.json is not valid JSON" in err and "no bias results" not in err


def test_a_hand_damaged_table_is_a_one_line_error(root, capsys):
    b = _run(root / "b", typographic_result(seed=0))
    (b / "typographic_images.parquet").write_bytes(b"PAR1 not really")
    (b / "typographic_images.csv").write_bytes(b'id,success\n"x,1\n\xff\xfe,2,3,4\n')
    with pytest.raises(ClipauditError, match=r"table typographic_images.csv cannot be read .*damaged"):
        open_run(b).table("typographic_images")
    assert main(["diff", str(root / "good"), str(b), "--bootstrap", "20"]) == 2
    err = capsys.readouterr().err
    assert "typographic_images.csv cannot be read" in err and len(err.strip().splitlines()) == 1
