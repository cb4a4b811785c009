"""Issue 18 benchmark: SAE training throughput, collection cost and memory.

- training throughput (activation rows per CPU-second, the AuxK loss active) and peak memory of the training step for
  toy-rn (penultimate, pooled and per position) and toy-vit (penultimate CLS, residual tokens);
- collection (``activation_rows``: run_with_cache with early exit + row reshaping) vs a bare
  ``encode_images`` on the same pixels: throughput ratio (goal >= 0.9);
- memory flat in the number of images: the peak RSS of streaming 1x and 4x the images, each in a
  fresh process (goal: ratio <= 1.1).

Runs unchanged on CUDA (the device is picked like the rest of clipaudit; peak memory is then
``torch.cuda.max_memory_allocated``).

    python benchmarks/sae.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings

import torch
from _timing import Row, clock, sync, table


def _model(name: str, device: str):
    from clipaudit.model import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(name, device=device)


def _pixels(model, n: int) -> torch.Tensor:
    from clipaudit.data import toy_source

    return torch.cat([b.pixels for b in toy_source(n, seed=5).batches(model, 128)])


def training_rate(name: str, layer_name: str, tokens: str, latents: int, steps: int, device: str) -> tuple[float, float]:
    """(rows per second, peak MiB) of SAE training steps on rows collected beforehand."""
    from clipaudit.hooks import resolve_layer, run_with_cache
    from clipaudit.probes.sae import SAEConfig, rows_of, train_sae

    model = _model(name, device)
    layer = resolve_layer(model, layer_name)
    with torch.no_grad():
        _, cache = run_with_cache(model, _pixels(model, 512), layer, stop_at=True)
    x = rows_of(cache[layer.path], layer, tokens).float()
    # dead_after of two batches: AuxK is active from the third step, as in steady-state training (where
    # 10-25% of latents are dead), so the rate counts its cost
    cfg = SAEConfig(latents=latents, k=32, steps=steps, batch_size=1024, tokens=tokens, dead_after=2048)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    t = clock()
    train_sae(lambda: iter(x.split(4096)), x.shape[1], cfg, device=device)
    sync(device)
    secs = clock() - t
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else _rss_mib()
    return steps * cfg.batch_size / secs, peak


def _rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def collection_ratio(name: str, layer_name: str, tokens: str, n: int, repeats: int, device: str) -> float:
    """Throughput of collection / throughput of a bare forward (best of ``repeats`` each)."""
    from clipaudit.hooks import resolve_layer, run_with_cache
    from clipaudit.probes.sae import rows_of

    model = _model(name, device)
    layer = resolve_layer(model, layer_name)
    pixels = _pixels(model, n).split(128)
    bare, hooked = [], []
    with torch.no_grad():
        for _ in range(repeats):
            t = clock()
            for p in pixels:
                model.encode_images(p)
            sync(device)
            bare.append(clock() - t)
            t = clock()
            for p in pixels:
                _, cache = run_with_cache(model, p, layer, stop_at=True)
                rows_of(cache[layer.path], layer, tokens).float()
            sync(device)
            hooked.append(clock() - t)
    return min(bare) / min(hooked)


_CHILD = """
import json, resource, sys, torch
from clipaudit.data import toy_source
from clipaudit.model import load_model
from clipaudit.probes.sae import activation_rows
m = load_model(sys.argv[1], device=sys.argv[4])
n = int(sys.argv[3]); rows = 0
for r, _ in activation_rows(m, toy_source(n, seed=5), sys.argv[2], "all", 64):
    rows += len(r)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]  # reset at exec, unlike ru_maxrss
rss = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": rows, "rss": rss}))
"""


def streaming_rss(name: str, layer: str, n: int, device: str) -> float:
    out = subprocess.run([sys.executable, "-c", _CHILD, name, layer, str(n), device], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["rss"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    steps = 5 if args.quick else 20
    rows: list[Row] = []
    for name, layer, tokens in (("toy-rn", "penultimate", "mean"), ("toy-rn", "penultimate", "all"),
                                ("toy-vit", "penultimate", "cls"), ("toy-vit", "block:-1", "all")):
        rate, peak = training_rate(name, layer, tokens, 4096, steps, device)
        rows.append(Row("sae", f"train {name} {layer} {tokens} 4096 lat rows/s", rate, None,
                        note=f"peak {peak:.0f} MiB ({device})"))
    for name, layer in (("toy-rn", "penultimate"), ("toy-vit", "penultimate")):
        ratio = collection_ratio(name, layer, "all", 256 if args.quick else 1024, 2 if args.quick else 3, device)
        rows.append(Row("sae", f"collect/bare throughput {name} {layer}", ratio, 0.9, lower=False))
    n = 200 if args.quick else 1000
    small, large = streaming_rss("toy-rn", "penultimate", n, device), streaming_rss("toy-rn", "penultimate", 4 * n, device)
    rows.append(Row("sae", f"peak RSS {4 * n} / {n} images (stream)", large / small, 1.1,
                    note=f"{small:.0f} -> {large:.0f} MiB"))
    print(table(rows))


if __name__ == "__main__":
    main()
