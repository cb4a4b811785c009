"""The file route serves run images from inside the runs folder only."""
from __future__ import annotations

import os

import pandas as pd
import pytest

from clipaudit.dashboard.app import create_app
from clipaudit.dashboard.files import safe_path


@pytest.fixture(scope="module")
def client(runs_root):
    outside = runs_root.parent / "outside-secret.png"
    outside.write_bytes(b"\x89PNG secret")
    link = runs_root / "neurons-synth" / "images" / "escape.png"
    if not link.exists():
        os.symlink(outside, link)
    return create_app(runs_root).server.test_client()


def _rendered(synthetic_runs) -> str:
    df = pd.read_csv(synthetic_runs["neurons"] / "neurons.csv")
    return df.loc[df["featvis"].notna(), "featvis"].iloc[0]


def test_serves_a_png_inside_the_runs_folder(client, synthetic_runs):
    rel = _rendered(synthetic_runs)
    r = client.get(f"/runfile/neurons-synth/{rel}")
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert r.data == (synthetic_runs["neurons"] / rel).read_bytes()


@pytest.mark.parametrize("url", [
    "/runfile/../outside-secret.png",
    "/runfile/neurons-synth/../../outside-secret.png",
    "/runfile/%2e%2e/outside-secret.png",
    "/runfile/..%2foutside-secret.png",
    "/runfile//etc/passwd",
    "/runfile/{outside}",
    "/runfile/neurons-synth/images/escape.png",  # symlink pointing outside
    "/runfile/neurons-synth/manifest.json",  # not a served type
    "/runfile/neurons-synth/images/missing.png",
    "/runfile/",
])
def test_paths_outside_or_unserved_get_404(client, runs_root, url):
    url = url.replace("{outside}", str(runs_root.parent / "outside-secret.png"))
    r = client.get(url)
    assert r.status_code == 404
    assert b"secret" not in r.data


def test_html_reports_are_sandboxed(client):
    r = client.get("/runfile/bias-synth/bias_report.html")
    assert r.status_code == 200
    assert "sandbox" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_safe_path_unit(runs_root):
    assert safe_path(runs_root, "bias-synth/bias_report.md") is not None
    assert safe_path(runs_root, "/etc/hostname") is None
    assert safe_path(runs_root, "a\x00b.png") is None
    assert safe_path(runs_root, "") is None
