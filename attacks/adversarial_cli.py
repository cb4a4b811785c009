"""``clipaudit adversarial``: flags -> :class:`AdversarialConfig` -> :func:`audit` -> run folder."""
from __future__ import annotations

import argparse
import sys

from clipaudit.errors import ClipauditError

EXAMPLE = ("clipaudit adversarial --model toy --attack pgd --eps 8/255 --steps 10 --target pizza "
           "--eps-sweep 0,1/255,2/255,4/255,8/255\n"
           "  clipaudit adversarial --model toy-fare --protocol robust-clip --n-images 200 --steps 20 --n-targets 5 "
           "--queries 1000")


def _eps_list(text: str | None) -> tuple[float, ...]:
    from clipaudit.attacks.adversarial import parse_eps
    from clipaudit.cli import parse_list

    return tuple(parse_eps(t, "--eps-sweep value") for t in parse_list(text))


def config_from_args(args: argparse.Namespace):
    """Build (and validate the model-free parts of) the config from parsed flags.

    ``--protocol`` fixes the attacks (refusing ``--attack``, ``--restarts``, ``--step-size``,
    ``--no-random-start``, ``--target``) and, for ``robust-clip``, the budgets and templates
    (refusing ``--eps``, ``--eps-sweep``, ``--norm l2``, ``--templates``): a flag that would be
    overridden is an error, never silently dropped.
    """
    from clipaudit.attacks.adversarial import parse_eps
    from clipaudit.attacks.adversarial_audit import AdversarialConfig
    from clipaudit.attacks.ensemble import ENSEMBLE
    from clipaudit.cli import parse_list
    from clipaudit.attacks.protocol import ROBUST_CLIP_EPS, ROBUST_CLIP_N, check_protocol_name

    protocol = getattr(args, "protocol", None)
    if protocol is not None:
        check_protocol_name(protocol)  # before the flag clashes, which depend on it
        clash = [flag for flag, given in (("--attack", args.attack is not None), ("--restarts", args.restarts is not None),
                                          ("--step-size", args.step_size is not None),
                                          ("--no-random-start", args.no_random_start),
                                          ("--transfer-to", bool(args.transfer_to))) if given]
        if protocol == "robust-clip":
            clash += [flag for flag, given in (("--eps", args.eps is not None), ("--eps-sweep", args.eps_sweep is not None),
                                               ("--norm", args.norm is not None), ("--templates", args.templates is not None))
                      if given]
        if clash:
            fixed = ("its attacks, eps 2/255 and 4/255, linf and the template 'a photo of a {}.'"
                     if protocol == "robust-clip" else "its attacks (APGD-CE, APGD-T, Square)")
            raise ClipauditError(f"--protocol {protocol} fixes {fixed}; drop {', '.join(clash)}"
                                 + (" (or use --protocol autoattack --eps X)" if "--eps" in clash else ""))
        if protocol == "robust-clip":
            args.eps = str(ROBUST_CLIP_EPS[-1])
            args.eps_sweep = ",".join(str(e) for e in ROBUST_CLIP_EPS[:-1])
            if args.n is None:
                args.n = ROBUST_CLIP_N
    step = None if args.step_size is None else parse_eps(args.step_size, "--step-size")
    if args.n is None:
        args.n = 64
    queries = getattr(args, "queries", None)
    n_targets = getattr(args, "n_targets", None)
    if protocol is None:
        given = [f for f, v in (("--ensemble", getattr(args, "ensemble", None)), ("--n-targets", n_targets),
                                ("--queries", queries), ("--individual", getattr(args, "individual", False))) if v]
        if given:
            raise ClipauditError(f"{', '.join(given)} set(s) the attacks of a --protocol run; add --protocol autoattack")
    cfg = AdversarialConfig(target=args.target, attack="ensemble" if protocol else (args.attack or "pgd"), eps=parse_eps(args.eps or "4/255"),
                            norm=args.norm or "linf", steps=args.steps, restarts=args.restarts if args.restarts is not None else 1, step_size=step,
                            random_start=not args.no_random_start, mode=args.mode,
                            eps_sweep=_eps_list(args.eps_sweep), classes=args.classes, templates=args.templates,
                            batch_size=args.batch_size, early_stop=not args.no_early_stop, sanity_n=args.sanity_n,
                            examples=args.examples, seed=args.seed, protocol=protocol,
                            ensemble=tuple(parse_list(args.ensemble) if getattr(args, "ensemble", None) else ENSEMBLE),
                            n_targets=n_targets if n_targets is not None else 9,
                            queries=queries if queries is not None else 5000,
                            individual=bool(getattr(args, "individual", False)), bpda=bool(getattr(args, "bpda", False)),
                            eot=getattr(args, "eot", 1))
    if args.n < 1:
        raise ClipauditError(f"--n-images must be >= 1, got {args.n}")
    return cfg.validate()


def _fmt_eps(eps: float) -> str:
    k = eps * 255
    return f"{eps:.4g} (= {k:.3g}/255)" if abs(k - round(k)) < 1e-6 and eps > 0 else f"{eps:.4g}"


def _cmd(args: argparse.Namespace) -> int:
    from clipaudit.attacks.adversarial_audit import SECTION
    from clipaudit.cli import model_from_args, progress
    from clipaudit.data import open_source
    from clipaudit.runner import run_audit

    from clipaudit.distributed import init_distributed_from_env

    cfg = config_from_args(args)  # bad flags fail before the model loads
    model = model_from_args(args)
    cfg.validate(model.image_size)
    if cfg.bpda:
        with model.bpda():  # refuses a model without an input stage before any run folder exists
            pass
    rank, world = init_distributed_from_env(model.device)
    if rank != 0:  # torchrun: the attack is not sharded; rank 0 runs it alone and writes the folder
        print(f"rank {rank}/{world}: the adversarial audit runs on rank 0 only; nothing to do here", file=sys.stderr)
        return 0
    # on the toy: clean object scenes, so the true class is the label
    source = open_source(args.images, n=args.n, seed=1234 + cfg.seed, kind="object", text=False)
    transfer = None
    if args.transfer_to:
        import warnings

        from clipaudit.model import load_model

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            transfer = load_model(args.transfer_to, args.transfer_pretrained, args.device, "fp32")
    result, run = run_audit("adversarial", model, source, cfg, out=args.out, seed=cfg.seed, progress=progress,
                            inputs={"images": args.images, "n": args.n, "seed": 1234 + cfg.seed, "kind": "object",
                                    "text": False},
                            options={"transfer_model": transfer} if transfer is not None else None)
    s = result.summary
    if cfg.protocol is not None:
        _print_protocol(cfg, result, model.name)
        print(f"written to {run.path} (summary section '{SECTION}')")
        return 0
    if s.get("target_added"):
        print(f"note: target {s['target']!r} was not in the class list; it was added ({s['n_classes']} classes)")
    if source.skipped:
        print(f"note: {len(source.skipped)} image(s) could not be loaded; listed in {run.path / 'skipped.csv'}")
    steps = "1 step" if cfg.attack == "fgsm" else f"{cfg.steps} steps x {cfg.restarts} restart(s)" + (
        "" if cfg.random_start else ", no random start")
    print(f"{cfg.attack.upper()} {cfg.norm} eps {_fmt_eps(cfg.eps)}, {steps}, mode {cfg.mode}, "
          f"target {s['target'] or '(untargeted)'}, {s['n_images']} images, {s['n_classes']} classes")

    def pct(v):
        return "n/a" if v is None else f"{v:.3f}"

    def ci(v):
        return "" if not v or v[0] is None else f" [{v[0]:.3f}, {v[1]:.3f}]"

    print(f"clean accuracy {pct(s['clean_accuracy'])}   robust accuracy {pct(s['robust_accuracy'])}"
          f"{ci(s['robust_accuracy_ci'])}   attack success {pct(s['attack_success_rate'])}"
          f"{ci(s['attack_success_ci'])}")
    print(f"perturbation {cfg.norm} norm: mean {s['mean_norm']:.4g}, max {s['max_norm']:.4g}")
    if "transfer_robust_accuracy" in s:
        print(f"transfer to {s['transfer_model']}: clean accuracy {pct(s['transfer_clean_accuracy'])}, "
              f"on these adversarial images {pct(s['transfer_robust_accuracy'])}")
    curve = result.tables["adversarial_curve"]
    if len(curve) > 1:
        print("robust accuracy vs eps: " + ", ".join(f"{e * 255:.3g}/255: {pct(r)}" for e, r in
                                                    zip(curve["eps"], curve["robust_accuracy"])))
    sanity = result.tables["adversarial_sanity"]
    print("sanity: " + "; ".join(f"{r.check} {'ok' if r.passed else 'FAILED'}" for r in sanity.itertuples()))
    for r in sanity.itertuples():
        if not r.passed:
            print(f"  FAILED {r.check}: {r.detail}")
    print(f"written to {run.path} (summary section '{SECTION}')")
    return 0


def _print_protocol(cfg, result, model_name: str) -> None:
    from clipaudit.attacks.protocol import eps_name

    s = result.summary
    eot = f", EOT {s['eot']}" if s["eot"] > 1 else ""
    print(f"protocol {cfg.protocol}: {' -> '.join(s['ensemble'])} ({s['steps']} APGD steps, {s['n_targets']} "
          f"targets, {s['queries']} Square queries{', BPDA' if s['bpda'] else ''}"
          f"{eot}), {s['n_images']} images, "
          f"{s['n_classes']} classes")
    for why in s.get("skipped_attacks", {}).values():
        print(f"note: skipped: {why}")
    ens = result.tables["adversarial_ensemble"]
    for eps, g in ens.groupby("eps", sort=True):
        steps = ", ".join(f"{r.attack} {r.robust_accuracy:.3f}" for r in g.itertuples())
        print(f"  eps {eps_name(float(eps))}: robust accuracy after {steps}")
    if cfg.protocol == "robust-clip":
        t = result.tables["adversarial_robust_clip"]
        cols = [c for c in t.columns if c != "model" and not c.endswith(" ci")]
        print("zero-shot accuracy (%), as in the TeCoA/FARE tables (95% Wilson intervals):")
        print("  " + " | ".join(["model".ljust(12)] + [c.rjust(22) for c in cols]))
        for r in t.to_dict("records"):
            cells = [f"{r[c]:.1f} {r.get(c + ' ci', '')}".strip().rjust(22) for c in cols]
            print("  " + " | ".join([str(r["model"]).ljust(12)] + cells))
    print(f"clean accuracy {s['clean_accuracy']:.3f}   worst-case robust accuracy at {eps_name(s['eps'])} "
          f"{s['robust_accuracy']:.3f} [{s['robust_accuracy_ci'][0]:.3f}, {s['robust_accuracy_ci'][1]:.3f}]")
    for r in result.tables["adversarial_sanity"].itertuples():
        if not r.passed:
            print(f"  sanity check FAILED {r.check}: {r.detail}")
    mask = result.tables["adversarial_masking"]
    if s["masking_suspected"]:
        print("GRADIENT MASKING SUSPECTED: the robust accuracy above is not trustworthy")
        for r in mask.itertuples():
            if r.flagged:
                print(f"  flagged {r.check}: {r.detail}")
    else:
        print("masking checks: " + "; ".join(f"{r.check} ok" for r in mask.itertuples()))


def register(sub) -> None:
    from clipaudit.cli import add_command, add_flag

    p = add_command(sub, "adversarial",
                    "Gradient attacks (FGSM, PGD, APGD; Linf or L2) on zero-shot CLIP or on image-text "
                    "similarity: clean vs robust accuracy, success rates, eps curve and sanity checks.",
                    EXAMPLE, _cmd)
    p.add_argument("--target", default=None, help="class to push images toward (added when missing); "
                                                  "omit for an untargeted attack")
    p.add_argument("--attack", default=None, choices=["fgsm", "pgd", "apgd"], help="attack (default pgd)")
    p.add_argument("--eps", default=None, help="budget in pixel units: 4/255 (the default) or 0.0157")
    p.add_argument("--norm", default=None, choices=["linf", "l2"], help="perturbation norm (default linf)")
    p.add_argument("--steps", type=int, default=None,
                   help="gradient steps per restart (default 10; FGSM takes exactly 1; 100 per APGD run with "
                        "--protocol)")
    p.add_argument("--restarts", type=int, default=None, help="random restarts (PGD, APGD; default 1)")
    p.add_argument("--step-size", default=None,
                   help="PGD step (default 2.5*eps/steps; at most eps) or APGD first step (default 2*eps; "
                        "at most 2*eps); 1/255 or 0.004")
    p.add_argument("--no-random-start", action="store_true",
                   help="PGD/APGD start from the clean image instead of a random point of the ball "
                        "(deterministic; one restart)")
    p.add_argument("--mode", default="classifier", choices=["classifier", "embedding"],
                   help="classifier: cross-entropy on the zero-shot head; embedding: cosine to the target "
                        "text (or away from the clean image)")
    p.add_argument("--eps-sweep", default=None, help="budgets for the robust-accuracy curve, e.g. "
                                                     "0,1/255,2/255,4/255,8/255")
    p.add_argument("--images", default="toy", help="toy, toy:N, a folder of images, or a CSV")
    add_flag(p, "--n-images", "--n", dest="n", type=int, default=None,
             help="toy-world images when --images toy (default 64; 500 with --protocol robust-clip)")
    p.add_argument("--classes", default=None, help="class list file, one per line (default: toy classes / "
                                                   "class folders)")
    p.add_argument("--templates", default=None, help="prompt templates file with {} (default: 'a photo of a {}.')")
    p.add_argument("--batch-size", type=int, default=32, help="images attacked together")
    p.add_argument("--no-early-stop", action="store_true",
                   help="keep attacking images already fooled (same results, more compute)")
    p.add_argument("--sanity-n", type=int, default=32, help="images used by the sanity checks")
    p.add_argument("--examples", type=int, default=4, help="triplets drawn in adversarial_examples.png")
    p.add_argument("--transfer-to", default=None, help="a second model that also classifies the adversarial "
                                                       "images (transfer), e.g. toy-rn")
    p.add_argument("--transfer-pretrained", default=None, help="weights for --transfer-to")
    g = p.add_argument_group("robustness protocol (worst case over an attack ensemble)")
    g.add_argument("--protocol", default=None, metavar="NAME",
                   help="autoattack: APGD-CE, APGD-T (DLR) and Square in sequence, pointwise worst case, at --eps "
                        "(and --eps-sweep); robust-clip: the same at linf 2/255 and 4/255 with fixed templates, "
                        "500 images, printed like the TeCoA/FARE tables")
    g.add_argument("--ensemble", default=None, help="attacks of the protocol, in order (default apgd-ce,apgd-t,square)")
    g.add_argument("--n-targets", type=int, default=None, help="APGD-T target classes per image (default 9; "
                                                              "at most the classes - 1)")
    g.add_argument("--queries", type=int, default=None, help="Square's query budget per image (default 5000)")
    g.add_argument("--individual", action="store_true",
                   help="also run every attack on every image (each attack's own robust accuracy)")
    g.add_argument("--bpda", action="store_true",
                   help="differentiate through the model's non-differentiable input stage as the identity (BPDA)")
    g.add_argument("--eot", type=int, default=1, help="average gradients over N forward passes (EOT; random "
                                                      "input stages)")
