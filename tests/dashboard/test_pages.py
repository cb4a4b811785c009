"""Pages and callbacks without a browser: the numbers shown are the run's numbers, and missing,
half-written or damaged runs give a message instead of an exception."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest
from dash import html

from clipaudit.dashboard import ids
from clipaudit.dashboard.app import create_app, pages, render_page
from clipaudit.dashboard.components import fmt_value, modelcard_panel
from clipaudit.dashboard.data import RunStore, fmt_rate
from clipaudit.dashboard.page_neurons import PAGE_SIZE, filtered, grid
from tests.fixtures.synthetic_runs import HOSTILE_LABEL, write_synthetic_runs
from clipaudit.runs import open_run

from .helpers import by_id, text, walk


@pytest.fixture(scope="module")
def store(runs_root):
    return RunStore(runs_root)


@pytest.mark.parametrize("path,run,section,keys", [
    ("/typographic", "typographic-ck1", "typographic", ["attack_success_rate", "flip_rate", "clean_accuracy"]),
    ("/adversarial", "adversarial-synth", "adversarial", ["robust_accuracy", "clean_accuracy", "eps"]),
    ("/bias", "bias-synth", "bias", ["harmful_rate_ratio", "max_harmful_rate", "weat_d"]),
    ("/neurons", "neurons-synth", "neurons", ["n_neurons", "n_multimodal"]),
])
def test_kpis_show_the_summary_values(store, path, run, section, keys):
    tree = render_page(store, path, run, None)
    summary = open_run(store.root / run).summary[section]
    for key in keys:
        assert by_id(tree, ids.kpi(section, key)).children == fmt_value(key, summary[key])
    assert "RANDOM-INIT" in text(tree)


def test_typographic_rate_is_percent_of_table(store, synthetic_runs):
    df = pd.read_csv(synthetic_runs["typographic"] / "typographic_images.csv")
    df = df[~df["excluded"]]
    tree = render_page(store, "/typographic", "typographic-ck1", None)
    assert by_id(tree, ids.kpi("typographic", "attack_success_rate")).children == fmt_rate(df["success"].mean())


def test_modelcard_panel_pairs_limitations_with_figures(store):
    view = store.get("bias-synth")
    panel = modelcard_panel("bias", view)
    items = {n.__dict__.get("data-limitation"): text(n) for n in walk(panel) if isinstance(n, html.Li)
             and n.__dict__.get("data-limitation")}
    assert set(items) == {"L-bias", "L-denigration", "L-data-skew"}
    assert fmt_value("harmful_rate_ratio", view.summary["bias"]["harmful_rate_ratio"]) in items["L-denigration"]
    empty = modelcard_panel("adversarial", view)  # a bias run measures nothing adversarial
    assert "not measured in this run" in text(empty)
    assert "not measured in this run" in text(modelcard_panel(None, view))  # L-ood etc.


def test_missing_and_halfwritten_runs_give_messages(store):
    assert "has no typographic results" in text(render_page(store, "/typographic", "bias-synth", None))
    half = text(render_page(store, "/typographic", "halfwritten", None))
    assert "has no typographic results" in half and "status: running" in half
    assert "Choose a run" in text(render_page(store, "/bias", None, None))
    assert "Choose a run" in text(render_page(store, "/bias", "../etc", None))
    assert "No page at /nope" in text(render_page(store, "/nope", None, None))


def test_damaged_table_gives_message_not_exception(tmp_path):
    runs = write_synthetic_runs(tmp_path, n_neurons=8, n_rendered=2)
    bad = runs["adversarial"]
    (bad / "adversarial_curve.parquet").write_bytes(b"not parquet")
    (bad / "adversarial_curve.csv").write_text("eps,robust\n0.1,notanumber\n")  # missing columns
    store = RunStore(tmp_path)
    tree = render_page(store, "/adversarial", "adversarial-synth", None)
    out = text(tree)
    assert "Could not show this section (missing column 'robust_accuracy')" in out
    summary = store.get("adversarial-synth").summary["adversarial"]  # the rest of the page still shows
    assert by_id(tree, ids.kpi("adversarial", "robust_accuracy")).children == fmt_rate(summary["robust_accuracy"])
    assert "Sanity checks" in out


def test_overview_lists_runs_and_unreadable_folders(store):
    tree = render_page(store, "/", "typographic-ck1", None)
    rows = [n for n in walk(by_id(tree, ids.RUNS_TABLE)) if getattr(n, "__dict__", {}).get("data-run")]
    assert {r.__dict__["data-run"] for r in rows} >= {"typographic-ck1", "bias-synth", "halfwritten"}
    broken = text(by_id(tree, ids.BROKEN_LIST))
    assert "damaged" in broken and "not valid JSON" in broken and "empty" in broken


def test_compare_page_shows_diff_or_refusal(store):
    tree = render_page(store, "/compare", "typographic-ck1", "typographic-ck2")
    body = text(by_id(tree, ids.COMPARE_TABLE))
    assert "attack_success_rate" in body
    refused = render_page(store, "/compare", "typographic-ck1", "typographic-otherdata")
    assert "not on the same inputs" in text(by_id(refused, ids.COMPARE_MESSAGE))


def test_every_page_renders_for_every_run(store):
    for page in pages():
        for name in store.names():
            out = text(render_page(store, page.PATH, name, "typographic-ck2"))
            assert "Could not show" not in out, (page.PATH, name, out[:300])


# -- neurons callbacks ---------------------------------------------------------------------

def test_neuron_search_sort_and_filter(store):
    df = store.table(store.get("neurons-synth"), "neurons")
    hits = filtered(df, "PIZZA", "label_score")
    assert len(hits) > 0 and hits["labels"].str.contains("pizza").all()
    assert list(hits["label_score"]) == sorted(hits["label_score"], reverse=True)
    assert filtered(df, "no-such-label").empty
    assert list(filtered(df, "", "neuron")["neuron"]) == sorted(df["neuron"])
    mm = filtered(df, "", "multimodal_score", multimodal_only=True)
    assert set(mm["neuron"]) == set(df.loc[df["is_multimodal"], "neuron"]) and len(mm) == 5
    assert filtered(df, "<b>apple", "label_score")["neuron"].tolist() == [3]  # searched as plain text


def test_grid_paginates_a_thousand_neurons(tmp_path):
    write_synthetic_runs(tmp_path, n_neurons=1000, n_rendered=60)
    store = RunStore(tmp_path)
    view = store.get("neurons-synth")
    cards, count, page = grid(store, view, "", "neuron", False, 0)
    assert len(cards) == PAGE_SIZE and count == "1000 of 1000 neurons · page 1 of 20"
    assert [c.id["index"] for c in cards] == list(range(50))
    cards, count, page = grid(store, view, "", "neuron", False, 99)  # clamped to the last page
    assert page == 19 and [c.id["index"] for c in cards][-1] == 999


def test_hostile_label_is_a_plain_string(store):
    view = store.get("neurons-synth")
    cards, _, _ = grid(store, view, "<b>apple", "label_score", False, 0)
    labels = [n.children for n in walk(cards) if getattr(n, "className", "") == "card-label"]
    assert labels == [HOSTILE_LABEL]
    for n in walk(render_page(store, "/neurons", "neurons-synth", None)):
        assert not getattr(n, "dangerously_allow_html", False)


def test_callbacks_through_the_dash_server(runs_root):
    """The grid and detail callbacks answer real Dash requests (search, then a card click)."""
    app = create_app(runs_root)
    client = app.server.test_client()
    state = [{"id": ids.NEURON_PAGE, "property": "data", "value": 0},
             {"id": ids.RUN_A, "property": "value", "value": "neurons-synth"}]
    inputs = [{"id": ids.NEURON_SEARCH, "property": "value", "value": "pizza"},
              {"id": ids.NEURON_SORT, "property": "value", "value": "neuron"},
              {"id": ids.NEURON_MULTIMODAL, "property": "value", "value": []},
              {"id": ids.NEURON_PREV, "property": "n_clicks", "value": 0},
              {"id": ids.NEURON_NEXT, "property": "n_clicks", "value": 0}]
    out = f"..{ids.NEURON_GRID}.children...{ids.NEURON_COUNT}.children...{ids.NEURON_PAGE}.data.."
    r = client.post("/_dash-update-component", json={
        "output": out, "outputs": [{"id": ids.NEURON_GRID, "property": "children"},
                                   {"id": ids.NEURON_COUNT, "property": "children"},
                                   {"id": ids.NEURON_PAGE, "property": "data"}],
        "inputs": inputs, "state": state, "changedPropIds": [f"{ids.NEURON_SEARCH}.value"]})
    assert r.status_code == 200, r.data[:300]
    body = r.get_json()["response"]
    df = pd.read_csv(runs_root / "neurons-synth" / "neurons.csv")
    n_pizza = int(df["labels"].str.contains("pizza").sum())
    assert body[ids.NEURON_COUNT]["children"].startswith(f"{n_pizza} of {len(df)} neurons")


def test_kpi_shows_its_ci(store):
    tree = render_page(store, "/typographic", "typographic-ck1", None)
    s = store.get("typographic-ck1").summary["typographic"]
    ci = by_id(tree, ids.kpi("typographic", "attack_success_rate") + "-ci").children
    assert ci == f"[{fmt_rate(s['attack_success_ci'][0])}, {fmt_rate(s['attack_success_ci'][1])}]"


def test_compare_modelcard_panel_shows_both_runs(store):
    tree = render_page(store, "/compare", "typographic-ck1", "typographic-ck2")
    panel = by_id(tree, ids.MODELCARD)
    typo = next(n for n in walk(panel) if getattr(n, "__dict__", {}).get("data-limitation") == "L-typographic")
    got = text(typo)
    for name, tag in (("typographic-ck1", "A:"), ("typographic-ck2", "B:")):
        value = store.get(name).summary["typographic"]["attack_success_rate"]
        assert tag in got and fmt_rate(value) in got


def test_overview_links_choose_runs(store):
    tree = render_page(store, "/", "typographic-ck1", None)
    hrefs = [getattr(n, "href", "") for n in walk(tree) if getattr(n, "href", None)]
    assert "/compare?a=typographic-ck1&b=typographic-ck2" in hrefs
    assert "/?a=bias-synth" in hrefs


# -- issue 15: a run folder given directly, picture-first cards, per-audit runs, linked runs ---------

def test_neurons_page_opens_on_pictured_cards_by_multimodality(store, synthetic_runs):
    from clipaudit.dashboard.page_neurons import DEFAULT_SORT

    df = pd.read_csv(synthetic_runs["neurons"] / "neurons.csv")
    tree = render_page(store, "/neurons", "neurons-synth", None)
    shown = [n.id["index"] for n in walk(tree) if isinstance(getattr(n, "id", None), dict)]
    pictured = df["featvis"].fillna("").astype(str).str.len().gt(0) | df["top_images"].fillna("").astype(str).str.len().gt(0)
    n_pictured = int(pictured.sum())
    assert 0 < n_pictured < len(df)
    expect = df[pictured].sort_values(["multimodal_score", "neuron"], ascending=[False, True])["neuron"].tolist()
    assert shown[:n_pictured] == expect and set(shown[n_pictured:]) == set(df.loc[~pictured, "neuron"])
    assert by_id(tree, ids.NEURON_SORT).value == DEFAULT_SORT


def test_multimodal_concept_is_shown_beside_the_label(tmp_path):
    from clipaudit.dashboard.page_neurons import detail
    from tests.fixtures.synthetic_runs import neurons_result
    from clipaudit.runs import RunFolder

    res = neurons_result(n_neurons=6, n_rendered=2)
    res.tables["neurons"]["multimodal_concept"] = ["spider", "", None, "<i>x</i>", "", ""]
    run = RunFolder.create("neurons", tmp_path / "n", argv=["neurons"])
    res.save(run)
    run.finish()
    st = RunStore(tmp_path)
    cards, _, _ = grid(st, st.get("n"), "", "neuron", False, 0)
    concepts = {c.id["index"]: [n.children for n in walk(c) if getattr(n, "className", "") == "card-concept"]
                for c in cards}
    assert concepts[0] == ["multimodal for: spider"] and concepts[3] == ["multimodal for: <i>x</i>"]
    assert concepts[1] == [] and concepts[2] == []
    assert "multimodal concept spider" in text(detail(st, st.get("n"), 0))


def test_pages_pick_the_newest_run_holding_their_audit(store):
    tree = render_page(store, "/neurons", "typographic-ck1", None)
    out = text(tree)
    assert "has no neurons results; showing neurons-synth" in out and "Could not show" not in out
    assert any(isinstance(getattr(n, "id", None), dict) for n in walk(tree))  # the neuron cards


def test_a_linked_run_outside_the_root_says_why_its_pictures_are_not_served(tmp_path, synthetic_runs):
    import os

    root = tmp_path / "runs"
    root.mkdir()
    os.symlink(synthetic_runs["neurons"], root / "linked")
    inside = root / "real"
    shutil.copytree(synthetic_runs["neurons"], inside)
    os.symlink(inside, root / "alias")
    st = RunStore(root)
    linked = st.get("linked")
    df = st.table(linked, "neurons")
    row = df[df["featvis"].fillna("").astype(str).str.len() > 0].iloc[0]
    assert st.image_url(linked, row["featvis"]) is None  # the security rule stays
    assert "outside the runs folder" in st.not_served(linked, row["featvis"])
    page = render_page(st, "/neurons", "linked", None)
    assert "not served (linked run)" in text(page)
    assert any("outside the runs folder" in str(getattr(n, "title", "")) for n in walk(page))
    alias = st.get("alias")  # a link that stays inside the runs folder is served
    assert st.image_url(alias, row["featvis"]) == f"/runfile/alias/{row['featvis']}"
