"""The SAE goals on the shipped toys, measured in one script (GPU if present; CPU works, slowly).

Prints, for toy-rn's penultimate layer: FVU, L0, dead fraction, spliced vs clean accuracy, the
planted-factor recall of SAE latents vs neurons vs a linear probe (Wilson CIs), the permuted-
activation control, the causal edits (typographic success, crime-word ratio, hair control), and
then the "beat the neurons" sweep over layers, variants and sizes.

    python benchmarks/sae_sweep.py [--quick] [--skip-edits] [--skip-sweep] [--skip-base] [--only "toy-vit block"]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from clipaudit import load_model
from clipaudit.data import toy_source
from clipaudit.hooks import resolve_layer
from clipaudit.probes import planted
from clipaudit.probes.sae import SAEConfig, activation_rows, train_sae
from clipaudit.probes.sae_audit import factor_summary, factor_table
from clipaudit.probes.sae_edit import LatentEdit, edited
from clipaudit.probes.sae_metrics import measure
from clipaudit.toy.world import OBJECT_CLASSES


def collect(model, source, layer, tokens):
    return torch.cat([r for r, _ in activation_rows(model, source, layer, tokens, 256)])


def train_on(x, cfg, device, permute=False):
    if permute:  # each column shuffled independently across rows: marginals kept, structure gone
        g = torch.Generator().manual_seed(123)
        x = torch.stack([col[torch.randperm(len(col), generator=g)] for col in x.t().cpu()], 1)
    x = x.to(device)
    t = time.time()
    sae, log = train_sae(lambda: iter(x.split(4096)), x.shape[1], cfg, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    return sae, time.time() - t


def evaluate(model, source, layer, sae, tokens, classes=True):
    p = measure(model, source, layer, sae, tokens, classes=list(OBJECT_CLASSES) if classes else None)
    factors = planted.planted_factors(source.items, 20)
    table = factor_table(p, factors, sae.n_latents)
    return p, table, factor_summary(table, 0.9)


def fmt_recall(s, key):
    return f"{s[key]:.3f} [{s[key + '_ci'][0]:.2f}, {s[key + '_ci'][1]:.2f}]"


def top_latents(p, items, mask_fn, n):
    """Latents ranked by AUROC for a factor over all images in ``mask_fn``'s domain."""
    domain, pos = mask_fn(items)
    codes = p.codes.tocsc()[np.flatnonzero(domain)].toarray()
    auc = planted.auroc_columns(codes, pos[domain])
    order = np.argsort(-np.nan_to_num(auc, nan=0))
    return [int(i) for i in order[:n]], auc[order[:n]]


def edits(model, layer, sae, tokens, p, items, quick):
    from clipaudit.attacks.typographic_audit import TypographicConfig, audit as typo_audit
    from clipaudit.bias.audit import BiasConfig, audit as bias_audit
    from clipaudit.bias.datasets import open_dataset
    from clipaudit.data import open_source

    obj = (items["kind"] == "object").to_numpy()
    word = lambda it: (obj, (it["word"] != "").to_numpy())
    people = (items["kind"] == "person").to_numpy()
    tone = lambda it: (people, (it["skin"] == "tone1").to_numpy())
    hair = lambda it: (people, (it["hair"] == "long").to_numpy())
    typo_src = open_source("toy", n=100 if quick else 400, seed=1234, kind="object", text=False)
    bias_src = open_dataset("toy", "auto", (), n=300 if quick else 1200, seed=1234)
    head = model.classifier(list(OBJECT_CLASSES))

    def clean_acc():
        correct = []
        for b in typo_src.batches(model, 128):
            with torch.no_grad():
                pred = head(b.pixels).argmax(-1).cpu().tolist()
            correct += [OBJECT_CLASSES[i] == t for i, t in zip(pred, b.meta["label"])]
        return float(np.mean(correct))

    def typo():
        r = typo_audit(model, typo_src, TypographicConfig(target="pizza", n_resamples=200))
        return r.summary["attack_success_rate"], r.summary["attack_success_ci"]

    def ratios():
        r = bias_audit(model, bias_src, BiasConfig(probe=("denigration",), bootstrap=200, permutations=200))
        d = r.tables["bias_denigration"]
        out = {}
        for attr, grp in (("skin", "tone1"), ("hair", "long")):
            row = d[(d["attribute"] == attr) & (d["group"].astype(str) == grp)]
            if len(row):
                row = row.iloc[0]
                out[f"{attr}={grp}"] = (float(row["rate_ratio"]), float(row["ratio_ci_low"]), float(row["ratio_ci_high"]))
        return out

    base = {"clean_acc": clean_acc(), "typo": typo(), "ratios": ratios()}
    print(f"  no edit: clean acc {base['clean_acc']:.3f}, typographic success {base['typo'][0]:.3f} "
          f"{np.round(base['typo'][1], 3)}, ratios {base['ratios']}")
    for name, fn, ns in (("written-word", word, (4, 16, 64)), ("tone1", tone, (1, 4, 16)), ("hair", hair, (1, 4, 16))):
        for n in ns:
            lat, auc = top_latents(p, items, fn, n)
            with edited(model, layer, sae, tokens, LatentEdit(tuple(lat), scale=0.0)):
                acc, (ts, tci), rat = clean_acc(), typo(), ratios()
            print(f"  suppress {n:3d} {name} latents (AUROC {auc.min():.2f}-{auc.max():.2f}): clean acc {acc:.3f}, "
                  f"typographic success {ts:.3f} {np.round(tci, 3)}, ratios "
                  + ", ".join(f"{k} {v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]" for k, v in rat.items()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-edits", action="store_true")
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--n-train", type=int, default=20000)
    ap.add_argument("--n-eval", type=int, default=8000)
    ap.add_argument("--only", default="", help="sweep only the grid rows whose 'model layer tokens' contains this")
    ap.add_argument("--skip-base", action="store_true", help="skip the toy-rn base report (start at the sweep)")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n_train, n_eval = (2000, 1500) if args.quick else (args.n_train, args.n_eval)
    steps = 30 if args.quick else args.steps
    train_src, eval_src = toy_source(n_train, seed=777), toy_source(n_eval, seed=99)
    rn = load_model("toy-rn", device=device)
    layer = resolve_layer(rn, "penultimate")
    if not args.skip_base:
        base_report(args, rn, layer, train_src, eval_src, steps, device)
    if not args.skip_sweep:
        sweep(args, rn, train_src, eval_src, steps, device)


def base_report(args, rn, layer, train_src, eval_src, steps, device) -> None:
    t = time.time()
    x = collect(rn, train_src, layer, "mean")
    print(f"device {device}; collected {tuple(x.shape)} toy-rn penultimate rows in {time.time() - t:.1f}s")

    base = SAEConfig(latents=4096, k=32, steps=steps, batch_size=1024, dead_after=50_000)
    sae, secs = train_on(x, base, device)
    p, table, s = evaluate(rn, eval_src, layer, sae, "mean")
    print(f"toy-rn penultimate topk 4096 k32: train {secs:.1f}s ({steps * 1024 / secs:.0f} rows/s); FVU {p.fvu:.4f}, "
          f"L0 {p.l0:.1f}, dead {p.dead_fraction:.3f}; accuracy spliced {p.spliced_correct.mean():.4f} vs clean "
          f"{p.clean_correct.mean():.4f} (n={len(p.clean_correct)})")
    print(f"  recall of {s['n_factors']} factors: SAE {fmt_recall(s, 'planted_factor_recall')}, neurons "
          f"{fmt_recall(s, 'neuron_factor_recall')}, linear probe {fmt_recall(s, 'linear_probe_factor_recall')}")
    with pd.option_context("display.width", 250, "display.max_rows", 200):
        print(table[["factor", "n_pos", "latent", "latent_auroc", "latent_ci_low", "latent_ci_high", "neuron_auroc",
                     "neuron_ci_low", "neuron_ci_high", "probe_auroc", "probe_ci_low", "probe_ci_high"]].round(3)
              .to_string())
    ctrl, _ = train_on(x, base, device, permute=True)
    _, _, cs = evaluate(rn, eval_src, layer, ctrl, "mean", classes=False)
    print(f"control (columns permuted across images): SAE recall {fmt_recall(cs, 'planted_factor_recall')}")
    if not args.skip_edits:
        edits(rn, layer, sae, "mean", p, eval_src.items, args.quick)


def sweep(args, rn, train_src, eval_src, steps, device) -> None:
    vit = load_model("toy-vit", device=device)
    rows = []
    grid = [(rn, "toy-rn", "penultimate", "mean"), (rn, "toy-rn", "penultimate", "all"), (rn, "toy-rn", "block:2", "mean"),
            (vit, "toy-vit", "penultimate", "cls"), (vit, "toy-vit", "penultimate", "mean"),
            (vit, "toy-vit", "block:-1", "cls"), (vit, "toy-vit", "block:-1", "all")]
    variants = [("topk", 4096, 32), ("topk", 4096, 16), ("topk", 1024, 32), ("batchtopk", 4096, 32),
                ("matryoshka", 4096, 32)]
    for model, mname, lname, tokens in grid:
        if args.only and args.only not in f"{mname} {lname} {tokens}":
            continue
        lay = resolve_layer(model, lname)
        xs = collect(model, train_src, lay, tokens)
        for i, (variant, m, k) in enumerate(variants):
            if (mname, lname, tokens) != ("toy-rn", "penultimate", "mean") and i not in (0, 4):
                continue
            cfg = SAEConfig(latents=m, k=k, variant=variant, tokens=tokens, steps=steps, batch_size=1024,
                            dead_after=50_000)
            sae_i, secs = train_on(xs, cfg, device)
            p_i, _, s_i = evaluate(model, eval_src, lay, sae_i, tokens, classes=False)
            rows.append({"model": mname, "layer": lay.path, "tokens": tokens, "variant": variant, "latents": m, "k": k,
                         "fvu": round(p_i.fvu, 4), "l0": round(p_i.l0, 1), "dead": round(p_i.dead_fraction, 3),
                         "sae_recall": fmt_recall(s_i, "planted_factor_recall"),
                         "neuron_recall": fmt_recall(s_i, "neuron_factor_recall"),
                         "probe_recall": fmt_recall(s_i, "linear_probe_factor_recall"), "train_s": round(secs, 1)})
            print(rows[-1], flush=True)
    with pd.option_context("display.width", 250):
        print(pd.DataFrame(rows).to_string())


if __name__ == "__main__":
    main()
