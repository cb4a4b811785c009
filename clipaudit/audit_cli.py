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

def audit_plan(args: argparse.Namespace) -> dict[str, list[str]]:
    """Each registered audit's command line inside ``clipaudit audit`` (without the shared flags).

    Audits whose registry entry has no ``plan`` (slow or needing their own inputs) are left to
    their own command.
    """
    from clipaudit.audits import AUDITS

    return {name: AUDITS[name].plan(args) for name in AUDITS if AUDITS[name].plan is not None}


def _shared_flags(args: argparse.Namespace, out: str) -> list[str]:
    flags = ["--model", args.model, "--device", args.device, "--precision", args.precision,
             "--seed", str(args.seed), "--out", out]
    if args.pretrained is not None:
        flags += ["--pretrained", args.pretrained]
    for flag in ("ablate_heads", "sae_edit"):  # the umbrella's edits apply to every sub-audit
        if getattr(args, flag, None):
            flags += [f"--{flag.replace('_', '-')}", getattr(args, flag)]
    return flags


def _validate(name: str, sub_args: argparse.Namespace) -> None:
    """The model-free checks of audit ``name``: its CLI module's ``config_from_args``."""
    import importlib

    from clipaudit.audits import AUDITS

    module_name = AUDITS.cli_module(name)
    build = getattr(importlib.import_module(module_name), "config_from_args", None) if module_name else None
    if build is not None:
        config = build(sub_args)
        if hasattr(config, "validate"):
            config.validate()


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
            _validate(name, sub_args)
        except (ClipauditError, ValueError) as err:
            raise ClipauditError(f"the {name} audit would fail: {err}; nothing was run") from None
        planned[name] = (full, sub_args)
    return planned


def _cmd_audit(args: argparse.Namespace) -> int:
    from clipaudit.cli import build_parser
    from clipaudit.report import write_report
    from clipaudit.runs import RunFolder, default_run_dir, existing_run_policy, expand_out, open_run

    from clipaudit.audits import AUDITS

    skip = {s.strip() for s in (args.skip or "").split(",") if s.strip()}
    unknown = skip - set(AUDITS)
    if unknown:
        raise ValueError(f"--skip {sorted(unknown)[0]!r} is not an audit; valid: {', '.join(AUDITS)}")
    if not set(audit_plan(args)) - skip:
        raise ValueError(f"--skip leaves no audit to run; the audits run here: {', '.join(audit_plan(args))}")
    out = str(expand_out(args.out) if args.out else default_run_dir("audit"))
    planned = plan_commands(args, out, skip, build_parser())  # bad flags fail before the model loads
    model = model_from_args(args)
    run = RunFolder.create("audit", out, model=model, seed=args.seed,
                           extra={"audit_options": {"quick": args.quick, "skip": sorted(skip), "target": args.target}})
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


def format_summary(summary: dict) -> str:
    """The short table printed at the end of ``clipaudit audit``."""
    from clipaudit.audits import headline_values
    from clipaudit.stats import format_ci

    rows = []
    for hv in headline_values(summary):
        if isinstance(hv.value, float) and hv.ci is not None:
            text = format_ci(hv.value, hv.ci[0], hv.ci[1])
        else:
            text = f"{hv.value:.3f}" if isinstance(hv.value, float) else str(hv.value)
        rows.append((hv.audit, hv.headline.label, text))
    wa = max([len("audit"), *(len(r[0]) for r in rows)])
    wm = max([len("measure"), *(len(r[1]) for r in rows)])
    lines = [f"{'audit':<{wa}}  {'measure':<{wm}}  value"] + [f"{a:<{wa}}  {m:<{wm}}  {t}" for a, m, t in rows]
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
    from clipaudit.runs import open_run

    for label, path in (("a", args.run_a), ("b", args.run_b)):  # an edited model is not its checkpoint
        for edit in open_run(expand_out(path)).manifest.get("interventions") or []:
            print(f"note: run {label} is an edited model ({edit.get('kind')}: {edit.get('spec')})")
    if args.to:
        print(f"written to {args.to}")
    return 0


def register(sub) -> None:
    p = add_command(sub, "audit", "Run every registered audit (neurons, typographic, adversarial, bias, ...) on "
                    "one model into one run folder, write report.html and print the headline numbers.",
                    "clipaudit audit --quick", _cmd_audit)
    p.add_argument("--quick", action="store_true", help="small sample sizes (on the toy: about 20 s of wall time "
                   "and 30 s of CPU time on 2 free cores)")
    p.add_argument("--target", default="pizza", help="typographic target word")
    p.add_argument("--skip", default="", help="comma list of audits to skip (see `clipaudit --help` for their names)")
    p = add_command(sub, "diff", "Paired differences of every headline metric between two runs of the same "
                    "audit on the same inputs (e.g. two checkpoints), with paired-bootstrap CIs.",
                    "clipaudit diff runs/audit-a runs/audit-b --audit typographic", _cmd_diff, model=False, run=False)
    p.add_argument("run_a", help="first run folder")
    p.add_argument("run_b", help="second run folder")
    p.add_argument("--audit", default=None, help="compare only this audit (default: every shared one)")
    p.add_argument("--bootstrap", type=int, default=2000, help="paired bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--to", default=None, help="also write the table as CSV here")
