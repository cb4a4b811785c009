"""``clipaudit typographic``: flags -> TypographicConfig -> audit -> run folder + a short report."""
from __future__ import annotations

import argparse

from clipaudit.errors import ClipauditError


def _open_images(spec: str, n: int, seed: int):
    """The toy default is clean object scenes (no written words), so the only text is ours."""
    from clipaudit.data import open_source

    return open_source(spec, n=n, seed=1234 + seed, kind="object", text=False)


def _fmt_ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def config_from_args(args: argparse.Namespace):
    """The config the flags describe; the model-free checks run here, before anything loads."""
    from clipaudit.attacks.typographic_audit import TypographicConfig, check_target

    check_target(args.target)
    if args.n < 1:
        raise ClipauditError(f"--n-images must be >= 1 toy images, got {args.n}")
    return TypographicConfig(target=args.target, word=args.word, classes=args.classes,
                            templates=args.templates, style=args.style, size=args.size, color=args.color,
                            opacity=args.opacity, position=args.position, repeat=args.repeat,
                            rotation=args.rotation, font=args.font, outline=not args.no_outline,
                            sweep=list(args.sweep or []), search_words=args.search_words,
                            search_n=args.search_n, search_max=args.search_max, batch_size=args.batch_size, examples=args.examples,
                            n_resamples=args.n_resamples, seed=args.seed)


def _cmd(args: argparse.Namespace) -> int:
    from clipaudit.attacks.typographic_audit import audit, prepare
    from clipaudit.cli import model_from_args, progress
    from clipaudit.distributed import init_distributed_from_env
    from clipaudit.runner import run_audit

    cfg = config_from_args(args)
    model = model_from_args(args)
    source = _open_images(args.images, args.n, cfg.seed)
    target, word, _, _, added, *_ = prepare(model, source, cfg)  # every bad input fails before any model work
    if init_distributed_from_env(model.device)[0] != 0:  # torchrun: this rank's shard; rank 0 writes
        audit(model, source, cfg)
        return 0
    if target != " ".join(args.target.split()):
        print(f"note: target {args.target!r} matched the class {target!r}")
    if added:
        print(f"note: target {target!r} was not in the class list; added it")
    res, run = run_audit("typographic", model, source, cfg, out=args.out, seed=cfg.seed, progress=progress,
                         inputs={"images": args.images, "n": args.n, "seed": 1234 + cfg.seed, "kind": "object",
                                 "text": False})
    s = res.summary
    if source.skipped:  # unreadable files: said out loud, as the other audits do
        print(f"note: {len(source.skipped)} image(s) could not be read and were left out: "
              f"{', '.join(i for i, _ in source.skipped[:5])}{' ...' if len(source.skipped) > 5 else ''}")
    print(f"typographic attack: {word!r} toward {target!r} ({cfg.style}, {s['final_text_size']} px, opacity {cfg.opacity}, "
          f"{s['text_area']:.1f}% of the image) on {model.name}")
    print(f"  attack success {s['attack_success_rate']:.3f} {_fmt_ci(s['attack_success_ci'])} over "
          f"{s['n_images']} images ({s['n_excluded']} excluded: true class {target})")
    print(f"  flip rate {s['flip_rate']:.3f} {_fmt_ci(s['flip_rate_ci'])}; clean accuracy "
          f"{s['clean_accuracy']:.3f} -> {s['attacked_accuracy']:.3f}; p(true) drop {s['true_prob_drop']:.3f}; "
          f"p(target) rise {s['target_prob_rise']:.3f}")
    if "typographic_dose" in res.tables:
        dose = res.tables["typographic_dose"]
        for key, d in dose.groupby("param", sort=False):
            pts = ", ".join(f"{v}:{r:.2f}" for v, r in zip(d["value"], d["attack_success_rate"]))
            rho = s.get("sweep_spearman", {}).get(key)
            print(f"  sweep {key}: {pts}" + (f" (Spearman {rho:.2f})" if rho is not None else ""))
    if "best_words" in s:
        print(f"  best words toward {target!r}: {', '.join(s['best_words'])}")
        if s.get("words_skipped"):
            print(f"  skipped words (cannot be drawn): {', '.join(s['words_skipped'][:10])}")
    if model.random_init:
        print("  (random-init weights: these numbers describe no trained CLIP)")
    print(f"written to {run.path}")
    return 0


def register(sub) -> None:
    from clipaudit.attacks.typographic import POSITIONS, STYLES, SWEEPABLE
    from clipaudit.cli import add_command, add_flag

    p = add_command(sub, "typographic",
                    "Write a word on images (typographic attack) and measure how often CLIP reads it "
                    "instead of what is pictured, with 95% CIs, sweeps and a word search.",
                    "clipaudit typographic --target pizza --sweep size=6,9,12,15,18 --search-words", _cmd)
    p.add_argument("--target", required=True, help="the word written on the images (and the target class)")
    p.add_argument("--word", default=None, help="text to write when it differs from the target (e.g. a control non-word)")
    p.add_argument("--images", default="toy", help="toy, toy:N, a folder of images (class folders = labels), or a CSV")
    add_flag(p, "--n-images", "--n", dest="n", type=int, default=200, help="toy scenes when --images is toy")
    p.add_argument("--classes", default=None, help="class-list file, one per line (default: toy classes / folders)")
    p.add_argument("--templates", default=None, help="prompt-template file with {} (default: 'a photo of a {}.')")
    p.add_argument("--style", default="note", choices=list(STYLES), help="sticky note or painted text")
    p.add_argument("--size", type=int, default=None,
                   help="font size in model pixels (default 12 at 64 px, scaled with the model's resolution)")
    p.add_argument("--color", default=None, help="ink colour: name or #rrggbb (default: black note / white paint)")
    p.add_argument("--opacity", type=float, default=1.0, help="text opacity 0..1")
    p.add_argument("--position", default="center", help=f"one of {', '.join(POSITIONS)}")
    p.add_argument("--repeat", type=int, default=1, help="copies of the word, tiled over the image")
    p.add_argument("--rotation", type=float, default=0.0, help="max random rotation in degrees")
    p.add_argument("--font", default=None, help="TTF/OTF font path (default: Pillow's bundled font)")
    p.add_argument("--no-outline", action="store_true", help="no contrasting outline around painted text")
    p.add_argument("--sweep", nargs="+", action="extend", metavar="KEY=V1,V2",
                   help=f"factorial grid over rendering parameters ({', '.join(SWEEPABLE)})")
    p.add_argument("--search-words", nargs="?", const="", default=None, metavar="FILE",
                   help="rank words by their push toward the target (default: class names + concept set)")
    p.add_argument("--search-n", type=int, default=64, help="images used by the word search")
    p.add_argument("--search-max", type=int, default=64,
                   help="most candidate words (class names + the concept words nearest the target; 0 = all)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--examples", type=int, default=4, help="images in the example figure")
    add_flag(p, "--bootstrap", "--n-resamples", dest="n_resamples", type=int, default=2000, help="bootstrap resamples per CI")
