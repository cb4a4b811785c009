"""``clipaudit limitations``: flags -> :class:`LimitationsConfig` + one tagged image source ->
:func:`clipaudit.runner.run_audit` -> run folder."""
from __future__ import annotations

import argparse

from clipaudit.errors import ClipauditError

EXAMPLE = ("clipaudit limitations --model toy --quick   |   clipaudit limitations --model ViT-B-32 "
           "--pretrained openai --images imagenet-val:/data/imagenet/val --shift-images imagenet-r:/data/imagenet-r")

# (base, per shift style, control, counting, digits) scene counts
SIZES = {"quick": (640, 160, 160, 160, 400), "full": (1600, 480, 480, 800, 1797)}


def register(sub) -> None:
    from clipaudit.cli import add_command, add_flag

    p = add_command(sub, "limitations", "Measure the model card's limitations: distribution shift, linear probes, "
                    "prompts, counting, handwritten digits, fine-grained classes.", EXAMPLE, _cmd)
    p.add_argument("--images", default="toy",
                   help="base (in-distribution) images: toy, a class-folder tree, a CSV, or LAYOUT:DIR for a "
                        "real dataset layout (see --list-layouts)")
    p.add_argument("--shift-images", nargs="+", default=None, metavar="SPEC",
                   help="shifted sets, each a class-folder tree or LAYOUT:DIR; NAME=SPEC names the domain "
                        "(default on the toy: its planted styles)")
    p.add_argument("--list-layouts", action="store_true", help="print the dataset layouts LAYOUT:DIR accepts and exit")
    p.add_argument("--quick", action="store_true", help="small sizes (about 30 s on the toy on 2 cores)")
    add_flag(p, "--n-images", "--n", dest="n", type=int, default=None, help="toy base scenes (default 640 quick / 1600)")
    p.add_argument("--n-shift", type=int, default=None, help="toy scenes per shifted style and for the control")
    p.add_argument("--n-count", type=int, default=None, help="counting scenes (0 = skip counting)")
    p.add_argument("--n-digits", type=int, default=None, help="handwritten digits (0 = skip digits)")
    p.add_argument("--mnist", default=None, help="folder with MNIST idx files: digits from its test split instead "
                                                 "of scikit-learn's bundled digits")
    p.add_argument("--shots", default="1,2,4,8,16", help="k values of the k-shot probe curve")
    p.add_argument("--repeats", type=int, default=None, help="k-shot draws per k (default 2 quick / 5)")
    p.add_argument("--templates", default=None, help="file of zero-shot templates, one per line with {}")
    p.add_argument("--classes", default=None, help="file of class names (default: the base set's labels)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")


def config_from_args(args: argparse.Namespace, toy: bool | None = None):
    """The config the flags describe (bad values refused before any model loads)."""
    if toy is None:
        toy = str(args.images) == "toy"
    from clipaudit.cli import parse_list
    from clipaudit.probes.limitations_audit import LimitationsConfig
    from clipaudit.zeroshot import read_templates, read_word_list

    try:
        shots = tuple(parse_list(args.shots, int))
    except ValueError:
        raise ClipauditError(f"--shots must be comma-separated whole numbers, got {args.shots!r}") from None
    if not shots or min(shots) < 1:
        raise ClipauditError(f"--shots needs k values >= 1, got {args.shots!r}")
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    if repeats < 1:
        raise ClipauditError(f"--repeats must be >= 1, got {repeats}")
    if args.batch_size < 1:
        raise ClipauditError(f"--batch-size must be >= 1, got {args.batch_size}")
    templates = tuple(read_templates(args.templates)) if args.templates else ("a photo of a {}.",)
    classes = tuple(read_word_list(args.classes)) if args.classes else ()
    return LimitationsConfig(base_domain="clean" if toy else "base", control_domains=("control",) if toy else (),
                             classes=classes, templates=templates, shots=shots, repeats=repeats,
                             batch_size=args.batch_size, seed=args.seed)


def _sizes(args: argparse.Namespace) -> tuple[int, int, int, int, int]:
    base, shift, control, count, digits = SIZES["quick" if args.quick else "full"]
    base = args.n if args.n is not None else base
    shift = args.n_shift if args.n_shift is not None else shift
    control = args.n_shift if args.n_shift is not None else control
    count = args.n_count if args.n_count is not None else count
    digits = args.n_digits if args.n_digits is not None else digits
    for flag, v, low in (("--n", base, 2), ("--n-shift", shift, 1), ("--n-count", count, 0), ("--n-digits", digits, 0)):
        if v < low:
            raise ClipauditError(f"{flag} must be >= {low}, got {v}")
    return base, shift, control, count, digits


def build_source(args: argparse.Namespace, model_size: int = 64):
    """The tagged source: base + shifts (toy styles or the user's folders), counting, digits."""
    from clipaudit.probes.datasets import open_spec
    from clipaudit.probes.digits import digits_source, read_mnist, sklearn_digits
    from clipaudit.probes.limitation_sources import (combine_sources, tag_source, toy_count_source,
                                                     toy_shift_source)

    base_n, shift_n, control_n, count_n, digits_n = _sizes(args)
    toy = str(args.images) == "toy"
    parts = []
    if toy:
        parts.append(toy_shift_source(base_n, shift_n, n_control=control_n))
    else:
        parts.append(tag_source(open_spec(args.images), "base"))
    for spec in args.shift_images or ():
        name, _, rest = spec.partition("=") if "=" in spec and ":" not in spec.split("=", 1)[0] else ("", "", spec)
        src = open_spec(rest)
        parts.append(tag_source(src, name or _domain_name(rest)))
    if count_n:
        parts.append(toy_count_source(count_n))
    if digits_n:
        images, labels = (read_mnist(args.mnist, "test", size=model_size, limit=digits_n) if args.mnist
                          else sklearn_digits(size=model_size, limit=digits_n))
        parts.append(digits_source(images, labels, "mnist" if args.mnist else "digits"))
    return combine_sources(parts)


def _domain_name(spec: str) -> str:
    from pathlib import Path

    layout, sep, path = spec.partition(":")
    return layout if sep and not Path(spec).exists() else Path(spec).name or spec


def _cmd(args: argparse.Namespace) -> int:
    from clipaudit.cli import model_from_args, progress
    from clipaudit.probes.datasets import LAYOUTS
    from clipaudit.runner import run_audit

    if args.list_layouts:
        for name, layout in LAYOUTS.items():
            print(f"{name:14s} {layout.doc}")
        return 0
    toy = str(args.images) == "toy"
    config = config_from_args(args, toy)
    _sizes(args)
    model = model_from_args(args)
    source = build_source(args, model.image_size)
    result, run = run_audit("limitations", model, source, config, out=args.out, seed=args.seed, progress=progress)
    _print_summary(result.summary)
    if source.skipped:
        print(f"note: {len(source.skipped)} image(s) could not be loaded; listed in {run.path / 'skipped.csv'}")
    print(f"written to {run.path}")
    return 0


def _print_summary(s: dict) -> None:
    def f(key: str, ci: str | None = None) -> str:
        v = s.get(key)
        if v is None:
            return "n/a"
        text = f"{v:.3f}"
        if ci and s.get(ci):
            lo, hi = s[ci]
            text += f" [{lo:.3f}, {hi:.3f}]"
        return text

    print(f"zero-shot on {s.get('base_domain')}: {f('base_accuracy', 'base_accuracy_ci')}")
    if s.get("worst_shift"):
        print(f"worst shift {s['worst_shift']}: accuracy {f('worst_shift_accuracy')}, drop "
              f"{f('worst_shift_drop', 'worst_shift_drop_ci')}; flagged: {', '.join(s.get('shifts_flagged') or []) or 'none'}"
              f"; controls flagged: {', '.join(s.get('controls_flagged') or []) or 'none'}")
        print(f"effective robustness (zero-shot, mean over shifts): {f('mean_effective_robustness')}; "
              f"linear probe: {f('probe_mean_effective_robustness')}")
    print(f"linear probe {f('probe_accuracy', 'probe_ci')} vs zero-shot {f('zero_shot_test_accuracy', 'zero_shot_test_ci')}"
          f" on the base test split; " + (f"zero-shot is worth {f('zero_shot_worth_shots')} shots per class "
                                          if s.get("zero_shot_worth_shots") is not None else "zero-shot is worth ")
          + f"({s.get('zero_shot_worth_note', '')})")
    if "prompt_gain_photo" in s:
        print(f"prompt gains over the bare name: photo {f('prompt_gain_photo', 'prompt_gain_photo_ci')}, "
              f"ensemble {f('prompt_gain_ensemble', 'prompt_gain_ensemble_ci')}")
    if "count_zero_shot_accuracy" in s:
        print(f"counting: zero-shot {f('count_zero_shot_accuracy', 'count_zero_shot_ci')} (chance "
              f"{f('count_chance')}), probe {f('count_probe_accuracy', 'count_probe_ci')}")
    if "digits_zero_shot_accuracy" in s:
        print(f"digits: zero-shot {f('digits_zero_shot_accuracy', 'digits_zero_shot_ci')} (chance "
              f"{f('digits_chance')}), probe {f('digits_probe_accuracy', 'digits_probe_ci')}")
    if "fine_grained_accuracy" in s:
        print(f"fine-grained (colour, class): {f('fine_grained_accuracy', 'fine_grained_ci')} (chance "
              f"{f('fine_grained_chance')}); coarse {f('coarse_accuracy')}; colour given class "
              f"{f('within_class_accuracy')}")


__all__ = ["build_source", "config_from_args", "register"]
