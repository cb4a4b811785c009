"""The wheel installs only ``clipaudit`` (the feature folders map under it)."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_has_one_top_level_package(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("clipaudit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"clipaudit"}
    for sub in ("probes", "attacks", "bias", "dashboard", "toy"):
        assert f"clipaudit/{sub}/__init__.py" in names
    assert any(n.startswith("clipaudit/toy/weights/") and n.endswith(".safetensors") for n in names)
    assert "clipaudit/toy/MODEL_CARD.md" in names
