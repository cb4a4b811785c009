"""The ``clipaudit neurons`` command: flags -> :class:`NeuronsConfig` -> :func:`audit` -> run folder."""
from __future__ import annotations

import argparse
import sys

from clipaudit.cli import add_command, add_flag, model_from_args, parse_list, progress

EXAMPLE = "clipaudit neurons --layer penultimate --model toy --top 16 --steps 256 --ablate zero"


def register(sub) -> None:
    p = add_command(sub, "neurons", "Discover, label, render and causally test the neurons of a layer "
                    "(multimodal neurons: pictures and written words of one concept).", EXAMPLE, run_neurons)
    p.add_argument("--layer", default="penultimate", help="alias (penultimate, block:N, final) or dotted path")
    p.add_argument("--images", default="toy", help="probe images: toy, toy:N, a folder, or a CSV")
    p.add_argument("--n-images", type=int, default=1024, help="toy scenes generated when --images is toy")
    p.add_argument("--neurons", default=None, help="comma-separated neuron ids (default: the --top multimodal ones)")
    p.add_argument("--top", type=int, default=16, help="neurons selected by multimodality score")
    p.add_argument("--concepts", default=None, help="concept file, one per line (default: shipped set)")
    p.add_argument("--steps", type=int, default=512, help="feature-visualisation optimiser steps")
    add_flag(p, "--batch-size", "--batch", dest="batch", type=int, default=64, help="images per forward pass in the scan")
    p.add_argument("--k", type=int, default=50, help="top images kept per neuron")
    p.add_argument("--tokens", default="mean", choices=["mean", "cls", "max"], help="token reduction on ViT layers")
    p.add_argument("--per-neuron", type=int, default=1, help="feature-vis images per neuron")
    p.add_argument("--diversity", type=float, default=0.0, help="diversity weight when --per-neuron > 1")
    p.add_argument("--no-attribution", action="store_true", help="skip integrated-gradients overlays")
    p.add_argument("--attribution-images", type=int, default=4, help="top images attributed per neuron")
    p.add_argument("--ablate", default=None, choices=["zero", "mean"], help="causal check by ablation")
    p.add_argument("--n-words", type=int, default=16, help="word renders per concept (multimodality)")
    p.add_argument("--n-pictures", type=int, default=16, help="pictures per concept (multimodality, ablation)")
    p.add_argument("--profile-n", type=int, default=256,
                   help="images (the source's first) for examples per activation quantile and histograms; 0: off")
    p.add_argument("--profile-bins", type=int, default=20, help="histogram bins per neuron")
    p.add_argument("--text-words", type=int, default=300,
                   help="concept words written on plain backgrounds to find each neuron's words (text feature "
                        "visualisation); 0: off")


def config_from_args(args: argparse.Namespace):
    from clipaudit.errors import ClipauditError
    from clipaudit.probes.audit import NeuronsConfig, unique_neurons

    try:
        ids = parse_list(args.neurons, int) if args.neurons else None
    except ValueError:
        raise ClipauditError(f"--neurons {args.neurons!r} must be comma-separated integers, e.g. 3,17,250") from None
    if ids:
        ids, repeated = unique_neurons(ids)
        if repeated:
            print(f"note: --neurons repeats {', '.join(map(str, repeated))}; each neuron is rendered once")
    return NeuronsConfig(layer=args.layer, neurons=ids, top=args.top,
                         concepts=args.concepts, steps=args.steps, batch=args.batch, k=args.k, tokens=args.tokens,
                         per_neuron=args.per_neuron, diversity=args.diversity, attribution=not args.no_attribution,
                         attribution_images=args.attribution_images, ablate=args.ablate, n_words=args.n_words,
                         n_pictures=args.n_pictures, seed=args.seed, profile_n=args.profile_n,
                         profile_bins=args.profile_bins, text_words=args.text_words)


def _neuron_lines(rows) -> str:
    """The printed table: each neuron's SoftWPMI label beside the concept it is multimodal for
    ('-' when none) and its multimodal score."""
    lines = ["neuron  label          multimodal for  score"]
    for n, row in rows.iterrows():
        concept = row.get("multimodal_concept") or "-"
        score = row.get("multimodal_score")
        lines.append(f"{n:>6}  {str(row['label'])[:13]:<13}  {str(concept)[:14]:<14}  "
                     + (f"{score:.2f}" if score == score and score is not None else "-"))
    return "\n".join(lines)


def run_neurons(args: argparse.Namespace) -> int:
    from clipaudit.data import open_source
    from clipaudit.distributed import init_distributed_from_env
    from clipaudit.hooks import resolve_layer
    from clipaudit.probes.audit import audit, too_few_note
    from clipaudit.probes.labels import read_concepts
    from clipaudit.runner import run_audit

    config = config_from_args(args)
    config.validate()
    if config.concepts:
        read_concepts(config.concepts)  # fail before loading anything heavy
    model = model_from_args(args)
    layer = resolve_layer(model, config.layer)
    if config.neurons:
        layer.check_neurons(config.neurons)
    source = open_source(args.images, n=args.n_images, seed=config.seed + 1234)
    rank, world = init_distributed_from_env(model.device)  # torchrun: data-parallel scan
    if rank != 0:
        audit(model, source, config)
        return 0
    result, run = run_audit("neurons", model, source, config, out=args.out, seed=config.seed, progress=progress,
                            log=lambda m: print(m, file=sys.stderr, flush=True), extra={"world_size": world},
                            inputs={"images": args.images, "n_images": args.n_images, "seed": config.seed + 1234})
    s = result.summary
    t = result.tables["neurons"]
    print(f"{s['layer']}: {s['n_neurons']} neurons over {s['n_images']} images"
          + (f" ({s['n_skipped']} skipped: see skipped.csv)" if s.get("n_skipped") else ""))
    if s.get("sample_size_warning"):
        print(f"warning: {s['sample_size_warning']}")
    if s.get("n_multimodal") is not None:
        print(f"multimodal neurons: {s['n_multimodal']} across {len(s.get('multimodal_concepts', {}))} concepts"
              + (" (probe set too small to judge: see the warning above)" if s.get("sample_size_warning") else ""))
    if s.get("label_accuracy") == s.get("label_accuracy") and s.get("n_class_dominated"):
        n_dom = int(s["n_class_dominated"])
        print(f"label accuracy on class-dominated neurons: {s['label_accuracy']:.2f} (n={n_dom}{too_few_note(n_dom)})")
    shown = t[t["neuron"].isin(s["top"])].set_index("neuron").loc[s["top"]]
    print(_neuron_lines(shown.head(10)))
    if "ablation" in result.tables:
        a = result.tables["ablation"]
        acc = a[a["measure"] == "accuracy"]
        if len(acc):
            print(f"ablation ({config.ablate}): concept accuracy change {acc['delta'].mean():+.3f}, "
                  f"other concepts {acc['other_delta'].mean():+.3f}")
    print(f"written to {run.path}")
    return 0
