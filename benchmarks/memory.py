"""Issue 15 benchmark: peak memory is flat in the number of images.

Writes 4N large JPEGs (default 160 of 1600x1200, smooth colour fields with noise, seeded) to a
temporary folder, then runs one fresh Python process per image count (N and 4N) that loads the
model, streams ``folder_source(...).batches`` through ``encode_images`` and reports its peak
resident set size (``resource.getrusage``) above the RSS it had just before the first batch.
Prints both growths and their ratio 4N / N (flat: about 1; it grew with N when every decode was
submitted at once). Runs unchanged on CUDA (``--device auto``), where it also prints peak GPU
memory.

Run: python benchmarks/memory.py [--n 40] [--size 1600x1200] [--batch 8] [--model toy]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, warnings
import numpy as np, torch
from clipaudit.data import folder_source
from clipaudit.model import load_model

folder, n, batch, name, pretrained, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:7]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model = load_model(name, None if pretrained == "-" else pretrained, device)
src = folder_source(folder)
src = src.subset(np.arange(len(src)) < n)
with torch.no_grad():
    model.encode_images(torch.rand(1, 3, model.image_size, model.image_size))  # warm-up allocations
base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
seen = 0
with torch.no_grad():
    for b in src.batches(model, batch):
        model.encode_images(b.pixels)
        seen += len(b.ids)
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
gpu = torch.cuda.max_memory_allocated() / 2**20 if model.device.type == "cuda" else None
print(json.dumps({"n": seen, "base_mb": base_kb / 1024, "peak_mb": peak_kb / 1024, "gpu_mb": gpu}))
"""


def write_images(folder: Path, count: int, width: int, height: int, seed: int = 0) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(count):
        a, b, c = rng.uniform(0.002, 0.01, size=3)
        field = np.stack([np.sin(xx * a + i), np.cos(yy * b), np.sin((xx + yy) * c)], -1) * 100 + 128
        field += rng.normal(0, 12, size=field.shape).astype(np.float32)
        Image.fromarray(np.clip(field, 0, 255).astype(np.uint8)).save(folder / f"img{i:04d}.jpg", quality=90)


def run_child(folder: Path, n: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-c", CHILD, str(folder), str(n), str(args.batch), args.model,
           args.pretrained or "-", args.device]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="the smaller image count N (the larger is 4N)")
    ap.add_argument("--size", default="1600x1200", help="image size WxH")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--model", default="toy")
    ap.add_argument("--pretrained", default=None)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_images(folder, 4 * args.n, width, height)
        rows = [run_child(folder, n, args) for n in (args.n, 4 * args.n)]
    grow = [r["peak_mb"] - r["base_mb"] for r in rows]
    for r, g in zip(rows, grow):
        gpu = f", peak GPU {r['gpu_mb']:.0f} MB" if r["gpu_mb"] is not None else ""
        print(f"{r['n']:>5d} images of {width}x{height}, batch {args.batch}: peak RSS {r['peak_mb']:.0f} MB "
              f"(+{g:.0f} MB over {r['base_mb']:.0f} MB before the first batch){gpu}")
    print(f"growth ratio {4 * args.n} / {args.n} images: {grow[1] / max(grow[0], 1.0):.2f} (flat: ~1)")


if __name__ == "__main__":
    main()
