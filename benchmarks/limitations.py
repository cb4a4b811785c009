"""Issue 19 benchmark: the limitations audit.

1. Feature extraction (``probes.features.extract_features``: batches, encode, copy to numpy)
   against bare ``encode_images`` over the same source batches (decoding included in both).
   Reported: throughput ratio = bare time / extraction time (goal >= 0.95), best of 3 each.
2. Linear-probe fit time: scikit-learn L-BFGS logistic regression on 10,000 x 512 features,
   16 classes, one C (report only), and the full C search over the audit's grid.
3. ``clipaudit limitations --quick`` end to end on the toy (goal: under 60 s on 2 cores;
   wall time, since that is what the user waits for).

Run: python benchmarks/limitations.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np
import torch
from _timing import Row, clock, sync, table


def _load(name: str):
    from clipaudit.model import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(name, device="cpu")


@torch.no_grad()
def _bare(model, source, batch_size: int) -> None:
    for batch in source.batches(model, batch_size):
        model.encode_images(batch.pixels)
    sync(model.device)


def extraction_ratio(name: str, n: int) -> Row:
    from clipaudit.probes.features import extract_features
    from clipaudit.probes.limitation_sources import toy_shift_source

    model = _load(name)
    source = toy_shift_source(n, 1, n_control=1)
    bare, feat = [], []
    for _ in range(3):
        t = clock()
        _bare(model, source, 64)
        bare.append(clock() - t)
        t = clock()
        extract_features(model, source, 64)
        sync(model.device)
        feat.append(clock() - t)
    return Row("limitations", f"{name}: features / bare forward ({n + 2} img)", min(bare) / min(feat), 0.95, lower=False,
               note=f"bare {min(bare):.2f}s, features {min(feat):.2f}s")


def probe_fit_rows(n: int) -> list[Row]:
    from sklearn.linear_model import LogisticRegression

    from clipaudit.probes.linear_probe import C_GRID, fit_probe

    rng = np.random.default_rng(0)
    y = rng.integers(0, 16, size=n)
    centres = rng.normal(size=(16, 512))
    x = centres[y] * 0.3 + rng.normal(size=(n, 512))
    t = clock()
    LogisticRegression(solver="lbfgs", C=1.0, max_iter=1000).fit(x, y)
    one = clock() - t
    half = n // 2
    t = clock()
    fit_probe(x[:half], y[:half], x[half:], y[half:])
    search = clock() - t
    return [Row("limitations", f"probe fit {n}x512x16, C=1 (s)", one, note="scikit-learn L-BFGS, one fit"),
            Row("limitations", f"probe C search on {half}x512 ({len(C_GRID)} C)", search, note="report")]


def quick_end_to_end() -> Row:
    from clipaudit.cli import main

    os.environ.setdefault("CLIPAUDIT_NO_PROGRESS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        rc = main(["limitations", "--model", "toy", "--quick", "--out", os.path.join(tmp, "run")])
        wall = time.perf_counter() - t
    return Row("limitations", "clipaudit limitations --quick, toy (s, wall)", wall, 60.0,
               note=f"exit {rc}, {torch.get_num_threads()} torch threads")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer images and a smaller probe problem")
    args = p.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    rows = [extraction_ratio(name, 254 if args.quick else 1022) for name in ("toy-rn", "toy-vit")]
    rows += probe_fit_rows(2000 if args.quick else 10_000)
    print(table(rows), flush=True)
    print(quick_end_to_end().line())


if __name__ == "__main__":
    main()
