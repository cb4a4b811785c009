"""Where the time of a typographic run goes: rendering vs the model, and images/s end to end.

Goal: rendering <= 10% of wall time. Prints ratios measured in this one run (CPU, 1 thread by
default). Usage: python benchmarks/typographic.py [--n 64] [--threads 1] [--skip-vitb32]
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch


def measure(model, n: int, label: str) -> None:
    from clipaudit.attacks.typographic import TextStyle, render
    from clipaudit.attacks.typographic_audit import TypographicConfig, audit
    from clipaudit.data import toy_source
    from clipaudit.toy.world import OBJECT_CLASSES
    from clipaudit.zeroshot import predict_probs

    src = toy_source(n=n, seed=99, kind="object", text=False)
    head = model.classifier(list(OBJECT_CLASSES))
    batches = list(src.batches(model, batch_size=32))
    t_render = t_model = 0.0
    for style in (TextStyle(), TextStyle(position="random", rotation=10)):
        for b in batches:
            t0 = time.perf_counter()
            out = render(b.pixels, "pizza", style, seed=0, keys=range(len(b.ids)))
            t1 = time.perf_counter()
            predict_probs(head, out.pixels)
            t_model += time.perf_counter() - t1
            t_render += t1 - t0
    share = t_render / (t_render + t_model)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        classes = Path(tmp) / "classes.txt"
        classes.write_text("\n".join(OBJECT_CLASSES))
        t0 = time.perf_counter()
        audit(model, src, TypographicConfig(target="pizza", classes=str(classes), n_resamples=200,
                                            examples=0, batch_size=32))
        wall = time.perf_counter() - t0
    print(f"{label:>22s}: {model.image_size}px  render {t_render:6.2f}s  model {t_model:6.2f}s  "
          f"render share {share:6.1%} (goal <= 10%)  end-to-end {n / wall:7.1f} images/s "
          f"(clean + attacked pass, n={n})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-vitb32", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    from clipaudit.model import load_model
    from clipaudit.toy import weights_path

    for name in ("toy-vit", "toy-rn"):
        pretrained = None if weights_path(name).is_file() else "none"
        measure(load_model(name, pretrained=pretrained, device="cpu"), args.n,
                f"{name} ({'trained' if pretrained is None else 'random'})")
    if not args.skip_vitb32:
        measure(load_model("ViT-B-32", pretrained="none", device="cpu"), max(8, args.n // 4), "ViT-B-32 (random)")


if __name__ == "__main__":
    main()
