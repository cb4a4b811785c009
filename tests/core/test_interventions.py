"""Every audit runs under --ablate-heads / --sae-edit through the one runner, and says so."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from clipaudit.cli import main


def _typographic(out, *extra):
    return main(["typographic", "--model", "toy-vit", "--pretrained", "none", "--target", "pizza",
                 "--n-images", "8", "--bootstrap", "200", "--examples", "0", "--out", str(out), *extra])


def test_a_head_mask_changes_what_the_audit_sees_and_the_manifest_says_so(tmp_path, capsys):
    mask = tmp_path / "mask.txt"
    mask.write_text("3.0\n3.1\n3.2\n3.3\n")  # zero-ablate every head of toy-vit's last block
    assert _typographic(tmp_path / "plain") == 0
    assert _typographic(tmp_path / "masked", "--ablate-heads", str(mask)) == 0
    plain = pd.read_parquet(tmp_path / "plain" / "typographic_images.parquet")
    masked = pd.read_parquet(tmp_path / "masked" / "typographic_images.parquet")
    assert list(plain["id"]) == list(masked["id"])
    assert not np.allclose(plain["p_true_clean"], masked["p_true_clean"])
    manifest = json.loads((tmp_path / "masked" / "manifest.json").read_text())
    assert manifest["interventions"][0]["kind"] == "ablate_heads"
    assert "3.0,3.1,3.2,3.3" in manifest["interventions"][0]["spec"]
    assert "interventions" not in json.loads((tmp_path / "plain" / "manifest.json").read_text())


def test_bad_masks_and_edit_specs_stop_before_any_audit(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    for extra in (["--ablate-heads", str(empty)], ["--ablate-heads", str(tmp_path / "none.txt")],
                  ["--sae-edit", "runs/x:latents=a,b"]):
        assert _typographic(tmp_path / "never", *extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error:") and "Traceback" not in "\n".join(err)
        assert not (tmp_path / "never").exists()
