"""Run folders: manifest, atomic tables, and nothing finished lost on interrupt."""
from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from clipaudit.errors import ClipauditError
from clipaudit.result import Result
from clipaudit.runs import RunFolder, atomic_write_text, list_runs, open_run


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
