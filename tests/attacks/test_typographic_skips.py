"""``clipaudit typographic`` says how many images it could not read (as the other audits do)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from clipaudit.cli import main


def test_unreadable_images_are_counted_out_loud(tmp_path, capsys):
    for cls, colour in (("apple", 200), ("banana", 60)):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((32, 32, 3), colour + i, np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "imgs" / "apple" / "broken.png").write_bytes(b"\x89PNG not an image")
    code = main(["typographic", "--pretrained", "none", "--device", "cpu", "--bootstrap", "50",
                 "--target", "banana", "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0
    assert "note: 1 image(s) could not be read and were left out: apple/broken.png" in out


def test_torchrun_adversarial_attacks_on_rank_0_only(tmp_path, capsys, monkeypatch):
    """Under torchrun every rank ran the full attack into one folder; now ranks > 0 stand aside."""
    import clipaudit.distributed as distributed

    monkeypatch.setattr(distributed, "init_distributed_from_env", lambda device="cpu": (1, 2))
    code = main(["adversarial", "--pretrained", "none", "--device", "cpu", "--n-images", "2", "--out", str(tmp_path / "run")])
    assert code == 0 and not (tmp_path / "run").exists()
    assert "runs on rank 0 only" in capsys.readouterr().err
