"""Speed of ``clipaudit.attacks.adversarial`` PGD, printed as ratios measured in one run.

1. Cost of one PGD step vs one forward+backward of the same model and batch (goal <= 1.1):
   the attack should add nothing but the projection to the gradient it needs.
2. Our PGD vs torchattacks' PGD (``pip install torchattacks``, the ``bench`` extra) on the same
   wrapped random-init models, batch, eps, step size and steps (goal: ours >= 1.3x faster at
   equal success). Ours is timed with early stopping (its default: fooled images leave the
   batch) and without it (every image takes every step, as torchattacks does).

3. The attack ensemble (``--protocol autoattack``: APGD-CE, APGD-T over every wrong class, Square
   with 5000 queries, 10 APGD steps each) vs torchattacks' AutoAttack attacks (APGD-CE, APGD-T,
   Square in its ``MultiAttack``, same steps, targets and queries; its "standard" AutoAttack adds
   FAB-T, which crashes on these models) on the same model, images and eps: time ratio (goal >=
   1.3x faster) and worst-case robust accuracy (goal: ours equal or lower). Both skip images an
   earlier attack broke; ours also drops an image from an attack the step it breaks.

The images are toy-world scenes scaled to the model's input size. A random-init ResNet's
BatchNorm layers hold their initial statistics (mean 0, variance 1), which leaves its head
almost constant: every image gets the same class and nothing fools it, so an attack
comparison would measure nothing. The ResNet's BatchNorm statistics are therefore estimated
once on 32 other scenes before timing (``calibrate_batchnorm``); both attacks then face the
same, input-dependent model.

Usage: python benchmarks/adversarial.py [--models ViT-B-32,RN50] [--batch 16] [--steps 10]
       [--device auto] [--threads N] [--ensemble-models toy-rn,toy-fare,ViT-B-32,RN50]
       [--ensemble-eps 4/255] [--queries 5000]
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch
import torch.nn.functional as F
from _timing import sync


class Wrapped(torch.nn.Module):
    """What torchattacks expects: a module from [0, 1] pixels to logits whose parameters tell
    the device. The zero-shot head is exactly that function; the CLIP is held for .parameters()."""

    def __init__(self, head) -> None:
        super().__init__()
        self.clip = head.audit_model.model
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def toy_scenes(start: int, n: int, size: int, device) -> torch.Tensor:
    from clipaudit.toy.world import World, scenes_to_pixels

    x = scenes_to_pixels(World(seed=0).batch(start, n))
    return F.interpolate(x, size=size, mode="bilinear", antialias=True).clamp(0, 1).to(device)


@torch.no_grad()
def calibrate_batchnorm(model, pixels: torch.Tensor) -> int:
    """Replace every BatchNorm's running statistics by those of ``pixels`` (one pass, cumulative
    average); returns how many layers were recalibrated (0 for a ViT)."""
    visual = model.model.visual
    layers = [m for m in visual.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    if layers:
        visual.train()
        model.encode_images(pixels)
        visual.eval()
    return len(layers)


def _timed(fn, device, repeats: int) -> tuple[float, object]:
    fn()  # warm-up
    sync(device)
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_model(name: str, pretrained: str, batch: int, steps: int, eps: float, device: str,
                repeats: int) -> dict:
    from clipaudit.attacks.adversarial import Objective, attack
    from clipaudit.model import load_model

    torch.manual_seed(0)  # the random init: the same model on every run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(name, pretrained, device=device)
    dev = model.device
    n_bn = calibrate_batchnorm(model, toy_scenes(10_000, 32, model.image_size, dev))
    classes = ["apple", "pizza", "ipod", "dog", "cat", "car", "boat", "clock", "key", "star"]
    head = model.classifier(classes)
    x = toy_scenes(0, batch, model.image_size, dev)
    with torch.no_grad():
        y = head(x).argmax(-1)
    alpha = 2.5 * eps / steps

    def fwd_bwd():
        # As many passes as the attack takes, timed as one block: the best of several short
        # timings is more optimistic than the best of several long ones, which would inflate
        # the per-step ratio on a shared machine.
        for _ in range(steps):
            xx = x.detach().requires_grad_(True)
            loss = F.cross_entropy(head(xx), y, reduction="none")
            grad = torch.autograd.grad(loss.sum(), xx)[0]
        return grad

    t_fb, _ = _timed(fwd_bwd, dev, repeats)
    t_fb /= steps

    def ours(early: bool):
        return attack(Objective(head, y), x, "pgd", eps, "linf", steps=steps, step_size=alpha, seed=0,
                      early_stop=early)

    t_full, out_full = _timed(lambda: ours(False), dev, repeats)
    t_early, out_early = _timed(lambda: ours(True), dev, repeats)
    row = {"model": name, "batchnorm_calibrated": n_bn, "clean_classes": int(y.unique().numel()), "batch": batch,
           "steps": steps, "t_fwd_bwd": t_fb, "step_ratio": t_full / steps / t_fb,
           "t_ours_full": t_full, "t_ours_early": t_early,
           "success_ours": float(out_full.success.float().mean()),
           "success_ours_early": float(out_early.success.float().mean())}
    try:
        import torchattacks
    except ImportError:
        row["torchattacks"] = "not installed (pip install torchattacks)"
        return row
    wrapped = Wrapped(head).eval()
    ta = torchattacks.PGD(wrapped, eps=eps, alpha=alpha, steps=steps, random_start=True)
    t_ta, adv_ta = _timed(lambda: ta(x, y), dev, repeats)
    with torch.no_grad():
        row["success_torchattacks"] = float((head(adv_ta).argmax(-1) != y).float().mean())
    row["t_torchattacks"] = t_ta
    row["speedup_early"] = t_ta / t_early
    row["speedup_full"] = t_ta / t_full
    return row


def bench_ensemble(name: str, batch: int, eps: float, device: str, steps: int, queries: int) -> dict:
    """Ours (sequential worst case) vs torchattacks.AutoAttack on one model; toys use their
    shipped weights and true labels, open_clip architectures random init (BatchNorm calibrated)."""
    from clipaudit.attacks.ensemble import EnsembleSettings, run_ensemble
    from clipaudit.model import load_model

    torch.manual_seed(0)
    toy = name.startswith("toy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(name, None if toy else "none", device=device)
    dev = model.device
    if toy:
        from clipaudit.data import open_source
        from clipaudit.toy.world import OBJECT_CLASSES
        from clipaudit.zeroshot import iterate

        classes = list(OBJECT_CLASSES)
        b = next(iter(iterate(open_source("toy", n=batch, seed=1234, kind="object", text=False), model, batch, None)))
        x = b.pixels.float().to(dev)
        head = model.classifier(classes)
        y = torch.tensor([classes.index(l) for l in b.meta["label"]], device=dev)
    else:
        calibrate_batchnorm(model, toy_scenes(10_000, 32, model.image_size, dev))
        classes = ["apple", "pizza", "ipod", "dog", "cat", "car", "boat", "clock", "key", "star"]
        head = model.classifier(classes)
        x = toy_scenes(0, batch, model.image_size, dev)
        with torch.no_grad():
            y = head(x).argmax(-1)
    settings = EnsembleSettings(steps=steps, n_targets=len(classes) - 1, queries=queries)
    sync(dev)
    t0 = time.perf_counter()
    ours = run_ensemble(head, x, y, eps, settings=settings, seed=0)
    sync(dev)
    t_ours = time.perf_counter() - t0
    row = {"model": name, "n": batch, "eps": eps, "t_ours": t_ours,
           "clean_ours": float(ours.clean_correct.float().mean()), "robust_ours": float(ours.worst.float().mean())}
    try:
        import torchattacks
    except ImportError:
        row["torchattacks"] = "not installed (pip install torchattacks)"
        return row
    wrapped = Wrapped(head).eval()
    # torchattacks.AutoAttack("standard") runs FAB-T too, which fails on these CLIPs (a .view on a
    # non-contiguous gradient in fab.py); its MultiAttack over the same three attacks as ours, with
    # its defaults for them (as AutoAttack builds them), is the like-for-like peer.
    aa = torchattacks.MultiAttack([
        torchattacks.APGD(wrapped, norm="Linf", eps=eps, steps=steps, n_restarts=1, loss="ce", seed=0),
        torchattacks.APGDT(wrapped, norm="Linf", eps=eps, steps=steps, n_restarts=1, n_classes=len(classes), seed=0),
        torchattacks.Square(wrapped, norm="Linf", eps=eps, n_queries=queries, n_restarts=1, seed=0)])
    sync(dev)
    t0 = time.perf_counter()
    adv = aa(x, y)
    sync(dev)
    row["t_torchattacks"] = time.perf_counter() - t0
    with torch.no_grad():
        row["robust_torchattacks"] = float((head(adv).argmax(-1) == y).float().mean())
    row["speedup"] = row["t_torchattacks"] / t_ours
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="ViT-B-32,RN50", help="open_clip architectures (random init)")
    p.add_argument("--pretrained", default="none")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--eps", type=float, default=8 / 255)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=1, help="timed repeats (the best is kept)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--ensemble-models", default="toy-rn,toy-fare,ViT-B-32,RN50",
                   help="models for the ensemble comparison ('' skips it)")
    p.add_argument("--ensemble-eps", default="4/255")
    p.add_argument("--ensemble-batch", type=int, default=32)
    p.add_argument("--queries", type=int, default=5000, help="Square queries (both sides)")
    p.add_argument("--skip-pgd", action="store_true", help="only the ensemble comparison")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in [m.strip() for m in args.models.split(",") if m.strip() and not args.skip_pgd]:
        r = bench_model(name, args.pretrained, args.batch, args.steps, args.eps, args.device, args.repeats)
        print(f"{r['model']}: batch {r['batch']}, {r['steps']} steps, eps {args.eps * 255:.3g}/255, "
              f"device {args.device}; {r['batchnorm_calibrated']} BatchNorm layers calibrated, "
              f"{r['clean_classes']} distinct clean predictions")
        print(f"  one PGD step / one forward+backward = {r['step_ratio']:.3f}  (goal <= 1.1; "
              f"fwd+bwd {r['t_fwd_bwd'] * 1e3:.0f} ms)")
        if "t_torchattacks" in r:
            print(f"  torchattacks PGD {r['t_torchattacks']:.2f} s, success {r['success_torchattacks']:.3f}")
            print(f"  ours, early stop {r['t_ours_early']:.2f} s, success {r['success_ours_early']:.3f}: "
                  f"{r['speedup_early']:.2f}x faster (goal >= 1.3)")
            print(f"  ours, every step {r['t_ours_full']:.2f} s, success {r['success_ours']:.3f}: "
                  f"{r['speedup_full']:.2f}x faster")
        else:
            print(f"  torchattacks: {r['torchattacks']}")
    from clipaudit.attacks.adversarial import parse_eps

    eps = parse_eps(args.ensemble_eps)
    for name in [m.strip() for m in args.ensemble_models.split(",") if m.strip()]:
        r = bench_ensemble(name, args.ensemble_batch, eps, args.device, args.steps, args.queries)
        print(f"ensemble on {name}: {r['n']} images, linf {eps * 255:.3g}/255, {args.steps} APGD steps, "
              f"{args.queries} Square queries; clean {r['clean_ours']:.3f}")
        print(f"  ours {r['t_ours']:.1f} s, worst-case robust accuracy {r['robust_ours']:.3f}")
        if "t_torchattacks" in r:
            print(f"  torchattacks APGD-CE + APGD-T + Square {r['t_torchattacks']:.1f} s, robust accuracy "
                  f"{r['robust_torchattacks']:.3f}: ours {r['speedup']:.2f}x faster (goal >= 1.3), robust accuracy "
                  f"{'<=' if r['robust_ours'] <= r['robust_torchattacks'] else '>'} torchattacks' (goal <=)")
        else:
            print(f"  torchattacks: {r['torchattacks']}")


if __name__ == "__main__":
    main()
