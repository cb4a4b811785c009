"""`clipaudit heads` runs (not for meaning) on random-init real open_clip architectures over a
small image folder: RN50 (attention pooling) and ViT-B-32 (its last layer's 12 heads swept).

The decomposition must still be exact there, every table must follow the contract, and the
sweep must cover exactly the heads asked for.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clipaudit.cli import main


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-arch-images")
    rng = np.random.default_rng(0)
    for cls in ("apple", "pizza"):
        (root / cls).mkdir()
        Image.fromarray((rng.random((80, 96, 3)) * 255).astype("uint8")).save(root / cls / "0.png")
    return root


@pytest.mark.parametrize("arch, extra, layers, heads_swept", [("RN50", [], 1, 32),
                                                              ("ViT-B-32", ["--sweep-layers", "1"], 12, 12)])
def test_heads_runs_on_a_random_init_real_architecture(arch, extra, layers, heads_swept, folder, tmp_path):
    from clipaudit.contract import check_folder
    from clipaudit.probes.heads_audit import CONTRACT

    out = tmp_path / "run"
    assert main(["heads", "--model", arch, "--pretrained", "none", "--images", str(folder), "--random-sets", "2",
                 "--maps", "1", "--textspan-texts", "2", "--batch-size", "4", *extra, "--out", str(out)]) == 0
    assert check_folder(out, [CONTRACT]) == []
    s = json.loads((out / "summary.json").read_text())["heads"]
    assert s["decomposition_max_rel_error"] <= 1e-4 and s["n_layers"] == layers and s["n_images"] == 2
    sweep = pd.read_csv(out / "heads_ablation.csv")
    assert len(sweep) == heads_swept and (sweep["layer"] == layers - 1).all()
    assert len(pd.read_csv(out / "heads_scores.csv")) == layers * s["n_heads"]  # scores cover every head
    assert list((out / "images").glob("head_map_*.png"))
