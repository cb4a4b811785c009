"""Issue 2 benchmark: the cost of a hooked activation scan over a bare image forward.

For random-init RN50 and ViT-B-32 (224 px, CPU, batch 16): time ``encode_images`` alone and
``encode_images`` inside ``hooks.capture`` at ``penultimate`` with every neuron reduced to
(B, N) by ``hooks.neurons``, on the same batches, alternating the two so machine load hits both
alike. Prints the median ratio hooked / bare (goal <= 1.05).

Issue 21 adds ``hf-ViT-B-32``: a random-init transformers ``CLIPModel`` whose vision tower has
ViT-B/32's shape (768 wide, 12 layers, patch 32, 224 px; the text tower is shrunk, it is not
timed), saved with a CLIP processor to a temporary folder and loaded through clipaudit's
transformers backend, so the hooks sit on transformers' own modules.

Run: python benchmarks/hooks_overhead.py [--quick] [--models RN50,ViT-B-32,hf-ViT-B-32]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from _timing import Row, clock, table


def measure(name: str, batch: int, repeats: int) -> tuple[float, float, float]:
    from clipaudit.hooks import capture, neurons, resolve_layer
    from clipaudit.model import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name.startswith("hf-"):
            with tempfile.TemporaryDirectory(prefix="clipaudit-hf-bench-") as folder:
                model = load_model(str(_hf_vit_b32(Path(folder))), device="cpu")
        else:
            model = load_model(name, pretrained="none", device="cpu")
    layer = resolve_layer(model, "penultimate")
    x = torch.rand(batch, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(0))
    bare, hooked = [], []
    with torch.no_grad():
        model.encode_images(x)  # warm-up
        for _ in range(repeats):
            t = clock()
            model.encode_images(x)
            bare.append(clock() - t)
            t = clock()
            with capture(model, layer) as acts:
                model.encode_images(x)
                neurons(acts[layer.path], layer.layout).sum().item()
            hooked.append(clock() - t)
    b, h = statistics.median(bare), statistics.median(hooked)
    return b, h, h / b


def _hf_vit_b32(folder: Path) -> Path:
    """A random-init transformers CLIPModel with ViT-B/32's vision tower, saved with its processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.fixtures.hf_models import clip_bpe_files

    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config={})).save_pretrained(folder)  # vision: ViT-B/32
    vocab, merges = clip_bpe_files(folder)
    tok = CLIPTokenizer(str(vocab), str(merges), pad_token="<|endoftext|>")
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tok).save_pretrained(folder)
    return folder


def run(quick: bool = False, device: str = "auto", models: str = "RN50,ViT-B-32,hf-ViT-B-32") -> list[Row]:
    """One row per model: hooked / bare time (CPU only: ``device`` is ignored)."""
    batch, repeats = (8, 3) if quick else (16, 5)
    rows = []
    for name in models.split(","):
        b, h, r = measure(name, batch, repeats)
        rows.append(Row("hooks_overhead", f"{name} hooked/bare penultimate (cpu)", r, 1.05,
                        note=f"batch {batch}, bare {b * 1000:.0f} ms, median of {repeats}"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="RN50,ViT-B-32,hf-ViT-B-32")
    ap.add_argument("--quick", action="store_true", help="batch 8, 3 repeats")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"hooked penultimate scan vs bare encode_images  (CPU, {args.threads} thread(s))")
    print(table(run(args.quick, "cpu", args.models)))


if __name__ == "__main__":
    main()
