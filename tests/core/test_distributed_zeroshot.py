"""Zero-shot passes under torch.distributed: two gloo processes, each on its shard, merge to
exactly the one-process result (typographic per-image table, bias embeddings)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch

from clipaudit.data import toy_source
from tests.fixtures.process_group import run_local_group


def _objects():
    return toy_source(22, seed=9, kind="object", text=False)


def _people():
    return toy_source(19, seed=10, kind="person")


def _run_both(model):
    from clipaudit.attacks.typographic_audit import TypographicConfig, audit
    from clipaudit.bias.audit import embed_images

    typo = audit(model, _objects(), TypographicConfig(target="pizza", n_resamples=200, examples=2, batch_size=8))
    emb = embed_images(model, _people(), batch_size=8)
    return typo, emb


def _worker(rank: int, world: int, out: str) -> None:
    from clipaudit.model import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model("toy-rn", device="cpu")
    typo, emb = _run_both(model)
    if rank == 0:
        torch.save({"images": typo.tables["typographic_images"].to_dict("list"), "summary": typo.summary,
                    "emb": emb.image, "ids": list(emb.meta["id"])}, out)


def test_two_process_zero_shot_passes_equal_single(toy_rn, tmp_path):
    out = str(tmp_path / "rank0.pt")
    run_local_group(_worker, 2, out)
    got = torch.load(out, weights_only=False)
    typo, emb = _run_both(toy_rn)
    ref_images = typo.tables["typographic_images"].reset_index(drop=True)
    got_images = pd.DataFrame(got["images"])
    assert list(got_images["id"]) == list(ref_images["id"])
    for col in ("pred_clean", "pred_attacked", "success", "flipped"):
        assert list(got_images[col]) == list(ref_images[col]), col
    assert np.allclose(got_images["p_target_attacked"], ref_images["p_target_attacked"], atol=1e-5)
    assert got["summary"]["attack_success_rate"] == typo.summary["attack_success_rate"]
    assert got["summary"]["attack_success_ci"] == typo.summary["attack_success_ci"]
    ref_emb = emb.image
    assert got["ids"] == list(emb.meta["id"])
    assert np.allclose(got["emb"], ref_emb, atol=1e-5)
