"""``clipaudit sae``: flags -> :class:`~clipaudit.probes.sae_audit.SAEAuditConfig` -> run_audit."""
from __future__ import annotations

import argparse

from clipaudit.cli import add_command, model_from_args, progress

EXAMPLE = ("clipaudit sae --layer penultimate --images toy:20000 --latents 4096 --k 32 --out runs/sae-toy\n"
           "  clipaudit sae --load runs/sae-toy --images toy:4000 --seed 1 --out runs/sae-toy-eval  "
           "# held-out scenes\n"
           "  torchrun --nproc_per_node 4 -m clipaudit.cli sae --model ViT-B-32 --images imgs/ --out runs/sae-vit")


def register(sub) -> None:
    p = add_command(sub, "sae", "Train a sparse autoencoder on a layer; FVU, L0, spliced accuracy and "
                    "planted-factor recall vs the layer's neurons and a linear probe.", EXAMPLE, _run)
    p.add_argument("--layer", default="penultimate", help="layer alias or path (clipaudit layers lists them)")
    p.add_argument("--images", default="toy", help="training/measuring images: toy, toy:N, a folder, or a CSV")
    p.add_argument("--n-images", type=int, default=20000, help="toy scenes generated when --images is toy")
    p.add_argument("--latents", type=int, default=4096, help="dictionary size")
    p.add_argument("--k", type=int, default=32, help="active latents per row (TopK)")
    p.add_argument("--variant", default="topk", choices=["topk", "batchtopk", "matryoshka"], help="SAE variant")
    p.add_argument("--tokens", default="mean", choices=["all", "cls", "mean"],
                   help="rows per image: positions averaged, the CLS token, or every position/token")
    p.add_argument("--steps", type=int, default=3000, help="training steps")
    p.add_argument("--batch-size", type=int, default=1024, help="rows per training step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--min-positives", type=int, default=20,
                   help="planted factors with fewer positives (or negatives) in their domain are not scored")
    p.add_argument("--no-labels", action="store_true", help="skip the SoftWPMI concept labels of the latents")
    p.add_argument("--bins", type=int, default=20, help="histogram bins of each latent's activations")
    p.add_argument("--patch-top", type=int, default=4,
                   help="--tokens all on a ViT or conv-map layer: top images per latent whose patch maps are kept")
    p.add_argument("--maps", type=int, default=8, help="latents drawn as patch-map PNGs (0: none)")
    p.add_argument("--load", default=None, help="reuse the SAE of this run folder instead of training")


def config_from_args(args: argparse.Namespace):
    from clipaudit.probes.sae import SAEConfig
    from clipaudit.probes.sae_audit import SAEAuditConfig

    sae = SAEConfig(latents=args.latents, k=args.k, variant=args.variant, tokens=args.tokens, steps=args.steps,
                    batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    return SAEAuditConfig(layer=args.layer, sae=sae, load=args.load, min_positives=args.min_positives,
                          labels=not args.no_labels, bins=args.bins, patch_top=args.patch_top, maps=args.maps)


def _run(args: argparse.Namespace) -> int:
    from clipaudit.data import open_source
    from clipaudit.distributed import init_distributed_from_env
    from clipaudit.errors import ClipauditError
    from clipaudit.probes.sae_audit import check_inputs
    from clipaudit.runner import run_audit

    if args.n_images < 1:
        raise ClipauditError(f"--n-images must be >= 1, got {args.n_images}")
    config = config_from_args(args)
    if config.load is None:
        config.sae.validate()  # before the model loads
    source = open_source(args.images, n=args.n_images, seed=1234 + args.seed)
    model = model_from_args(args)
    layer = check_inputs(model, source, config)
    if config.load is not None:  # refused before any run folder exists; the manifest records the SAE used
        from dataclasses import replace

        from clipaudit.probes.sae import load_sae_run

        loaded, _ = load_sae_run(config.load, model=model, layer=layer)
        config = replace(config, sae=loaded.config)
    data = {"images": args.images, "n_images": args.n_images, "seed": 1234 + args.seed}
    rank, world = init_distributed_from_env(model.device)  # torchrun: data-parallel collection and training
    if rank != 0:
        run_audit("sae", model, source, config, write=False, options={"data": data})
        return 0
    result, run = run_audit("sae", model, source, config, out=args.out, seed=args.seed, progress=progress,
                            extra={"world_size": world}, inputs=data, options={"data": data})
    s = result.summary
    line = (f"sae on {s['layer']}: {s['latents']} latents, FVU {s['fvu']:.3f}, L0 {s['l0']:.1f}, "
            f"dead {s['dead_fraction']:.1%}")
    if s.get("clean_accuracy") is not None:
        line += f"; zero-shot accuracy {s['spliced_accuracy']:.3f} spliced vs {s['clean_accuracy']:.3f} clean"
    print(line)
    if s.get("n_factors"):
        print(f"planted factors recovered (held-out AUROC >= {s['recall_threshold']}), of {s['n_factors']}: "
              + ", ".join(f"{name} {s[key]:.2f} [{s[key + '_ci'][0]:.2f}, {s[key + '_ci'][1]:.2f}]"
                          for name, key in (("SAE", "planted_factor_recall"), ("neurons", "neuron_factor_recall"),
                                            ("linear probe", "linear_probe_factor_recall"))))
    if s.get("measured_on_training_images"):
        print("note: measured on the SAE's own training images (in-sample); for held-out figures run "
              "--load on other images (toy: another --seed)")
    print(f"written to {run.path}")
    return 0
