"""Issue 17 benchmark: what the heads decomposition and the single-head sweep cost.

For each model (toy-vit, toy-rn, random-init ViT-B-32; RN50 with --all):

- decomposition of a batch (per head, no per-token split) vs one plain ``encode_images`` of the
  same batch (goal <= 2x);
- a single-head ablation sweep over all H heads (one patched forward each) vs H plain forwards
  (goal <= 1.1x).

Timings alternate the two sides (best of ``--repeats``), on CPU time with one thread (see
``_timing.clock``) or wall time on CUDA; ``--device cuda`` runs it unchanged on a GPU.

Run: python benchmarks/heads.py [--quick] [--device auto] [--models toy-vit,toy-rn,ViT-B-32]
"""
from __future__ import annotations

import argparse
import warnings

import torch
from _timing import Row, clock, sync, table


def _best(fn, repeats: int, device) -> float:
    out = []
    for _ in range(repeats):
        sync(device)
        t = clock()
        fn()
        sync(device)
        out.append(clock() - t)
    return min(out)


def measure(name: str, batch: int, repeats: int, device: str) -> list[Row]:
    from clipaudit.model import load_model
    from clipaudit.probes.decompose import decompose
    from clipaudit.probes.head_ablation import HeadMask, ablate_heads, all_heads

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(name, pretrained=None if name.startswith("toy") else "none", device=device)
    dev = model.device
    x = torch.rand(batch, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(0)).to(dev)
    heads = all_heads(model)
    with torch.no_grad():
        model.encode_images(x)
        decompose(model, x)  # warm-up (and the layer table)

        def plain():
            model.encode_images(x)

        def dec():
            decompose(model, x)

        def plain_h():
            for _ in heads:
                model.encode_images(x)

        def sweep():
            for hd in heads:
                with ablate_heads(model, HeadMask([hd], "zero")):
                    model.encode_images(x)

        t_plain, t_dec, t_plain_h, t_sweep = [], [], [], []
        for _ in range(repeats):  # alternate, so load on the machine hits both sides alike
            t_plain.append(_best(plain, 1, dev))
            t_dec.append(_best(dec, 1, dev))
            t_plain_h.append(_best(plain_h, 1, dev))
            t_sweep.append(_best(sweep, 1, dev))
    note = f"batch {batch}, {dev.type}, {len(heads)} heads"
    return [Row("heads", f"{name}: decomposition / forward", min(t_dec) / min(t_plain), 2.0, note=note),
            Row("heads", f"{name}: head sweep / {len(heads)} forwards", min(t_sweep) / min(t_plain_h), 1.1, note=note)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller batches, fewer repeats")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", default="toy-vit,toy-rn,ViT-B-32")
    ap.add_argument("--all", action="store_true", help="add RN50")
    ap.add_argument("--repeats", type=int, default=None, help="timings per side (default 3, 2 with --quick)")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: 64 toys / 8 others; half with --quick)")
    args = ap.parse_args()
    if args.device in ("auto", "cpu") and not torch.cuda.is_available():
        torch.set_num_threads(1)
    models = args.models.split(",") + (["RN50"] if args.all else [])
    rows: list[Row] = []
    for name in models:
        big = not name.startswith("toy")
        batch = args.batch or ((4 if args.quick else 8) if big else (32 if args.quick else 64))
        rows += measure(name, batch, args.repeats or (2 if args.quick else 3), args.device)
        print(rows[-2].line(), rows[-1].line(), sep="\n", flush=True)  # partial results survive a timeout
    print(table(rows))


if __name__ == "__main__":
    main()
