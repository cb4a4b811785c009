"""``clipaudit heads``: flags -> HeadsConfig -> clipaudit.runner.run_audit -> a short report."""
from __future__ import annotations

import argparse

from clipaudit.errors import ClipauditError


def config_from_args(args: argparse.Namespace):
    """The config the flags describe (checked before any model is loaded)."""
    from clipaudit.probes.heads_audit import HeadsConfig
    from clipaudit.zeroshot import read_word_list

    if args.n < 1:
        raise ClipauditError(f"--n-images must be >= 1 toy images, got {args.n}")
    classes = tuple(read_word_list(args.classes)) if args.classes else ()
    concepts = tuple(read_word_list(args.concepts, "concept")) if args.concepts else ()
    return HeadsConfig(target=" ".join(str(args.target).split()), classes=classes, concepts=concepts,
                       position=args.position, size=args.size, style=args.style, mode=args.mode,
                       defend=args.defend, budget=float(args.budget), select_fraction=args.select_fraction,
                       random_sets=args.random_sets, textspan_texts=args.textspan_texts, maps=args.maps, sweep_layers=args.sweep_layers,
                       textspan_rank=args.textspan_rank, batch_size=args.batch_size, seed=args.seed).validate()


def _cmd(args: argparse.Namespace) -> int:
    from clipaudit.cli import model_from_args, progress
    from clipaudit.data import open_source
    from clipaudit.probes.decompose import n_heads
    from clipaudit.probes.heads_audit import check_sweep_layers
    from clipaudit.runner import run_audit

    cfg = config_from_args(args)
    model = model_from_args(args)
    n_heads(model)  # a tower without heads fails here, naming its layers
    check_sweep_layers(model, cfg.sweep_layers)
    source = open_source(args.images, n=args.n, seed=1234 + cfg.seed, kind="object", text=False)
    result, run = run_audit("heads", model, source, cfg, out=args.out, seed=cfg.seed, progress=progress)
    s = result.summary
    print(f"heads: {s['n_layers']} attention layer(s) x {s['n_heads']} heads of {model.name}; decomposition "
          f"max relative error {s['decomposition_max_rel_error']:.1e} over {s['n_images']} images")
    swept = f" over the {s['n_swept_heads']} heads swept (--sweep-layers {cfg.sweep_layers})" if cfg.sweep_layers else ""
    print(f"  reading heads (typographic score): {', '.join(s['top_reading_heads'])}; faithfulness Spearman "
          f"{s['faithfulness_spearman']:.2f}{swept}")
    print(f"  {cfg.target!r} written: success {s['attack_success_rate']:.3f}, clean accuracy {s['clean_accuracy']:.3f}, "
          f"attacked accuracy {s['attacked_accuracy']:.3f}")
    if cfg.defend:
        if s["heads_ablated"]:
            print(f"  defence ({cfg.mode}-ablate {', '.join(s['heads_ablated'])}) on {s['n_report']} held-out images: "
                  f"success {s['defended_attack_success_rate']:.3f}, clean accuracy {s['defended_clean_accuracy']:.3f}, "
                  f"attacked accuracy {s['defended_attacked_accuracy']:.3f}"
                  + (f"; random sets p = {s['random_sets_p']:.3f}" if "random_sets_p" in s else ""))
            print(f"  head mask: {run.path / s['mask_file']} (pass it to any audit with --ablate-heads)")
        else:
            print("  defence: no head lowered attack success within the budget; no mask written")
    if model.random_init:
        print("  (random-init weights: these numbers describe no trained CLIP)")
    print(f"written to {run.path}")
    return 0


def register(sub) -> None:
    from clipaudit.attacks.typographic import POSITIONS, STYLES
    from clipaudit.cli import add_command, add_flag

    p = add_command(sub, "heads",
                    "Decompose the image embedding into layers, heads and tokens; find the heads that read "
                    "written words; label heads with TextSpan; optionally select a head-ablation typographic defence.",
                    "clipaudit heads --model toy-vit --defend typographic --budget 0.01", _cmd)
    p.add_argument("--images", default="toy", help="toy, toy:N, a folder of images (class folders = labels), or a CSV")
    add_flag(p, "--n-images", "--n", dest="n", type=int, default=256, help="toy scenes when --images is toy")
    p.add_argument("--classes", default=None, help="class-list file, one per line (default: toy classes / folders)")
    p.add_argument("--concepts", default=None, help="TextSpan concept texts, one per line (default: a toy concept set)")
    p.add_argument("--target", default="pizza", help="the word written on the images (a class)")
    p.add_argument("--position", default="random", choices=list(POSITIONS), help="where the word is drawn")
    p.add_argument("--size", type=int, default=None, help="font size in model pixels (default 12 at 64 px, scaled)")
    p.add_argument("--style", default="note", choices=list(STYLES), help="sticky note or painted text")
    p.add_argument("--mode", default="mean", choices=["mean", "zero"], help="how heads are ablated")
    p.add_argument("--defend", default=None, choices=["typographic"], help="select heads to ablate against an attack")
    p.add_argument("--budget", type=float, default=0.01, help="largest clean-accuracy drop the defence may cost, 0..1")
    p.add_argument("--select-fraction", type=float, default=0.5, help="share of images the defence selects on")
    p.add_argument("--random-sets", type=int, default=30, help="random head sets in the permutation test")
    p.add_argument("--maps", type=int, default=4,
                   help="top reading heads whose spatial maps (token contributions to the reading effect) are saved")
    p.add_argument("--sweep-layers", type=int, default=0,
                   help="single-head ablation sweep over the last N attention layers only (0: all; one forward per head)")
    p.add_argument("--textspan-texts", type=int, default=5, help="TextSpan texts per head")
    p.add_argument("--textspan-rank", type=int, default=0, help="TextSpan principal rank (0: full)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
