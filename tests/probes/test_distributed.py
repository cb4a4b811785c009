"""Data-parallel scan: two gloo processes, each on its shard, merge to the one-process result."""
from __future__ import annotations

import warnings

import torch

from tests.fixtures.process_group import run_local_group


def _worker(rank: int, world: int, out: str) -> None:
    from clipaudit.data import toy_source
    from clipaudit.model import load_model
    from clipaudit.probes.scan import scan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model("toy-rn", pretrained="none", device="cpu")
    res = scan(model, toy_source(30, seed=5), "penultimate", k=4, batch_size=8, rank=rank, world_size=world)
    if rank == 0:
        torch.save({"values": res.state.values, "positions": res.state.positions, "mean": res.state.mean,
                    "m2": res.state.m2, "count": res.state.count, "emb": res.embeddings}, out)


def test_two_process_scan_equals_single(tiny_rn, tmp_path):
    from clipaudit.data import toy_source
    from clipaudit.probes.scan import scan

    out = str(tmp_path / "rank0.pt")
    run_local_group(_worker, 2, out)
    got = torch.load(out)
    ref = scan(tiny_rn, toy_source(30, seed=5), "penultimate", k=4, batch_size=8)
    assert got["count"] == ref.state.count == 30
    assert torch.equal(got["positions"], ref.state.positions)
    assert torch.allclose(got["values"], ref.state.values, atol=1e-6)
    assert torch.allclose(got["mean"], ref.state.mean, atol=1e-9)
    assert torch.allclose(got["m2"], ref.state.m2, rtol=1e-6, atol=1e-9)
    assert torch.allclose(got["emb"], ref.embeddings, atol=1e-5)
