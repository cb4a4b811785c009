"""The dashboard on run folders written by the real audits (tiny random-init model): every page
shows the run's summary numbers with no section failing, and diff pairs the real tables."""
from __future__ import annotations

import numpy as np
import pytest

from clipaudit.dashboard import ids
from clipaudit.dashboard.app import render_page
from clipaudit.dashboard.components import fmt_value
from clipaudit.dashboard.data import RunStore
from clipaudit.diff import diff_runs

from .helpers import by_id, text

KEYS = {"typographic": ["attack_success_rate", "flip_rate", "clean_accuracy"],
        "adversarial": ["robust_accuracy", "clean_accuracy", "eps"],
        "bias": ["harmful_rate_ratio", "max_harmful_rate", "weat_d"],
        "neurons": ["n_neurons", "n_multimodal", "n_images"]}


# the neurons audit (scan + labels over the full concept set + feature vis) is the slow one
SECTIONS = ["typographic", "adversarial", "bias", pytest.param("neurons", marks=pytest.mark.slow)]


@pytest.mark.parametrize("section", SECTIONS)
def test_real_run_pages(real_run, section):
    path = real_run(section)
    store = RunStore(path.parent)
    tree = render_page(store, f"/{section}", section, None)
    out = text(tree)
    assert "Could not show" not in out, out[:500]
    summary = store.get(section).summary[section]
    for key in KEYS[section]:
        if key in summary:
            assert by_id(tree, ids.kpi(section, key)).children == fmt_value(key, summary[key])
    assert "RANDOM-INIT" in out
    assert "Could not show" not in text(render_page(store, "/", section, None))


@pytest.mark.parametrize("section", SECTIONS)
def test_real_run_diffs_against_itself(real_run, section):
    df = diff_runs(real_run(section), real_run(section))
    assert len(df) > 0 and df["paired"].all()
    assert np.allclose(df["difference"].fillna(0), 0)
