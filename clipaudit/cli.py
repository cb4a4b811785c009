"""The ``clipaudit`` command: parse flags, call one audit function, save its result.

Every subcommand shares the model flags (``--model --pretrained --device --precision``), the
run flags (``--seed --out``) and ``--debug``; errors print as one line and exit 2; Ctrl-C
exits 130 and keeps every result already written to the run folder.

Feature folders add their subcommands through a ``register(subparsers)`` function in their
``cli`` module (``clipaudit.probes.cli`` ...), so this file stays a table of contents.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import warnings
from typing import Callable, Iterable, Sequence, TypeVar

from clipaudit.errors import ClipauditError

T = TypeVar("T")
CORE_CLIS = ("clipaudit.dashboard.cli", "clipaudit.audit_cli")  # audits add theirs through clipaudit.AUDITS


_LONE_PERCENT = re.compile(r"%(?![(%])")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Raw descriptions/epilogs; each flag's default shown once, and only when it tells something.

    A default is left out when it is None, False, empty or SUPPRESS, or when the help text already
    says what the default is. A lone ``%`` in a help string (``95% CIs``) is escaped, since
    argparse %-formats every help string.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = _LONE_PERCENT.sub("%%", action.help or "")
        default = action.default
        informative = not (default is None or default is False or default == argparse.SUPPRESS
                           or (isinstance(default, (str, list, tuple)) and len(default) == 0))
        if (informative and "default" not in text.lower() and action.option_strings
                and action.nargs != 0):
            text += " (default: %(default)s)"
        return text


def add_command(sub, name: str, help: str, example: str, func: Callable[[argparse.Namespace], int],
                model: bool = True, run: bool = True) -> argparse.ArgumentParser:
    """A subcommand with the shared flags and an example in its ``--help``."""
    p = sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}",
                       formatter_class=_Formatter)
    if model:
        add_model_args(p)
    if run:
        p.add_argument("--seed", type=int, default=0, help="seed for every random choice")
        p.add_argument("--out", default=None, help="run folder (default: runs/<command>-<timestamp>)")
        p.add_argument("--force", action="store_true", help="replace the run already in --out (its files are deleted)")
        p.add_argument("--resume", action="store_true", help="add this audit to the run in --out (same model and seed)")
        if model:
            p.add_argument("--ablate-heads", default=None, metavar="MASK",
                           help="audit the model with these attention heads ablated (a head-mask file from "
                                "`clipaudit heads --defend`, or 'layer.head' lines: zero-ablation)")
            p.add_argument("--sae-edit", default=None, metavar="RUN:latents=I,J[:scale=F|:clamp=V]",
                           help="audit the model with these latents of a `clipaudit sae` run suppressed "
                                "(scale=0, the default), scaled or clamped; the reconstruction error is kept")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=func)
    return p


class _Renamed(argparse.Action):
    """Stores like ``store``; when an old spelling of the flag was typed, says its new name once."""

    def __init__(self, option_strings, dest, canonical: str = "", **kwargs) -> None:
        self.canonical = canonical or option_strings[0]
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if option_string and option_string != self.canonical:
            print(f"note: {option_string} is now {self.canonical}; the old spelling works until the next release",
                  file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_flag(p: argparse.ArgumentParser, canonical: str, *old: str, **kwargs) -> argparse.Action:
    """A flag of the shared vocabulary (``--images``, ``--n-images``, ``--batch-size``,
    ``--bootstrap`` ...) with its former spellings kept as aliases for one release."""
    return p.add_argument(canonical, *old, action=_Renamed, canonical=canonical, **kwargs)


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="toy", help="toy (= toy-rn), toy-vit, toy-fare (adversarially fine-tuned toy-rn), toy-masked "
                   "(toy-rn with fake, gradient-masking robustness), an open_clip architecture, hf-hub:..., a checkpoint path, "
                   "or a transformers CLIP/SigLIP folder (or hub id in the local cache)")
    p.add_argument("--pretrained", default=None, help="weight tag (openai), checkpoint path, or 'none' for random init")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--pretrained-tag", default=None, metavar="TAG",
                   help="with --pretrained PATH: the open_clip tag the checkpoint came from (openai, meta, "
                        "...); its published mean/std, resize, interpolation and activation are used")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"], help="model precision")
    p.add_argument("--no-cache", action="store_true", help="encode every text prompt afresh; do not read or "
                   "write the text-embedding cache ($CLIPAUDIT_CACHE_DIR/text, default ~/.cache/clipaudit/text)")


def model_from_args(args: argparse.Namespace):
    """The model the flags name; ``clipaudit audit`` hands its already-loaded one down instead."""
    from clipaudit.model import load_model

    preloaded = getattr(args, "preloaded_model", None)
    if preloaded is not None:
        return preloaded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(args.model, args.pretrained, args.device, args.precision,
                           text_cache=not getattr(args, "no_cache", False),
                           pretrained_tag=getattr(args, "pretrained_tag", None))
    if model.preprocessing()["assumed"]:
        print(f"NOTE: {model.preprocessing()['source']}", file=sys.stderr)
    if model.random_init:
        print(f"WARNING: {model.name} has RANDOM-INIT weights; results describe no trained CLIP",
              file=sys.stderr)
    model.interventions = interventions_from_args(model, args)
    for edit in model.interventions:
        print(f"NOTE: edited model ({edit.kind}: {edit.spec}); results describe the edit, not the checkpoint",
              file=sys.stderr)
    return model


def interventions_from_args(model, args: argparse.Namespace) -> list:
    """The edits every audit of this command runs under (``--ablate-heads``, ``--sae-edit``), read
    and checked against ``model`` now, so a bad mask or spec fails before any audit starts.

    Returns:
        :class:`clipaudit.runner.Intervention` items; the runner enters each around the audit and
        records it in the manifest.
    """
    from clipaudit.runner import Intervention

    out = []
    if getattr(args, "ablate_heads", None):
        from clipaudit.probes.head_ablation import ablate_heads, read_mask

        mask = read_mask(args.ablate_heads, model)
        out.append(Intervention("ablate_heads", f"{args.ablate_heads} ({mask.mode}: {mask.label()})",
                                lambda: ablate_heads(model, mask)))
    if getattr(args, "sae_edit", None):
        from clipaudit.probes.sae_edit import prepare_sae_edit, sae_edit_from_spec

        prepared = prepare_sae_edit(model, args.sae_edit)  # loaded and checked before any run folder exists
        out.append(Intervention("sae_edit", prepared.describe(args.sae_edit),
                                lambda: sae_edit_from_spec(model, prepared)))
    return out


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "") -> Iterable[T]:
    """A progress bar on stderr (off when CLIPAUDIT_NO_PROGRESS is set)."""
    if os.environ.get("CLIPAUDIT_NO_PROGRESS"):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)


def parse_list(text: str | None, cast: Callable[[str], T] = str) -> list[T]:  # type: ignore[assignment]
    """'a,b, c' -> ['a', 'b', 'c'] (empty items dropped)."""
    if text is None:
        return []
    return [cast(t.strip()) for t in str(text).split(",") if t.strip()]


# ------------------------------------------------------------------------- core commands

def _cmd_layers(args: argparse.Namespace) -> int:
    from clipaudit.hooks import list_layers

    model = model_from_args(args)
    layers = list_layers(model)
    width = max(len(l.path) for l in layers)
    print(f"{model.name} ({model.arch}, {model.image_size}px, pretrained={model.pretrained})")
    print(f"{'layer'.ljust(width)}  layout  neurons  aliases")
    for l in layers:
        print(f"{l.path.ljust(width)}  {l.layout.ljust(6)}  {str(l.n_neurons).rjust(7)}  {', '.join(l.aliases)}")
    return 0


def _cmd_toy_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from clipaudit.toy.train import TrainConfig, train

    if args.fare:
        return _cmd_toy_fare(args)
    cfg = TrainConfig(arch=args.arch or "vit", seed=args.seed, steps=args.steps, batch_size=args.batch,
                      threads=args.threads)
    _ = cfg.model_name, cfg.n_steps  # validate before starting
    if cfg.batch < 2:
        raise ClipauditError(f"--batch must be >= 2 for a contrastive loss, got {args.batch}")
    out = Path(args.out or f"runs/toy-train-{cfg.model_name}")
    print(f"training {cfg.model_name}: {cfg.n_steps} steps x {cfg.batch} pairs, seed {cfg.seed} -> {out}")

    def report(row: dict) -> None:
        print(f"step {row['step']:>6d}/{cfg.n_steps}  loss {row['loss']:.4f}  lr {row['lr']:.2e}  "
              f"{row['pairs_per_s']:.0f} pairs/s  eta {row['eta_s'] / 60:.1f} min", flush=True)

    train(cfg, out, progress=report)
    print(f"weights: {out / (cfg.model_name + '.safetensors')}; load with "
          f"--model {cfg.model_name} --pretrained {out / (cfg.model_name + '.safetensors')}")
    return 0


def _cmd_toy_fare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from clipaudit.attacks.adversarial import parse_eps
    from clipaudit.toy.fare import FareConfig, fine_tune
    from clipaudit.toy.train import ARCH_TO_NAME

    base = ARCH_TO_NAME[args.arch or "rn"]
    defaults = FareConfig()
    cfg = FareConfig(base=base, eps=parse_eps(args.eps), pgd_steps=args.pgd_steps,
                     steps=args.steps if args.steps is not None else defaults.steps,
                     batch_size=args.batch if args.batch is not None else defaults.batch_size, seed=args.seed,
                     threads=args.threads)
    try:
        cfg.check()
    except ValueError as err:
        raise ClipauditError(str(err)) from None
    name = "toy-fare" if base == "toy-rn" else f"{base}-fare"
    out = Path(args.out or f"runs/toy-train-{name}")
    print(f"FARE fine-tune of {base}'s image tower: {cfg.steps} steps x {cfg.batch_size} images, inner PGD-"
          f"{cfg.pgd_steps} at linf {cfg.eps * 255:.3g}/255, seed {cfg.seed} -> {out}")

    def report(row: dict) -> None:
        print(f"step {row['step'] + 1:>6d}/{cfg.steps}  adversarial loss {row['loss']:.2f}  clean drift after it "
              f"{row['clean_loss']:.2f}  lr {row['lr']:.2e}  eta {row['eta_s'] / 60:.1f} min", flush=True)

    fine_tune(cfg, out, name=name, progress=report)
    print(f"weights: {out / (name + '.safetensors')}; load with --model {base} --pretrained "
          f"{out / (name + '.safetensors')}")
    return 0


def _cmd_toy_validate(args: argparse.Namespace) -> int:
    from clipaudit.runs import RunFolder
    from clipaudit.toy.validate import format_table, validate

    model = model_from_args(args)
    run = RunFolder.create("toy-validate", args.out, model=model, seed=args.seed, config={"n": args.n})
    with run:
        result = validate(model, n=args.n, seed=args.seed)
        result.save(run)
    print(format_table(result))
    print(f"written to {run.path}")
    return 0 if result.all_pass or not args.strict else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipaudit", formatter_class=_Formatter,
        description="Interpretability and safety audits for CLIP models: neurons, typographic and "
                    "adversarial attacks, demographic bias, and a dashboard beside the model card.",
        epilog="example:\n  clipaudit audit --quick\n  clipaudit neurons --layer penultimate --top 16")
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("clipaudit")
    except PackageNotFoundError:
        ver = "dev"
    parser.add_argument("--version", action="version", version=f"clipaudit {ver}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    add_command(sub, "layers", "List every hookable layer with its layout, neuron count and aliases.",
                "clipaudit layers --model toy-rn", _cmd_layers, run=False)

    toy = sub.add_parser("toy", help="The toy CLIP model organism: train or validate it.",
                         description="Train or validate the embedded toy CLIP.", formatter_class=_Formatter,
                         epilog="example:\n  clipaudit toy validate --model toy-rn")
    toy_sub = toy.add_subparsers(dest="toy_command", metavar="ACTION", required=True)
    p = add_command(toy_sub, "train", "Train a toy variant from scratch (deterministic by seed), or with --fare "
                    "adversarially fine-tune a shipped toy's image tower (FARE, Schlarmann et al. 2024).",
                    "clipaudit toy train --arch rn --seed 0 --out runs/toy-rn\n"
                    "  clipaudit toy train --fare --steps 2000 --out runs/toy-fare", _cmd_toy_train, model=False)
    p.add_argument("--arch", choices=["rn", "vit"], default=None, help="vision tower kind (default vit; rn with --fare)")
    p.add_argument("--fare", action="store_true",
                   help="FARE: fine-tune the shipped toy's image tower so its embeddings of perturbed images stay "
                        "those of the clean ones (unsupervised adversarial training; toy-fare)")
    p.add_argument("--eps", default="4/255", help="--fare: linf radius of the inner attack (default 4/255)")
    p.add_argument("--pgd-steps", type=int, default=10, help="--fare: inner PGD steps (default 10)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the shipped weights' count)")
    p.add_argument("--batch", type=int, default=None, help="pairs per step (default: the shipped weights' recipe)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p = add_command(toy_sub, "validate", "Check a toy model against the planted facts on held-out scenes "
                    "of its own training world (the hair control compares counterfactual twins).",
                    "clipaudit toy validate --model toy-vit --n 400", _cmd_toy_validate)
    p.add_argument("--n", type=int, default=400, help="held-out scenes per check (2n people, n twin pairs)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")

    from clipaudit.audits import AUDITS

    modules = [AUDITS.cli_module(name) for name in AUDITS] + list(CORE_CLIS)
    for module_name in dict.fromkeys(m for m in modules if m):
        importlib.import_module(module_name).register(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {' '.join(str(message).split())}\n"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # the command's warnings read as our errors do: one line
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        from clipaudit.runs import existing_run_policy, policy_from_flags

        with existing_run_policy(policy_from_flags(getattr(args, "force", False), getattr(args, "resume", False))):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted; results finished so far are kept in the run folder", file=sys.stderr)
        return 130
    except (ClipauditError, ValueError, FileNotFoundError) as err:
        if getattr(args, "debug", False):
            raise
        msg = " ".join(str(err).split()) or type(err).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
