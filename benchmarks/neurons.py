"""Issue 4 benchmark: scan throughput and batched feature visualisation.

1. Scan: ``probes.scan`` (hooks + per-batch top-k merge + moments + embeddings) against bare
   ``encode_images`` over the same source batches (decoding included in both).
   Reported: throughput ratio = bare time / scan time (goal >= 0.95).
2. Feature vis: K = 16 neurons rendered in one batch against 16 one-neuron renders of the
   same steps. Reported: speed-up = sequential time / batched time (goal >= 0.7 x 16 = 11.2).

Models: the toy (trained weights when shipped, else random init), random-init RN50 and
ViT-B-32; CPU, plus CUDA when present. Run: python benchmarks/neurons.py [--quick] [--device D]
"""
from __future__ import annotations

import argparse
import warnings

import torch
from _timing import Row, clock, sync, table



def _load(name: str, device: str):
    from clipaudit.model import load_model
    from clipaudit.toy import weights_path

    pretrained = None if name.startswith("toy") and weights_path(name).is_file() else "none"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(name, pretrained=pretrained, device=device), pretrained or "shipped"



def bench_scan(model, n: int, batch: int, device: str, repeats: int = 3) -> tuple[float, float]:
    """(bare, scanned) seconds, each the best of ``repeats`` runs taken in turn, so a busy moment
    on the shared machine does not land on one side only."""
    from clipaudit.data import toy_source
    from clipaudit.probes.scan import scan

    src = toy_source(n, seed=9)
    list(src.batches(model, batch))  # warm caches (fonts, PIL)

    @torch.no_grad()
    def bare_pass() -> None:
        for b in src.batches(model, batch):
            model.encode_images(b.pixels.to(model.device))

    def scan_pass() -> None:
        scan(model, src, "penultimate", k=50, batch_size=batch)

    best = {bare_pass: float("inf"), scan_pass: float("inf")}
    for _ in range(repeats):
        for fn in best:
            sync(device)
            t = clock()
            fn()
            sync(device)
            best[fn] = min(best[fn], clock() - t)
    return best[bare_pass], best[scan_pass]


def bench_featvis(model, k: int, steps: int, device: str) -> tuple[float, float]:
    from clipaudit.probes.featvis import FeatVisConfig, render

    cfg = FeatVisConfig(steps=steps)
    ids = list(range(k))
    render(model, "penultimate", [0], FeatVisConfig(steps=1))  # warm-up (kornia, lucent)
    sync(device)
    t = clock()
    render(model, "penultimate", ids, cfg, seed=0)
    sync(device)
    batched = clock() - t
    t = clock()
    for n in ids:
        render(model, "penultimate", [n], cfg, seed=0)
    sync(device)
    return batched, clock() - t


def run(quick: bool = False, device: str = "auto", models: str = "toy-vit,toy-rn,RN50,ViT-B-32") -> list[Row]:
    """Rows: scan throughput ratio and batched feature-vis speed-up per model on ``device``."""
    from clipaudit.model import pick_device

    dev = str(pick_device(device))
    rows = []
    for name in models.split(","):
        big = not name.startswith("toy")
        n = (64 if quick else 256) if big else (512 if quick else 2048)
        steps = (2 if quick else 8) if big and dev == "cpu" else (16 if quick else 64)
        model, weights = _load(name, dev)
        bare, scanned = bench_scan(model, n, 16 if big else 64, dev)
        batched, seq = bench_featvis(model, 16, steps, dev)
        rows.append(Row("neurons", f"{name} ({weights}) scan bare/scan ({dev})", bare / scanned, 0.95, lower=False,
                        note=f"n={n}, bare {bare:.2f} s, scan {scanned:.2f} s"))
        rows.append(Row("neurons", f"{name} featvis K=16 seq/batched ({dev})", seq / batched, 11.2, lower=False,
                        note=f"steps={steps}, batched {batched:.2f} s, 16x seq {seq:.2f} s"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="toy-vit,toy-rn,RN50,ViT-B-32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=None, help="cpu, cuda, auto (default: CPU, plus CUDA when present)")
    ap.add_argument("--quick", action="store_true", help="fewer images and steps (2 shared CPU cores)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = [r for d in devices for r in run(args.quick, d, args.models)]
    print(table(rows))


if __name__ == "__main__":
    main()
