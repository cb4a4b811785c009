"""Dashboard fixtures: synthetic run folders (always), real ones from the audits (when importable),
a live server on 127.0.0.1 and a headless Chromium page."""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def synthetic_runs(tmp_path_factory):
    """name -> path of synthetic run folders following docs/run-folders.md (see dashboard.synthetic)."""
    from tests.fixtures.synthetic_runs import write_synthetic_runs

    root = tmp_path_factory.mktemp("runs")
    return write_synthetic_runs(root)


@pytest.fixture(scope="session")
def runs_root(synthetic_runs) -> Path:
    return synthetic_runs["neurons"].parent


@pytest.fixture(scope="session")
def real_run(tmp_path_factory, tiny_vit):
    """``real_run(section)`` -> a run folder written by that real audit through the registry
    (tiny random-init toy-vit, a few images), made on first use."""
    from clipaudit.attacks import TypographicConfig
    from clipaudit.attacks.adversarial_audit import AdversarialConfig
    from clipaudit.bias import BiasConfig
    from clipaudit.bias.datasets import open_dataset
    from clipaudit.data import open_source
    from clipaudit.probes import NeuronsConfig
    from clipaudit.runner import run_audit

    root = tmp_path_factory.mktemp("real-runs")
    jobs = {
        "typographic": lambda: (open_source("toy", n=16, seed=0, kind="object"),
                                TypographicConfig(target="pizza", n_resamples=200, examples=1, batch_size=16,
                                                  sweep=["size=8,16"])),
        "adversarial": lambda: (open_source("toy", n=12, seed=0, kind="object"),
                                AdversarialConfig(eps=2 / 255, steps=2, sanity_n=4, examples=1, batch_size=12)),
        "bias": lambda: (open_dataset("toy:48", n=48),
                         BiasConfig(bootstrap=200, permutations=200, k=10)),
        "neurons": lambda: (open_source("toy", n=24, seed=0, kind="object"),
                            NeuronsConfig(top=1, steps=2, k=4, n_words=2, n_pictures=2,
                                          attribution_images=1, batch=24)),
    }
    made = {}

    def get(section: str) -> Path:
        if section not in made:
            source, config = jobs[section]()
            _, run = run_audit(section, tiny_vit, source, config, out=root / section, seed=0)
            made[section] = run.path
        return made[section]

    return get


def _serve(app):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture(scope="session")
def live_url(runs_root):
    """Base URL of the dashboard served from a background thread on 127.0.0.1:<free port>."""
    from clipaudit.dashboard.app import create_app

    server, thread = _serve(create_app(runs_root))
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser():
    if not (os.path.exists(CHROMIUM) and shutil.which(CHROMIUM)):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
    pg.js_errors = errors
    yield pg
    context.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
