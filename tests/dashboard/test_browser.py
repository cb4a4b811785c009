"""The dashboard in headless Chromium: every page opens, shows the run's numbers, a neuron card
opens its detail, runs can be switched, and hostile labels stay text. Screenshots go to
test-artifacts/dashboard/."""
from __future__ import annotations

import pandas as pd
import pytest
from playwright.sync_api import expect

from clipaudit.dashboard import ids
from clipaudit.dashboard.components import fmt_value
from clipaudit.dashboard.data import fmt_num
from tests.fixtures.synthetic_runs import HOSTILE_LABEL
from clipaudit.diff import diff_runs
from clipaudit.runs import open_run

from .conftest import shot

pytestmark = pytest.mark.browser
TIMEOUT = 20_000


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(f"#{ids.PAGE} > *", timeout=TIMEOUT)


@pytest.mark.parametrize("path,run,section,keys", [
    ("/typographic", "typographic-ck1", "typographic", ["attack_success_rate", "flip_rate", "clean_accuracy"]),
    ("/adversarial", "adversarial-synth", "adversarial", ["robust_accuracy", "clean_accuracy", "attack_success_rate"]),
    ("/bias", "bias-synth", "bias", ["harmful_rate_ratio", "max_harmful_rate", "weat_d"]),
    ("/neurons", "neurons-synth", "neurons", ["n_neurons", "n_multimodal", "n_images"]),
])
def test_page_shows_the_runs_numbers(page, live_url, runs_root, path, run, section, keys):
    _open(page, f"{live_url}{path}?a={run}")
    summary = open_run(runs_root / run).summary[section]
    for key in keys:
        expect(page.locator(f"#{ids.kpi(section, key)}")).to_have_text(fmt_value(key, summary[key]), timeout=TIMEOUT)
    panel = page.locator(f"#{ids.MODELCARD}")
    expect(panel).to_contain_text("CLIP model card")
    expect(page.locator(".badge-danger").first).to_contain_text("RANDOM-INIT")
    shot(page, f"page{path.replace('/', '_')}")
    assert page.js_errors == []


def test_typographic_tables_match(page, live_url, synthetic_runs):
    _open(page, f"{live_url}/typographic?a=typographic-ck1")
    by_class = pd.read_csv(synthetic_runs["typographic"] / "typographic_by_class.csv")
    table = page.locator("#typographic-by-class")
    expect(table).to_be_visible(timeout=TIMEOUT)
    first = by_class.iloc[0]
    row = table.locator("tbody tr").first
    expect(row.locator("td").nth(0)).to_have_text(str(first["class"]))
    expect(row.locator("td").nth(2)).to_have_text(fmt_value("attack_success_rate", first["attack_success_rate"]))
    words = page.locator("#typographic-words")
    expect(words).to_contain_text("<i>pizza</i>")  # a user word, shown as text
    assert page.locator("#typographic-words i").count() == 0
    assert page.locator("img[src$='typographic_examples.png']").evaluate("img => img.naturalWidth") > 0


def test_neuron_card_opens_detail_and_labels_stay_text(page, live_url, synthetic_runs):
    _open(page, f"{live_url}/neurons?a=neurons-synth")
    df = pd.read_csv(synthetic_runs["neurons"] / "neurons.csv")
    pictured = df["featvis"].fillna("").astype(str).str.len() > 0
    best = df[pictured].sort_values(["multimodal_score", "neuron"], ascending=[False, True]).iloc[0]
    cards = page.locator(".neuron-card")
    expect(cards.first).to_have_attribute("data-neuron", str(int(best["neuron"])), timeout=TIMEOUT)
    assert cards.count() == len(df)  # 48 < one page of 50
    img = cards.first.locator("img")
    page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=img.element_handle(), timeout=TIMEOUT)

    hostile = page.locator("[data-neuron='3']")
    expect(hostile.locator(".card-label")).to_have_text(HOSTILE_LABEL)
    assert hostile.locator("b, img[src='x']").count() == 0  # no markup made it into the DOM
    hostile.click()
    expect(page.locator("#neuron-detail-title")).to_have_text("Neuron 3", timeout=TIMEOUT)
    row3 = df[df["neuron"] == 3].iloc[0]
    detail = page.locator(f"#{ids.NEURON_DETAIL}")
    expect(detail.locator("[data-field='label score']")).to_have_text(fmt_num(row3["label_score"]))
    expect(detail.locator("[data-field='label']")).to_have_text(HOSTILE_LABEL)

    cards.first.click()
    expect(page.locator("#neuron-detail-title")).to_have_text(f"Neuron {int(best['neuron'])}", timeout=TIMEOUT)
    expect(detail.locator("[data-field='label score']")).to_have_text(fmt_num(best["label_score"]))
    assert detail.locator("img").count() == 3  # featvis, top images, attribution of a rendered neuron
    shot(page, "neuron_detail")
    assert page.js_errors == []  # includes: no alert() dialog from the hostile label


def test_neuron_search_filters_the_grid(page, live_url, synthetic_runs):
    _open(page, f"{live_url}/neurons?a=neurons-synth")
    df = pd.read_csv(synthetic_runs["neurons"] / "neurons.csv")
    n_pizza = int((df["labels"].str.contains("pizza") | df["label"].str.contains("pizza")).sum())
    search = page.locator(f"#{ids.NEURON_SEARCH}")
    search.fill("pizza")
    search.press("Enter")
    expect(page.locator(f"#{ids.NEURON_COUNT}")).to_contain_text(f"{n_pizza} of {len(df)} neurons", timeout=TIMEOUT)
    assert page.locator(".neuron-card").count() == n_pizza


def test_switching_runs_updates_the_numbers(page, live_url, runs_root):
    _open(page, f"{live_url}/typographic?a=typographic-ck1")
    kpi = page.locator(f"#{ids.kpi('typographic', 'attack_success_rate')}")
    s1 = open_run(runs_root / "typographic-ck1").summary["typographic"]["attack_success_rate"]
    s2 = open_run(runs_root / "typographic-ck2").summary["typographic"]["attack_success_rate"]
    assert fmt_value("attack_success_rate", s1) != fmt_value("attack_success_rate", s2)
    expect(kpi).to_have_text(fmt_value("attack_success_rate", s1), timeout=TIMEOUT)
    page.locator(f"#{ids.RUN_A}").click()
    page.locator(".dash-dropdown-option:has(input[value='typographic-ck2'])").click()
    expect(kpi).to_have_text(fmt_value("attack_success_rate", s2), timeout=TIMEOUT)
    page.locator("#nav-bias").click()  # the choice of run survives navigation
    expect(page.locator(f"#{ids.PAGE}")).to_contain_text("Run typographic-ck2 has no bias results", timeout=TIMEOUT)
    shot(page, "switched_run")


def test_compare_page_shows_paired_difference(page, live_url, synthetic_runs):
    _open(page, f"{live_url}/compare?a=typographic-ck1&b=typographic-ck2")
    df = diff_runs(synthetic_runs["typographic"], synthetic_runs["typographic_b"]).set_index("metric")
    table = page.locator(f"#{ids.COMPARE_TABLE}")
    expect(table).to_be_visible(timeout=TIMEOUT)
    row = table.locator("tbody tr", has_text="attack_success_rate")
    expect(row.locator("td").nth(4)).to_have_text(fmt_num(df.loc["attack_success_rate", "difference"], 4))
    expect(row.locator("td").nth(5)).to_have_text(fmt_num(df.loc["attack_success_rate", "ci_low"], 4))
    shot(page, "page_compare")
    _open(page, f"{live_url}/compare?a=typographic-ck1&b=typographic-otherdata")
    expect(page.locator(f"#{ids.COMPARE_MESSAGE}")).to_contain_text("not on the same inputs", timeout=TIMEOUT)


def test_overview_lists_runs_and_broken_folders(page, live_url):
    _open(page, f"{live_url}/")
    table = page.locator(f"#{ids.RUNS_TABLE}")
    expect(table).to_be_visible(timeout=TIMEOUT)
    for name in ("neurons-synth", "typographic-ck1", "typographic-ck2", "bias-synth", "halfwritten"):
        expect(table.locator(f"tr[data-run='{name}']")).to_have_count(1)
    expect(table.locator("tr[data-run='halfwritten']")).to_contain_text("running")
    expect(page.locator(f"#{ids.BROKEN_LIST}")).to_contain_text("not valid JSON")
    shot(page, "page_overview")


def test_half_written_run_and_escaping_urls(page, live_url):
    _open(page, f"{live_url}/typographic?a=halfwritten")
    expect(page.locator(f"#{ids.PAGE}")).to_contain_text("has no typographic results (status: running", timeout=TIMEOUT)
    for bad in ("/runfile/..%2f..%2fetc%2fpasswd", "/runfile//etc/passwd", "/runfile/halfwritten/manifest.json"):
        assert page.request.get(live_url + bad).status == 404, bad
    # a browser folds ../ and %2e%2e away before sending; what comes back is the app page, never the file
    for folded in ("/runfile/../halfwritten/manifest.json", "/runfile/%2e%2e/halfwritten/manifest.json"):
        assert "clipaudit_run" not in page.request.get(live_url + folded).text()
    shot(page, "halfwritten")
