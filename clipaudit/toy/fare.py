"""FARE: unsupervised adversarial fine-tuning of a toy's image encoder (``toy-fare``).

Method: Schlarmann, Singh, Croce & Hein, "Robust CLIP: Unsupervised Adversarial Fine-Tuning of
Vision Embeddings for Robust Large Vision-Language Models" (ICML 2024); reference code
``chs20/RobustVLM`` (``train/adversarial_training_clip.py``). The loss needs no labels: with
``phi_0`` the frozen original image encoder and ``phi`` the one being tuned,

    L(x) = max_{||delta||_inf <= eps} || phi(x + delta) - phi_0(x) ||_2^2

(unnormalised embeddings), the inner max by projected gradient ascent (``pgd_steps`` steps of
size ``eps / 4``, random start). Only the image tower changes, so the text tower, the
zero-shot head and every prompt embedding stay those of the original toy, and clean zero-shot
accuracy moves only as far as the embeddings drift.

Where this differs from the reference on purpose: scenes from the toy world at scene indices
the original training never drew (``start``), not ImageNet; BatchNorm statistics stay frozen
(the ResNet tower is tuned in eval mode), which keeps the clean embeddings of the original
where the loss does not push; AdamW with a cosine schedule sized for 2 CPU cores.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from clipaudit.toy.world import World, scenes_to_pixels

#: scene index the fine-tune starts at: far past every scene the shipped toys were trained on
SCENE_OFFSET = 50_000_000


@dataclass(frozen=True)
class FareConfig:
    """Settings of a FARE fine-tune (``clipaudit toy train --fare``); saved in ``facts.json``.

    Attributes:
        base: the toy whose image tower is tuned (its shipped weights are the start and ``phi_0``).
        eps: l-inf radius of the inner attack, in [0, 1] pixel units (FARE-4: 4/255).
        pgd_steps: inner ascent steps (step size ``eps / 4``).
        steps, batch_size, lr, weight_decay, warmup_frac: the outer optimisation.
        seed: torch seed and world seed (same seed, same weights).
    """

    base: str = "toy-rn"
    eps: float = 4 / 255
    pgd_steps: int = 10
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup_frac: float = 0.05
    seed: int = 0
    threads: int | None = None
    log_every: int = 25

    def check(self) -> None:
        if not 0 < self.eps <= 0.25:
            raise ValueError(f"--eps must be in (0, 0.25] (pixels in [0, 1]), got {self.eps}")
        for key in ("pgd_steps", "steps", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def fare_loss(visual: torch.nn.Module, x_adv: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``||visual(x_adv) - target||_2^2`` (B,) -> scalar."""
    return (visual(x_adv) - target).pow(2).sum(-1).mean()


def inner_attack(visual: torch.nn.Module, normalize: Callable[[torch.Tensor], torch.Tensor],
                 pixels: torch.Tensor, target: torch.Tensor, eps: float, steps: int,
                 generator: torch.Generator) -> torch.Tensor:
    """The inner max of FARE: l-inf PGD on the embedding distance, random start.

    Args:
        pixels: (B, 3, S, S) clean images in [0, 1].
        target: (B, D) the frozen encoder's clean embeddings.
    Returns:
        (B, 3, S, S) adversarial pixels in [0, 1], ``||x_adv - pixels||_inf <= eps``.
    """
    step = eps / 4
    delta = (torch.rand(pixels.shape, generator=generator) * 2 - 1) * eps
    delta = ((pixels + delta).clamp(0, 1) - pixels).requires_grad_(True)
    for _ in range(steps):
        loss = fare_loss(visual, normalize(pixels + delta), target)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta += step * grad.sign()
            delta.clamp_(-eps, eps)
            delta.copy_((pixels + delta).clamp(0, 1) - pixels)
    return (pixels + delta).detach()


def fine_tune(config: FareConfig, out: Path | None = None, name: str = "toy-fare",
              progress: Callable[[dict], None] | None = None) -> torch.nn.Module:
    """Run FARE on ``config.base``; returns the tuned open_clip module (eval mode).

    Writes ``<name>.safetensors`` (fp16), ``<name>.facts.json`` (the base's planted facts plus
    this config) and ``<name>.trainlog.json`` to ``out`` when given.

    Raises:
        ValueError: a setting out of range (:meth:`FareConfig.check`).
    """
    from clipaudit.model import load_model
    from clipaudit.toy import load_facts
    from clipaudit.toy.train import RECIPES, _lr_at

    config.check()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    base = load_model(config.base, device="cpu", text_cache=False)
    frozen = copy.deepcopy(base.model.visual).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    model = base.model.eval()  # BatchNorm statistics stay frozen (module docstring)
    for p in model.parameters():
        p.requires_grad_(False)
    visual = model.visual
    params = [p for p in visual.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    world = World(RECIPES[config.base].world_config(), seed=config.seed)
    normalize = base.normalize
    log: list[dict] = []
    t0 = time.time()
    for step in range(config.steps):
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, config.steps, config.lr, config.warmup_frac)
        pixels = scenes_to_pixels(world.batch(SCENE_OFFSET + step * config.batch_size, config.batch_size))
        with torch.no_grad():
            target = frozen(normalize(pixels))
        x_adv = inner_attack(visual, normalize, pixels, target, config.eps, config.pgd_steps, gen)
        loss = fare_loss(visual, normalize(x_adv), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % config.log_every == 0 or step == config.steps - 1:
            with torch.no_grad():
                clean = fare_loss(visual, normalize(pixels), target).item()
            elapsed = time.time() - t0
            row = {"step": step, "loss": loss.item(), "clean_loss": clean, "lr": opt.param_groups[0]["lr"],
                   "eta_s": elapsed / (step + 1) * (config.steps - step - 1)}
            log.append(row)
            if progress:
                progress(row)
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    if out is not None:
        save_fare(model, name, Path(out), config, log, load_facts(config.base))
    return model


def save_fare(model: torch.nn.Module, name: str, out: Path, config: FareConfig, log: list[dict],
              base_facts: dict) -> Path:
    """Write the tuned weights (fp16 safetensors), facts and log atomically into ``out``
    (:func:`clipaudit.toy.train.write_toy`)."""
    from clipaudit.toy.train import write_toy

    facts = {k: v for k, v in base_facts.items() if k != "training"}
    facts["training"] = {"method": "FARE (Schlarmann et al. 2024)", "base": config.base,
                         "base_training": base_facts.get("training"), **asdict(config),
                         "final_loss": log[-1]["loss"] if log else None}
    return write_toy(model, name, out, {"name": name, "seed": str(config.seed), "method": "FARE"}, facts, log)
