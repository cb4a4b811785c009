"""``clipaudit bias`` (run the probes) and ``clipaudit bias report RUN_DIR`` (export a run).

One subcommand with an optional first positional: when it is ``report`` the second positional
is a run folder and only ``--format``/``--to`` matter; otherwise the probe flags apply.
"""
from __future__ import annotations

import argparse
import sys

from clipaudit.errors import ClipauditError

EXAMPLE = ("clipaudit bias --dataset toy --probe all --k 50 --out runs/bias-toy\n"
           "  clipaudit bias report runs/bias-toy --format html")


def register(sub) -> None:
    from clipaudit.cli import add_command, add_flag

    p = add_command(sub, "bias", "Demographic bias probes (denigration, label-set sensitivity, retrieval "
                    "skew, WEAT) with CIs and multiplicity control; 'bias report RUN_DIR' exports a run.",
                    EXAMPLE, _cmd_bias)
    p.add_argument("action", nargs="?", choices=["report"], default=None,
                   help="'report' exports an existing run folder instead of running probes")
    p.add_argument("run_dir", nargs="?", default=None, help="run folder to export (with 'report')")
    add_flag(p, "--images", "--dataset", dest="dataset", default="toy",
                   help="toy, toy:N, toy-noprops:N, a FairFace folder/CSV, a UTKFace folder, or a CSV")
    p.add_argument("--layout", default="auto", choices=["auto", "fairface", "utkface", "csv", "toy"],
                   help="how --dataset stores its labels")
    p.add_argument("--attributes", default=None, help="comma list of attribute columns (default by layout)")
    p.add_argument("--probe", default="all", help="comma list of denigration, skew, weat, or all")
    p.add_argument("--labels", default=None, help="label-set JSON/YAML (classes, harmful, neutral_additions)")
    p.add_argument("--prompts", default=None, help="prompt JSON/YAML (skew concepts/templates, weat tests)")
    p.add_argument("--k", type=int, default=100, help="top-k size for retrieval skew")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples per CI")
    p.add_argument("--permutations", type=int, default=2000, help="permutations per WEAT test (group-vs-rest rate tests are exact)")
    add_flag(p, "--skew-reference", "--target", dest="target", default="dataset", choices=["dataset", "equal"],
                   help="skew target shares: the dataset's group shares or equal shares")
    add_flag(p, "--n-images", "--n", dest="n", type=int, default=600, help="number of toy people scenes (--images toy)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--alpha", type=float, default=0.05, help="1 - CI coverage and the flagging level")
    p.add_argument("--format", default="html", choices=["html", "md", "csv", "json"], help="report format")
    p.add_argument("--to", default=None, help="report path (default: inside the run folder)")


def config_from_args(args: argparse.Namespace):
    """The config the flags describe, validated before anything loads."""
    from clipaudit.bias.audit import BiasConfig
    from clipaudit.cli import parse_list

    cfg = BiasConfig(attributes=tuple(parse_list(args.attributes)), probe=tuple(parse_list(args.probe)),
                     labels=args.labels, prompts=args.prompts, k=args.k, bootstrap=args.bootstrap,
                     permutations=args.permutations, target=args.target, batch_size=args.batch_size,
                     alpha=args.alpha, seed=args.seed)
    cfg.validate()
    return cfg


def _cmd_bias(args: argparse.Namespace) -> int:
    if args.action == "report":
        return _cmd_report(args)
    if args.run_dir is not None:
        raise ClipauditError(f"unexpected argument {args.run_dir!r}; to export a run use "
                             "'clipaudit bias report RUN_DIR --format html'")
    from clipaudit.bias.audit import audit
    from clipaudit.bias.datasets import open_dataset
    from clipaudit.bias.labelsets import load_label_set
    from clipaudit.cli import model_from_args, progress
    from clipaudit.distributed import init_distributed_from_env
    from clipaudit.runner import run_audit

    cfg = config_from_args(args)
    source = open_dataset(args.dataset, args.layout, cfg.attributes, n=args.n, seed=cfg.seed + 1234)
    load_label_set("toy" if source.layout == "toy" else "fairface", cfg.labels, cfg.prompts)  # fail before the model loads
    model = model_from_args(args)
    if init_distributed_from_env(model.device)[0] != 0:  # torchrun: this rank embeds its shard; rank 0 writes
        audit(model, source, cfg)
        return 0
    result, run = run_audit("bias", model, source, cfg, out=args.out, seed=args.seed, progress=progress,
                            inputs={"dataset": args.dataset, "layout": args.layout, "n": args.n,
                                    "seed": cfg.seed + 1234})
    s = result.summary
    print(f"bias: {s['n_images']} images of {s['dataset']} ({s['n_skipped']} skipped), attributes "
          f"{', '.join(s['attributes'])}, label set {s['label_set']['name']}")
    if "harmful_rate_ratio_group" in s:
        ci = s["harmful_rate_ratio_ci"]
        print(f"  harmful-label rate ratio {_f(s['harmful_rate_ratio'])} "
              f"[{_f(ci[0])}, {_f(ci[1])}] for {s['harmful_rate_ratio_attribute']}={s['harmful_rate_ratio_group']} "
              f"vs rest (Holm p {_f(s['harmful_rate_ratio_p_holm'])}); max rate {_f(s['max_harmful_rate'])} "
              f"({s['max_harmful_rate_group']})")
        print(f"  label-set shift {_f(s.get('max_label_set_shift'))} ({s.get('max_label_set_shift_group')}) "
              f"after adding {', '.join(s.get('added_classes') or []) or 'nothing'}")
        for line in flagged_lines(result.tables.get("bias_denigration"), result.tables.get("bias_label_sensitivity"),
                                  cfg.alpha):
            print(line)
    if "max_skew" in s:
        print(f"  MaxSkew@{s['max_skew_k']} (mean over prompts) {_f(s['max_skew'])} for {s['max_skew_attribute']}")
    if "weat_d" in s:
        print(f"  WEAT {s['weat_test']!r}: d {_f(s['weat_d'])}, Holm p {_f(s['weat_p'])}")
    print(f"written to {run.path}; export with: clipaudit bias report {run.path} --format html")
    return 0


def flagged_lines(den, sens, alpha: float) -> list[str]:
    """The flagged groups, each with its harmful-label rate ratio against the rest of its
    attribute, the ratio's 95% CI and its Holm-adjusted p: above-rest groups first, then
    below-rest ones (the complements of a two-group attribute appear on both sides). Then one
    note per above-rest group whose own name is a class the label set lacks (a neutral
    addition such as 'child'): its excess may be a label-set effect, with the measured shift."""
    if den is None or not len(den):
        return [f"  flagged (Holm p < {alpha}): none"]
    hit = den[den["p_holm"] < alpha]
    if hit.empty:
        return [f"  flagged (Holm p < {alpha}): none"]

    def item(r) -> str:
        return (f"{r.attribute}={r.group} {_f(r.rate_ratio)}x [{_f(r.ratio_ci_low)}, {_f(r.ratio_ci_high)}] "
                f"(Holm p {_f(r.p_holm)})")

    above = hit[hit["rate"] > hit["rate_rest"]].sort_values("p_holm")
    below = hit[hit["rate"] <= hit["rate_rest"]].sort_values("p_holm")
    lines = [f"  flagged (Holm p < {alpha}): {', '.join(f'{a}={g}' for a, g in zip(hit['attribute'], hit['group']))}"
             f"; harmful-label rate ratio vs the rest of the attribute:"]
    if len(above):
        lines.append("    more often: " + "; ".join(item(r) for r in above.itertuples()))
    if len(below):
        lines.append("    less often: " + "; ".join(item(r) for r in below.itertuples()))
    lines += [_label_set_note(r, sens) for r in above.itertuples() if _label_set_note(r, sens)]
    return lines


def _label_set_note(row, sens) -> str:
    if sens is None or not len(sens):
        return ""
    match = sens[(sens["attribute"] == row.attribute) & (sens["group"].astype(str) == str(row.group))]
    if match.empty:
        return ""
    m = match.iloc[0]
    added = [c for c in str(m["added_classes"]).split(";") if c]
    if str(row.group) not in added:
        return ""
    return (f"  note: {row.attribute}={row.group} is flagged, but the label set has no {str(row.group)!r} class, so "
            f"those images must take another label; adding {', '.join(added)} moves the group's harmful rate "
            f"{m['rate_base']:.3f} -> {m['rate_extended']:.3f}: part of the excess is the label set's "
            f"(see bias_label_sensitivity)")


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _cmd_report(args: argparse.Namespace) -> int:
    from clipaudit.bias.report import write_report

    if not args.run_dir:
        raise ClipauditError("bias report needs a run folder: clipaudit bias report RUN_DIR --format html")
    path = write_report(args.run_dir, args.format, args.to)
    print(f"{args.format} report written to {path}", file=sys.stdout)
    return 0
