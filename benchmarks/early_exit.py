"""Issue 23 benchmark: what an early exit saves when only ``block:k`` is read.

On random-init ViT-B-32 and RN50 (224 px) this times, at ``block:k`` for k = 2 and the middle
block, (1) activation collection: ``run_with_cache(..., stop_at=True)`` against the same call
running the whole tower, and (2) feature visualisation: ``probes.featvis.render`` at block:k as
shipped (it stops at the layer) against a render at the last block (a full forward and
backward per step); also printed, without a goal, against the same block:k render with the
early exit switched off (only the forward above block:k is saved there: autograd never
back-propagated through layers the loss does not read).
Each ratio is early / full; the goal is (k + 1) / L + 0.10, L the number of blocks (12
transformer blocks; 16 bottlenecks for RN50, whose blocks differ in cost, so there the goal is
approximate). Timings are the best of a few repeats taken in turn. No BatchNorm calibration:
the cost of a forward does not depend on the statistics' values.

Run: python benchmarks/early_exit.py [--quick] [--device auto] [--models ViT-B-32,RN50]
"""
from __future__ import annotations

import argparse
import warnings

import torch
from _timing import Row, clock, sync, table

BENCH = "early_exit"


def _load(name: str, device: str):
    from clipaudit.model import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(name, pretrained="none", device=device)


def _best(fns: dict[str, callable], device, repeats: int) -> dict[str, float]:
    """Best time of each function over ``repeats`` rounds, the functions taken in turn."""
    best = {k: float("inf") for k in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(repeats):
        for key, fn in fns.items():
            sync(device)
            t = clock()
            fn()
            sync(device)
            best[key] = min(best[key], clock() - t)
    return best


def _n_blocks(model) -> int:
    from clipaudit.hooks import list_layers

    return sum(1 for l in list_layers(model) for a in l.aliases if a.startswith("block:") and a != "block:-1")


def _collection(model, ks: list[int], batch: int, repeats: int) -> dict[str, float]:
    from clipaudit.hooks import run_with_cache

    x = torch.rand(batch, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(0))
    x = x.to(model.device)

    def reader(layer: str, stop):
        def f():
            with torch.no_grad():
                run_with_cache(model, x, layer, stop_at=stop)
        return f

    fns = {"full": reader("block:0", None)}
    fns.update({f"block:{k}": reader(f"block:{k}", True) for k in ks})
    return _best(fns, model.device, repeats)


def _featvis(model, ks: list[int], n: int, batch: int, steps: int, repeats: int) -> dict[str, float]:
    """Render times: at block:k as shipped (early exit), at block:k without the early exit,
    and at the last block (a step through the whole tower, forward and backward)."""
    import clipaudit.probes.featvis as fv
    from clipaudit.hooks import run_with_cache

    cfg = fv.FeatVisConfig(steps=steps)
    never_stop = lambda m, px, layers, stop_at=None, detach=True: run_with_cache(m, px, layers, None, detach)

    def renderer(k: int, early: bool):
        def f():
            saved = fv.run_with_cache
            fv.run_with_cache = saved if early else never_stop
            try:
                fv.render(model, f"block:{k}", list(range(batch)), cfg, seed=0)
            finally:
                fv.run_with_cache = saved
        return f

    fns = {"full": renderer(n - 1, True)}
    for k in ks:
        fns[f"block:{k} no-exit"] = renderer(k, False)
        fns[f"block:{k}"] = renderer(k, True)
    return _best(fns, model.device, repeats)


def run(quick: bool = False, device: str = "auto", models: str = "ViT-B-32,RN50") -> list[Row]:
    """Rows of early / full cost ratios for every model, k and measure."""
    from clipaudit.model import pick_device

    dev = str(pick_device(device))
    cuda = dev.startswith("cuda")
    batch = 16 if cuda else (4 if quick else 16)
    steps = 4 if quick else 10
    repeats = 3 if quick else 5
    rows = []
    for name in models.split(","):
        model = _load(name, dev)
        n = _n_blocks(model)
        ks = [2, n // 2]
        coll = _collection(model, ks, batch, repeats)
        vis = _featvis(model, ks, n, min(batch, 4), steps, 2 if quick else 3)
        for k in ks:
            goal = (k + 1) / n + 0.10
            rows.append(Row(BENCH, f"{name} collect block:{k}/{n} ({dev})", coll[f"block:{k}"] / coll["full"], goal,
                            note=f"vs full forward; batch {batch}, full {coll['full'] * 1e3:.0f} ms"))
            rows.append(Row(BENCH, f"{name} featvis block:{k}/{n} ({dev})", vis[f"block:{k}"] / vis["full"], goal,
                            note=f"vs a step at the last block; {min(batch, 4)} images x {steps} steps, "
                                 f"full {vis['full']:.2f} s"))
            rows.append(Row(BENCH, f"{name} featvis block:{k} exit/no-exit ({dev})",
                            vis[f"block:{k}"] / vis[f"block:{k} no-exit"],
                            note="the same render without stop_at (backward never ran above block:k)"))
        del model
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="ViT-B-32,RN50")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="smaller batches, fewer steps and repeats")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(table(run(args.quick, args.device, args.models)))


if __name__ == "__main__":
    main()
