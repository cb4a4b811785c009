"""Unit pages, search and the live bench in headless Chromium: a neuron page opens by URL and
shows its label, back/forward move between units, search reaches a pizza unit in the top 3,
writing "ipod" on an apple scene moves the probabilities, and a non-image upload gets a clear
message. Screenshots go to test-artifacts/dashboard/ (the README's come from here)."""
from __future__ import annotations

import pandas as pd
import pytest
from playwright.sync_api import expect

from clipaudit.dashboard import ids

from .conftest import _serve, shot

pytestmark = pytest.mark.browser
TIMEOUT = 20_000


@pytest.fixture(scope="module")
def bench_url(runs_root, toy_rn):
    from clipaudit.dashboard.app import create_app

    server, thread = _serve(create_app(runs_root, model=toy_rn))
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(f"#{ids.PAGE} > *", timeout=TIMEOUT)


def test_neuron_page_by_url_and_back_forward(page, live_url, synthetic_runs):
    df = pd.read_csv(synthetic_runs["neurons"] / "neurons.csv").set_index("neuron")
    _open(page, f"{live_url}/unit/neuron/neurons-synth/penultimate/9")
    expect(page.locator(f"#{ids.UNIT_LABEL}")).to_have_text(df.loc[9, "label"], timeout=TIMEOUT)
    shot(page, "unit_neuron")
    page.locator(f"#{ids.UNIT_NEXT}").click()
    expect(page.locator(f"#{ids.UNIT_LABEL}")).to_have_text(df.loc[10, "label"], timeout=TIMEOUT)
    assert page.url.endswith("/unit/neuron/neurons-synth/penultimate/10")
    page.go_back()
    expect(page.locator(f"#{ids.UNIT_LABEL}")).to_have_text(df.loc[9, "label"], timeout=TIMEOUT)
    page.go_forward()
    expect(page.locator(f"#{ids.UNIT_LABEL}")).to_have_text(df.loc[10, "label"], timeout=TIMEOUT)
    _open(page, f"{live_url}/unit/neuron/neurons-synth/penultimate/4242")
    expect(page.locator(f"#{ids.UNIT_ERROR}")).to_contain_text("has no neuron penultimate/4242", timeout=TIMEOUT)
    assert page.js_errors == []


def test_search_pizza_reaches_a_pizza_unit(page, live_url):
    _open(page, f"{live_url}/search")
    box = page.locator(f"#{ids.SEARCH_INPUT}")
    box.fill("pizza")
    box.press("Enter")
    hits = page.locator(".search-results > li")
    expect(hits.first).to_be_visible(timeout=TIMEOUT)
    labels = [hits.nth(i).get_attribute("data-label") for i in range(3)]
    assert all("pizza" in (x or "") for x in labels), labels
    shot(page, "search_pizza")
    hits.first.locator("a.search-hit").click()
    expect(page.locator(f"#{ids.UNIT_LABEL}")).to_contain_text("pizza", timeout=TIMEOUT)
    assert "/unit/neuron/neurons-synth/" in page.url
    assert page.js_errors == []


def _prob(page, cls: str, col: str) -> float:
    cell = page.locator(f"#{ids.BENCH_PROBS} tr[data-class='{cls}'] td[data-col='{col}'] span")
    return float(cell.get_attribute("data-prob"))


def test_live_bench_ipod_on_an_apple_moves_the_probabilities(page, bench_url):
    _open(page, f"{bench_url}/bench")
    expect(page.locator(f"#{ids.BENCH_PROBS} tr[data-class='ipod']")).to_have_count(1, timeout=TIMEOUT)
    before = _prob(page, "ipod", "clean")
    word = page.locator(f"#{ids.BENCH_WORD}")
    word.fill("ipod")
    word.press("Enter")
    cell = page.locator(f"#{ids.BENCH_PROBS} tr[data-class='ipod'] td[data-col='word']")
    expect(cell).to_have_count(1, timeout=TIMEOUT)
    after = _prob(page, "ipod", "word")
    assert after > before + 0.2, (before, after)
    shot(page, "live_bench")
    assert page.js_errors == []


def test_live_bench_non_image_upload_gets_a_clear_message(page, bench_url, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("this is text, not a picture")
    _open(page, f"{bench_url}/bench")
    page.locator(f"#{ids.BENCH_UPLOAD} input[type=file]").set_input_files(str(fake))
    expect(page.locator(f"#{ids.BENCH_UPLOAD_MESSAGE}")).to_contain_text(
        "'notes.png' is not an image Pillow can read", timeout=TIMEOUT)
    assert page.js_errors == []
