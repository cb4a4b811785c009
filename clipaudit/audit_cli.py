"""``clipaudit audit`` (every audit on one model into one run folder) and ``clipaudit diff``.

Why by dispatch: ``audit`` builds each sub-audit's command line and runs that subcommand with
the model loaded once, so ``clipaudit audit`` and the four separate commands can never drift
apart — there is one implementation of each audit.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time

from clipaudit.cli import add_command, model_from_args

AUDITS = ("neurons", "typographic", "adversarial", "bias")


def audit_plan(args: argparse.Namespace) -> dict[str, list[str]]:
    """The sub-audit command lines (without the shared model/run flags)."""
    quick = args.quick
    return {
        "neurons": ["neurons", "--layer", "penultimate", "--top", "8" if quick else "16",
                    "--steps", "48" if quick else "512", "--n-images", "256" if quick else "2048",
                    "--attribution-images", "2" if quick else "4", "--n-words", "8" if quick else "16",
                    "--n-pictures", "8" if quick else "16", "--k", "20" if quick else "50"],
        "typographic": ["typographic", "--target", args.target, "--n", "96" if quick else "500",
                        *([] if quick else ["--sweep", "size=6,8,10,12,14", "opacity=0.25,0.5,1"])],
        "adversarial": ["adversarial", "--attack", "pgd", "--eps", "4/255", "--steps", "5" if quick else "10",
                        "--n", "32" if quick else "256", "--sanity-n", "16" if quick else "32",
                        "--eps-sweep", "0,2/255,4/255" if quick else "0,1/255,2/255,4/255,8/255"],
        "bias": ["bias", "--dataset", "toy", "--n", "400" if quick else "2000",
                 "--bootstrap", "500" if quick else "2000"],
    }


def _shared_flags(args: argparse.Namespace, out: str) -> list[str]:
    flags = ["--model", args.model, "--device", args.device, "--precision", args.precision,
             "--seed", str(args.seed), "--out", out]
    if args.pretrained is not None:
        flags += ["--pretrained", args.pretrained]
    return flags


def _validate_neurons(args: argparse.Namespace) -> None:
    from clipaudit.probes.cli import config_from_args

    config_from_args(args).validate()


def _validate_typographic(args: argparse.Namespace) -> None:
    from clipaudit.attacks.typographic_audit import check_target

    check_target(args.target)
    if args.n < 1:
        raise ValueError(f"--n must be >= 1 toy images, got {args.n}")


def _validate_adversarial(args: argparse.Namespace) -> None:
    from clipaudit.attacks.adversarial_cli import config_from_args

    config_from_args(args)


# the model-free checks each subcommand runs before it loads anything (see each module's _cmd)
VALIDATORS = {"neurons": _validate_neurons, "typographic": _validate_typographic,
              "adversarial": _validate_adversarial}


def plan_commands(args: argparse.Namespace, out: str, skip: set[str], parser: argparse.ArgumentParser
                  ) -> dict[str, tuple[list[str], argparse.Namespace]]:
    """Every sub-audit's command line, parsed and validated before the first one starts.

    Raises:
        ClipauditError: a sub-audit's flags do not parse or fail its checks (naming the audit).
    """
    from clipaudit.errors import ClipauditError

    planned = {}
    for name, argv in audit_plan(args).items():
        if name in skip:
            continue
        full = argv + _shared_flags(args, out)
        try:
            sub_args = parser.parse_args(full)
        except SystemExit:
            raise ClipauditError(f"the {name} audit's flags do not parse: clipaudit {shlex.join(full)}") from None
        try:
            VALIDATORS.get(name, lambda a: None)(sub_args)
        except (ClipauditError, ValueError) as err:
            raise ClipauditError(f"the {name} audit would fail: {err}; nothing was run") from None
        planned[name] = (full, sub_args)
    return planned


def _cmd_audit(args: argparse.Namespace) -> int:
    from clipaudit.cli import build_parser
    from clipaudit.report import write_report
    from clipaudit.runs import RunFolder, default_run_dir, existing_run_policy, expand_out, open_run

    skip = {s.strip() for s in (args.skip or "").split(",") if s.strip()}
    unknown = skip - set(AUDITS)
    if unknown:
        raise ValueError(f"--skip {sorted(unknown)[0]!r} is not an audit; valid: {', '.join(AUDITS)}")
    out = str(expand_out(args.out) if args.out else default_run_dir("audit"))
    planned = plan_commands(args, out, skip, build_parser())  # bad flags fail before the model loads
    model = model_from_args(args)
    run = RunFolder.create("audit", out, model=model, seed=args.seed, config={"quick": args.quick, "skip": sorted(skip)})
    done = {name for name, d in (open_run(out).manifest.get("audits_detail") or {}).items()
            if isinstance(d, dict) and d.get("status") == "complete" and name != "audit"}
    timings: dict[str, float] = {}
    status = "failed"
    try:
        for name, (full, sub_args) in planned.items():
            if name in done:
                print(f"\n== {name}: already complete in {out}; kept (--resume)", flush=True)
                continue
            print(f"\n== {name}: clipaudit {shlex.join(full)}", flush=True)
            sub_args.preloaded_model = model
            start = time.time()
            with existing_run_policy("resume"):  # each sub-audit joins this folder
                code = int(sub_args.func(sub_args) or 0)
            timings[name] = round(time.time() - start, 1)
            if code != 0:
                print(f"error: the {name} audit exited with {code}; finished audits are kept in {out}",
                      file=sys.stderr)
                return code
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        held = open_run(out).manifest.get("audits") or []
        run.update_manifest({"timings_s": timings, "audits": [a for a in AUDITS if a in held]})
        run.finish(status)
    if "bias" in timings:  # the bias section's own exports: the dashboard links to them
        from clipaudit.bias import write_report as write_bias_report

        for fmt in ("html", "md"):
            write_bias_report(out, fmt)
    report = write_report(out)
    print("\n" + format_summary(open_run(out).summary))
    print(f"\nreport: {report}\nview it: clipaudit dashboard --runs {out}")
    return 0


HEADLINES = (("neurons", "n_multimodal", "multimodal neurons"),
             ("typographic", "attack_success_rate", "typographic attack success"),
             ("adversarial", "clean_accuracy", "clean zero-shot accuracy"),
             ("adversarial", "robust_accuracy", "robust accuracy (PGD)"),
             ("bias", "harmful_rate_ratio", "harmful-label rate ratio"),
             ("bias", "weat_d", "WEAT effect size d"))


def format_summary(summary: dict) -> str:
    """The short table printed at the end of ``clipaudit audit``."""
    lines = [f"{'audit':<12} {'measure':<30} value"]
    for section, key, label in HEADLINES:
        value = (summary.get(section) or {}).get(key)
        if value is None:
            continue
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        ci = (summary.get(section) or {}).get(key.replace("_rate", "") + "_ci") or \
            (summary.get(section) or {}).get(f"{key}_ci")
        if isinstance(ci, list) and len(ci) == 2 and None not in ci:
            text += f"  [{ci[0]:.3f}, {ci[1]:.3f}]"
        lines.append(f"{section:<12} {label:<30} {text}")
    return "\n".join(lines)


def _cmd_diff(args: argparse.Namespace) -> int:
    from clipaudit.diff import diff_runs, left_out
    from clipaudit.runs import check_writable, expand_out, write_export

    if args.to:
        check_writable(args.to)  # before the bootstrap, not after
    table = diff_runs(expand_out(args.run_a), expand_out(args.run_b), audit=args.audit,
                      n_resamples=args.bootstrap, seed=args.seed)
    if args.to:
        write_export(args.to, table.to_csv(index=False))
    with_ci = table.copy()
    print(with_ci.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for audit, why in left_out(table).items():
        print(f"left out: {audit}: {why}")
    if args.to:
        print(f"written to {args.to}")
    return 0


def register(sub) -> None:
    p = add_command(sub, "audit", "Run every audit (neurons, typographic, adversarial, bias) on one model "
                    "into one run folder, write report.html and print the headline numbers.",
                    "clipaudit audit --quick", _cmd_audit)
    p.add_argument("--quick", action="store_true", help="small sample sizes (on the toy: 120 s of CPU time, "
                   "half a minute to two minutes of wall time by free cores)")
    p.add_argument("--target", default="pizza", help="typographic target word")
    p.add_argument("--skip", default="", help=f"comma list of audits to skip ({', '.join(AUDITS)})")
    p = add_command(sub, "diff", "Paired differences of every headline metric between two runs of the same "
                    "audit on the same inputs (e.g. two checkpoints), with paired-bootstrap CIs.",
                    "clipaudit diff runs/audit-a runs/audit-b --audit typographic", _cmd_diff, model=False, run=False)
    p.add_argument("run_a", help="first run folder")
    p.add_argument("run_b", help="second run folder")
    p.add_argument("--audit", default=None, help="compare only this audit (default: every shared one)")
    p.add_argument("--bootstrap", type=int, default=2000, help="paired bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--to", default=None, help="also write the table as CSV here")
