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
    from clipaudit.dashboard.synthetic import write_synthetic_runs

    root = tmp_path_factory.mktemp("runs")
    return write_synthetic_runs(root)


@pytest.fixture(scope="session")
def runs_root(synthetic_runs) -> Path:
    return synthetic_runs["neurons"].parent


@pytest.fixture(scope="session")
def real_runs(tmp_path_factory):
    """Run folders written by the real audit functions on a tiny random-init model, when they exist.

    Skips while the audit packages (built in parallel) are not importable or do not expose
    ``audit(model, source, config, run=None)``.
    """
    import importlib

    made = {}
    root = tmp_path_factory.mktemp("real-runs")
    from clipaudit.data import open_source
    from clipaudit.model import load_model
    from clipaudit.runs import RunFolder

    model = None
    for section, module_name, kind in (("typographic", "clipaudit.attacks.typographic", "object"),
                                       ("adversarial", "clipaudit.attacks.adversarial", "object"),
                                       ("bias", "clipaudit.bias", "person"),
                                       ("neurons", "clipaudit.probes", "object")):
        try:
            mod = importlib.import_module(module_name)
            audit = getattr(mod, "audit")
            config_cls = next(getattr(mod, n) for n in dir(mod) if n.endswith("Config") and n[0].isupper())
        except (ImportError, AttributeError, StopIteration):
            continue
        if model is None:
            model = load_model("toy-vit", pretrained="none", device="cpu")
        try:
            source = open_source(f"toy:{16}", n=16, seed=0, kind=kind)
            run = RunFolder.create(section, out=root / section, model=model, seed=0, argv=[section])
            with run:
                audit(model, source, config_cls(), run=run).save(run)
            made[section] = run.path
        except Exception as err:  # an audit still being written must not break the dashboard's tests
            print(f"real {section} run not made: {type(err).__name__}: {err}")
    if not made:
        pytest.skip("no audit package importable yet (clipaudit.probes / attacks / bias)")
    return made


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
