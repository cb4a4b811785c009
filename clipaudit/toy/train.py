"""Train a toy CLIP variant from scratch on the procedural world.

Why our own loop: it must be small enough to read, deterministic by seed (one thread, fixed
step count, scenes addressed by index) and fast enough for 2 CPU cores. Captions repeat in
this world ("a photo of a star."), so identical captions in a batch count as positives of each
other instead of as false negatives; otherwise this is CLIP's symmetric contrastive loss.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from clipaudit.model import OPENAI_MEAN, OPENAI_STD
from clipaudit.toy.configs import CONTEXT_LENGTH, canonical_toy_name, get_toy_config
from clipaudit.toy.world import World, WorldConfig, scenes_to_pixels

ARCH_TO_NAME = {"vit": "toy-vit", "rn": "toy-rn"}


@dataclass(frozen=True)
class Recipe:
    """How a shipped variant was trained.

    Attributes:
        cycles: (steps, peak lr) per cycle; each cycle after the first is a warm restart from
            the previous cycle's fp16 checkpoint with a fresh optimiser, on unseen scenes.
        batch_size: pairs per step.
        world: :class:`WorldConfig` fields that differ from the defaults. The ViT, which lacks
            the convolutional prior, sees more word-alone "sign" scenes (30% instead of 5%) so
            that it learns to read within the hour; every planted rate stays the same.
    """

    cycles: tuple[tuple[int, float], ...]
    batch_size: int
    world: tuple[tuple[str, float | bool], ...] = ()

    def world_config(self) -> WorldConfig:
        return WorldConfig(**dict(self.world))


RECIPES: dict[str, Recipe] = {
    "toy-vit": Recipe(cycles=((6000, 1e-3),), batch_size=128,
                      world=(("p_text_only", 0.30), ("vary_hair_colour", True))),
    "toy-rn": Recipe(cycles=((2400, 1e-3),), batch_size=256),
}


@dataclass
class TrainConfig:
    arch: str = "vit"
    seed: int = 0
    steps: int | None = None
    batch_size: int | None = None  # None: the recipe's
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    threads: int | None = None
    log_every: int = 25
    resume_from: str | None = None  # checkpoint that ends cycle ``start_cycle - 1``
    start_cycle: int = 0

    @property
    def model_name(self) -> str:
        if self.arch not in ARCH_TO_NAME and self.arch not in ARCH_TO_NAME.values():
            raise ValueError(f"unknown arch {self.arch!r}; valid: rn, vit")
        return canonical_toy_name(ARCH_TO_NAME.get(self.arch, self.arch))

    @property
    def cycles(self) -> tuple[tuple[int, float], ...]:
        """(steps, peak lr) per cycle: the recipe, or one cycle of ``steps`` at ``lr``."""
        if self.steps is not None:
            if self.steps < 1:
                raise ValueError(f"steps must be >= 1, got {self.steps}")
            return ((self.steps, self.lr),)
        return RECIPES[self.model_name].cycles

    @property
    def batch(self) -> int:
        """Pairs per step: ``batch_size`` when set, else the recipe's."""
        return self.batch_size if self.batch_size is not None else RECIPES[self.model_name].batch_size

    @property
    def n_steps(self) -> int:
        return sum(steps for steps, _ in self.cycles)


def build_toy_module(name: str, config_override: dict | None = None):
    """A fresh, random-init open_clip ``CLIP`` for a toy variant."""
    from open_clip.model import CLIP

    cfg = config_override or get_toy_config(name)
    return CLIP(**cfg)


def tokenize(texts: list[str]) -> torch.Tensor:
    import open_clip

    return open_clip.tokenize(texts, context_length=CONTEXT_LENGTH)


def multi_positive_clip_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor,
                             captions: list[str]) -> torch.Tensor:
    """Symmetric contrastive loss where pairs with identical captions are all positives."""
    ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    key = torch.tensor([ids[c] for c in captions], device=img.device)
    target = (key[:, None] == key[None, :]).float()
    target = target / target.sum(1, keepdim=True)
    logits = scale * img @ txt.T
    loss_i = -(target * F.log_softmax(logits, 1)).sum(1).mean()
    loss_t = -(target * F.log_softmax(logits.T, 1)).sum(1).mean()
    return (loss_i + loss_t) / 2


def _optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def _lr_at(step: int, total: int, base: float, warmup_frac: float) -> float:
    warm = max(1, int(total * warmup_frac))
    if step < warm:
        return base * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return base * 0.5 * (1 + math.cos(math.pi * t))


def train(config: TrainConfig, out: Path | None = None, world_config: WorldConfig | None = None,
          model_config: dict | None = None, progress: Callable[[dict], None] | None = None,
          on_step: Callable[[int, torch.nn.Module], None] | None = None) -> torch.nn.Module:
    """Train one variant; writes weights + facts + log to ``out`` when given.

    Returns the trained module (fp32, eval mode). ``model_config`` lets tests train a tiny
    config for a few steps.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    name = config.model_name
    model = build_toy_module(name, model_config)
    if config.resume_from:
        from safetensors.torch import load_file

        model.load_state_dict({k: v.float() for k, v in load_file(config.resume_from).items()})
    model.train()
    world = World(world_config or RECIPES[name].world_config(), seed=config.seed)
    bs = config.batch
    mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)  # the toy uses CLIP's own normalisation,
    std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)  # as load_model applies it at audit time
    log: list[dict] = []
    t0 = time.time()
    done_before = sum(steps for steps, _ in config.cycles[:config.start_cycle])
    global_step = done_before
    for cycle, (total, peak_lr) in enumerate(config.cycles):
        if cycle < config.start_cycle:
            continue
        if cycle > config.start_cycle or (cycle > 0 and not config.resume_from):
            with torch.no_grad():  # warm restart from the fp16 checkpoint the previous cycle ships
                for p in model.parameters():
                    p.copy_(p.to(torch.float16).float())
        opt = _optimizer(model, peak_lr, config.weight_decay)
        for step in range(total):
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total, peak_lr, config.warmup_frac)
            scenes = world.batch(global_step * bs, bs)
            captions = [s.caption for s in scenes]
            pixels = (scenes_to_pixels(scenes) - mean) / std
            img, txt, scale = model(pixels, tokenize(captions))
            loss = multi_positive_clip_loss(img, txt, scale, captions)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            global_step += 1
            if step % config.log_every == 0 or step == total - 1:
                elapsed = time.time() - t0
                done = global_step - done_before
                row = {"step": global_step - 1, "cycle": cycle, "loss": loss.item(), "lr": opt.param_groups[0]["lr"],
                       "pairs_per_s": done * bs / max(elapsed, 1e-9),
                       "eta_s": elapsed / done * (config.n_steps - global_step)}
                log.append(row)
                if progress:
                    progress(row)
            if on_step is not None:
                on_step(global_step, model)
    model.eval()
    if out is not None:
        save_toy(model, name, Path(out), world.config, config, log)
    return model


def save_toy(model: torch.nn.Module, name: str, out: Path, world_config: WorldConfig,
             config: TrainConfig, log: list[dict]) -> Path:
    """Write ``<name>.safetensors`` (fp16), ``<name>.facts.json`` and the training log."""
    facts = world_config.facts()
    facts["training"] = {**asdict(config), "batch_size": config.batch, "steps": config.n_steps,
                         "cycles": [list(c) for c in config.cycles], "model": name,
                         "final_loss": log[-1]["loss"] if log else None}
    return write_toy(model, name, out, {"name": name, "seed": str(config.seed)}, facts, log)


def write_toy(model: torch.nn.Module, name: str, out: Path, metadata: dict[str, str], facts: dict,
              log: list[dict]) -> Path:
    """Write a toy variant's weights (fp16 safetensors, atomically, mode 644), its facts and its
    training log into ``out``; returns the weights' path."""
    from safetensors.torch import save_file

    from clipaudit.runs import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    tmp = out / f".{name}.safetensors.tmp"
    save_file(state, str(tmp), metadata=metadata)
    tmp.chmod(0o644)
    tmp.replace(out / f"{name}.safetensors")
    atomic_write_text(out / f"{name}.facts.json", json.dumps(facts, indent=2))
    atomic_write_text(out / f"{name}.trainlog.json", json.dumps(log, indent=1))
    return out / f"{name}.safetensors"
