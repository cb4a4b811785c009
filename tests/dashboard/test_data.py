"""The data layer: run discovery, name checks, cached tables that notice rewrites, formatting."""
from __future__ import annotations

import time

import pandas as pd

from clipaudit.dashboard.data import RunStore, fmt_ci, fmt_num, fmt_rate, headline
from clipaudit.runs import RunFolder



def test_scan(runs_root):
    store = RunStore(runs_root)
    runs, broken = store.scan()
    names = {store.run_name(v) for v in runs}
    assert {"neurons-synth", "typographic-ck1", "typographic-ck2", "halfwritten", "bias-synth"} <= names
    assert {b.name for b in broken} == {"damaged", "empty"}


def test_get_refuses_names_outside_the_root(runs_root):
    store = RunStore(runs_root)
    assert store.get("typographic-ck1") is not None
    for bad in ("..", "../x", "/etc", "typographic-ck1/../bias-synth", "", None, "damaged", "nope"):
        assert store.get(bad) is None


def test_table_cache_rereads_a_rewritten_table(tmp_path):
    run = RunFolder.create("typographic", out=tmp_path / "r", argv=["x"])
    run.write_table("typographic_by_class", pd.DataFrame({"class": ["a"], "n": [1]}))
    store = RunStore(tmp_path)
    view = store.get("r")
    first = store.table(view, "typographic_by_class")
    assert store.table(view, "typographic_by_class") is first  # cached
    time.sleep(0.01)
    run.write_table("typographic_by_class", pd.DataFrame({"class": ["a", "b"], "n": [1, 2]}))
    assert len(store.table(view, "typographic_by_class")) == 2
    assert store.table(view, "no_such_table") is None


def test_root_that_is_itself_a_run(synthetic_runs):
    """``--runs <run folder>`` (as the audit prints it): that one run, named by its folder."""
    store = RunStore(synthetic_runs["neurons"])
    runs, broken = store.scan()
    assert store.names() == ["neurons-synth"] and broken == []  # not its images/ folder as "unreadable"
    view = store.get("neurons-synth")
    assert view is not None and store.get(".").path == view.path and store.get("images") is None
    assert store.image_url(view, "neurons.csv") == "/runfile/neurons.csv"


def test_formatting():
    assert fmt_rate(0.41234) == "41.2%" and fmt_rate(None) == "–" and fmt_rate(float("nan")) == "–"
    assert fmt_ci([0.1, 0.25]) == "[10.0%, 25.0%]" and fmt_ci("x") == ""
    assert fmt_num(3) == "3" and fmt_num(0.123456) == "0.123" and fmt_num(True) == "yes"


def test_headline_reads_each_section(runs_root):
    store = RunStore(runs_root)
    h = dict(headline(store.get("typographic-ck1")))
    s = store.get("typographic-ck1").summary["typographic"]
    lo, hi = s["attack_success_ci"]
    assert h["typographic attack success"] == f"{fmt_rate(s['attack_success_rate'])} [{fmt_rate(lo)}, {fmt_rate(hi)}]"
    assert headline(store.get("halfwritten")) == []
