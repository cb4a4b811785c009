"""Run folders: manifest, atomic tables, and nothing finished lost on interrupt."""
from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from clipaudit.errors import ClipauditError
from clipaudit.result import Result
from clipaudit.runs import LOCK, RunFolder, atomic_write_text, list_runs, open_run


def test_manifest_records_model_seed_versions(tmp_path, tiny_vit):
    run = RunFolder.create("neurons", tmp_path / "r", model=tiny_vit, seed=7, argv=["neurons", "--seed", "7"])
    run.finish()
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["command_line"] == "clipaudit neurons --seed 7"
    assert m["model"]["weights_hash"] == tiny_vit.weights_hash and m["model"]["random_init"] is True
    assert m["seed"] == 7 and "torch" in m["versions"] and m["status"] == "complete" and m["finished"]


def test_tables_round_trip_csv_and_parquet(tmp_path):
    run = RunFolder.create("x", tmp_path / "r", argv=[])
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    run.write_table("t", df)
    assert (tmp_path / "r" / "t.csv").is_file() and (tmp_path / "r" / "t.parquet").is_file()
    pd.testing.assert_frame_equal(open_run(tmp_path / "r").table("t"), df)


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    atomic_write_text(path, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_interrupt_keeps_finished_results(tmp_path):
    """A KeyboardInterrupt mid-audit keeps the stages already saved and marks the run."""
    run = RunFolder.create("x", tmp_path / "r", argv=[])
    with pytest.raises(KeyboardInterrupt):
        with run:
            Result("x", {"stage1": pd.DataFrame({"v": [1]})}, summary={"done": 1}).save(run)
            raise KeyboardInterrupt
    view = open_run(tmp_path / "r")
    assert view.manifest["status"] == "interrupted"
    assert view.table("stage1")["v"].tolist() == [1] and view.summary["x"]["done"] == 1


def test_summary_sections_merge(tmp_path):
    run = RunFolder.create("audit", tmp_path / "r", argv=[])
    run.update_summary({"a": 1}, section="typographic")
    run.update_summary({"b": float("nan")}, section="bias")
    s = open_run(tmp_path / "r").summary
    assert s == {"typographic": {"a": 1}, "bias": {"b": None}}


def test_reading_non_runs(tmp_path):
    with pytest.raises(ClipauditError, match="not a clipaudit run folder"):
        open_run(tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{half")
    with pytest.raises(ClipauditError, match="not valid JSON"):
        open_run(tmp_path / "broken")
    RunFolder.create("x", tmp_path / "good", argv=[])
    assert [r.name for r in list_runs(tmp_path)] == ["good"]


# ------------------------------------------------------------ occupied folders, locks, provenance

class _Facts:
    """Stands in for an AuditModel: RunFolder only reads ``describe()``."""

    def __init__(self, name: str, weights_hash: str) -> None:
        self._facts = {"name": name, "weights_hash": weights_hash}

    def describe(self) -> dict:
        return dict(self._facts)


MODEL_A, MODEL_B = _Facts("toy-rn", "aaaa1111"), _Facts("toy-vit", "bbbb2222")


def test_reusing_out_is_refused_without_force_or_resume(tmp_path):
    first = RunFolder.create("neurons", tmp_path / "r", model=MODEL_A, seed=0, argv=["neurons"])
    first.write_table("neurons", pd.DataFrame({"neuron": [1]}))
    first.finish()
    before = (tmp_path / "r" / "manifest.json").read_text()
    with pytest.raises(ClipauditError, match=r"already holds a run \(neurons\).*--force.*--resume"):
        RunFolder.create("typographic", tmp_path / "r", model=MODEL_A, seed=0, argv=["typographic"])
    assert (tmp_path / "r" / "manifest.json").read_text() == before
    assert not (tmp_path / "r" / LOCK).exists()


def test_cli_refuses_occupied_out_and_both_flags(tmp_path, capsys):
    from clipaudit.cli import main

    RunFolder.create("neurons", tmp_path / "r", model=MODEL_A, seed=0, argv=["neurons"]).finish()
    code = main(["adversarial", "--model", "toy", "--n-images", "1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "already holds a run" in err and len(err.strip().splitlines()) == 1
    code = main(["adversarial", "--n-images", "1", "--out", str(tmp_path / "r"), "--force", "--resume"])
    assert code == 2 and "exclude each other" in capsys.readouterr().err


def test_force_replaces_the_run_and_its_stale_pictures(tmp_path):
    from PIL import Image

    old = RunFolder.create("neurons", tmp_path / "r", model=MODEL_A, seed=0, argv=["neurons", "--layer", "a"])
    old.write_png("featvis_layer_a_3", Image.new("RGB", (4, 4)))
    old.write_table("neurons", pd.DataFrame({"neuron": [3]}))
    old.finish()
    new = RunFolder.create("neurons", tmp_path / "r", model=MODEL_B, seed=1, argv=["neurons", "--layer", "b"],
                           existing="force")
    new.finish()
    assert not (tmp_path / "r" / "images").exists() and not (tmp_path / "r" / "neurons.csv").exists()
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["command_line"] == "clipaudit neurons --layer b" and m["model"]["name"] == "toy-vit"
    assert list(m["audits_detail"]) == ["neurons"] and m["audits"] == ["neurons"]


def test_force_refuses_to_clear_a_folder_that_is_not_a_clipaudit_run(tmp_path):
    (tmp_path / "manifest.json").write_text('{"name": "my own project"}')
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ClipauditError, match="not a clipaudit run"):
        RunFolder.create("neurons", tmp_path, existing="force")
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_resume_adds_an_audit_of_the_same_model_and_keeps_provenance_per_audit(tmp_path):
    a = RunFolder.create("neurons", tmp_path / "r", model=MODEL_A, seed=3, argv=["neurons", "--top", "8"],
                         config={"top": 8})
    a.finish()
    first = json.loads((tmp_path / "r" / "manifest.json").read_text())
    b = RunFolder.create("typographic", tmp_path / "r", model=MODEL_A, seed=3, argv=["typographic", "--n", "9"],
                         config={"n": 9}, existing="resume")
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["status"] == "running" and m["audits"] == ["neurons", "typographic"]
    b.finish("failed")
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    neu, typo = m["audits_detail"]["neurons"], m["audits_detail"]["typographic"]
    assert neu["command_line"] == "clipaudit neurons --top 8" and neu["status"] == "complete"
    assert neu["started"] == first["started"] and neu["finished"] == first["finished"]
    assert typo["command_line"] == "clipaudit typographic --n 9" and typo["status"] == "failed"
    assert m["configs"] == {"neurons": {"top": 8}, "typographic": {"n": 9}}
    # the folder's own start and command line stay those of the audit that created it
    assert m["started"] == first["started"] and m["command_line"] == "clipaudit neurons --top 8"
    assert m["status"] == "failed"


def test_resume_refuses_another_model_naming_both(tmp_path):
    RunFolder.create("neurons", tmp_path / "r", model=MODEL_A, seed=0, argv=["neurons"]).finish()
    with pytest.raises(ClipauditError, match=r"toy-rn \(weights aaaa1111\).*toy-vit \(weights bbbb2222\)"):
        RunFolder.create("bias", tmp_path / "r", model=MODEL_B, seed=0, argv=["bias"], existing="resume")
    with pytest.raises(ClipauditError, match="--seed 0, not 5"):
        RunFolder.create("bias", tmp_path / "r", model=MODEL_A, seed=5, argv=["bias"], existing="resume")
    with pytest.raises(ClipauditError, match="already holds a complete neurons audit"):
        RunFolder.create("neurons", tmp_path / "r", model=MODEL_A, seed=0, argv=["neurons"], existing="resume")
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["audits"] == ["neurons"] and m["model"]["name"] == "toy-rn"


_HOLDER = """
import sys, time
from clipaudit.runs import RunFolder
run = RunFolder.create("neurons", sys.argv[1], argv=["neurons"])
with run:
    print("ready", flush=True)
    time.sleep(60)
"""


def _start_holder(folder) -> "subprocess.Popen":
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_second_writer_is_refused_while_the_first_runs_and_sigterm_marks_interrupted(tmp_path):
    import signal

    proc = _start_holder(tmp_path / "r")
    try:
        with pytest.raises(ClipauditError, match=rf"being written by process {proc.pid}"):
            RunFolder.create("neurons", tmp_path / "r", existing="force")
        assert json.loads((tmp_path / "r" / "manifest.json").read_text())["status"] == "running"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["status"] == "interrupted" and m["audits_detail"]["neurons"]["status"] == "interrupted"
    assert not (tmp_path / "r" / LOCK).exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path, capsys):
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / LOCK).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "since": "x"}))
    run = RunFolder.create("neurons", tmp_path / "r", argv=["neurons"])
    assert f"left by process {pid}" in capsys.readouterr().err
    assert json.loads((tmp_path / "r" / LOCK).read_text())["pid"] == os.getpid()
    run.finish()
    assert not (tmp_path / "r" / LOCK).exists()


# ------------------------------------------------------------ outputs that cannot be written

def _synthetic_run(folder, result, model=MODEL_A):
    run = RunFolder.create(result.section, folder, model=model, seed=0, argv=[result.section])
    result.save(run)
    run.finish()
    return folder


def test_out_under_a_regular_file_is_a_one_line_error(tmp_path, capsys):
    from clipaudit.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ClipauditError, match="cannot be written"):
        RunFolder.create("neurons", blocker / "run")
    with pytest.raises(ClipauditError, match="exists and is not a folder"):
        RunFolder.create("neurons", blocker)
    assert main(["adversarial", "--n-images", "1", "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "cannot be written" in err and len(err.strip().splitlines()) == 1


def test_diff_and_bias_report_to_an_unwritable_path_exit_2(tmp_path, capsys):
    from clipaudit.cli import main
    from tests.fixtures.synthetic_runs import bias_result, typographic_result

    a = _synthetic_run(tmp_path / "a", typographic_result(seed=0))
    b = _synthetic_run(tmp_path / "b", typographic_result(seed=0, strength=0.9))
    c = _synthetic_run(tmp_path / "c", bias_result())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["diff", str(a), str(b), "--bootstrap", "50", "--to", str(blocker / "d.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --to") and "cannot be written" in err and len(err.strip().splitlines()) == 1
    for fmt in ("md", "html", "json", "csv"):
        assert main(["bias", "report", str(c), "--format", fmt, "--to", str(blocker / "r")]) == 2, fmt
        err = capsys.readouterr().err
        assert err.startswith("error: --to") and len(err.strip().splitlines()) == 1, fmt


def test_out_and_to_expand_the_home_folder(tmp_path, monkeypatch, capsys):
    from clipaudit.cli import main
    from tests.fixtures.synthetic_runs import typographic_result

    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    run = RunFolder.create("x", "~/r", argv=[])
    run.finish()
    assert (home / "r" / "manifest.json").is_file() and not (cwd / "~").exists()
    _synthetic_run(home / "a", typographic_result(seed=0))
    assert main(["diff", "~/a", "~/a", "--bootstrap", "20", "--to", "~/d.csv"]) == 0
    assert (home / "d.csv").is_file() and not (cwd / "~").exists()
