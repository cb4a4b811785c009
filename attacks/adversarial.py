"""Gradient attacks that speak CLIP: FGSM, PGD and APGD, Linf and L2, on pixels in [0, 1].

Why our own and not torchattacks/ART: the model's normalisation lives inside
:class:`~clipaudit.model.AuditModel`, so ``eps`` is in pixel units with no wrapping; the
zero-shot head and text targets are built in; and images already fooled leave the batch
(``early_stop``), so a step costs one forward+backward of the images still standing.

Conventions (shapes):
    x: clean pixels (B, 3, S, S) in [0, 1]; the adversarial images satisfy
    ``||x_adv - x||_p <= eps`` and ``0 <= x_adv <= 1``.
    An :class:`Objective` gives a per-image loss (B,) to *maximise* and, when it has a
    zero-shot head, logits (B, C) from which per-image success is read.

The attacks:
    - FGSM (Goodfellow et al. 2015): one step of size eps along sign(grad) (Linf) or the
      unit gradient (L2), no random start.
    - PGD (Madry et al. 2018): random start in the ball (unless ``random_start=False``),
      ``steps`` steps of ``step_size`` (default 2.5 * eps / steps), projection after each;
      ``restarts`` fresh starts for the images not yet fooled.
    - APGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
      ensemble of diverse parameter-free attacks"): PGD with momentum 0.75 whose per-image
      step size starts at 2 * eps and halves at checkpoints where the loss stalled, restarting
      from the best point found; cross-entropy loss here.

Every attack keeps, per image, the best iterate seen: a successful one first, else the one
with the highest loss; so more steps can never make the returned point weaker.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from clipaudit.errors import ClipauditError

ATTACKS = ("fgsm", "pgd", "apgd")
NORMS = ("linf", "l2")
MODES = ("classifier", "embedding")
APGD_MOMENTUM = 0.75
APGD_RHO = 0.75


# ------------------------------------------------------------------------------- eps

def parse_eps(text: str | float, flag: str = "--eps") -> float:
    """``"4/255"``, ``"0.0157"`` or a number -> float; bad text -> :class:`ClipauditError`.

    Range is checked by :func:`check_eps` (it depends on the norm).
    """
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        raw = str(text).strip()
        try:
            if "/" in raw:
                num, den = raw.split("/", 1)
                value = float(num) / float(den)
            else:
                value = float(raw)
        except (ValueError, ZeroDivisionError):
            raise ClipauditError(f"cannot read {flag} {str(text)!r}; write a number like 0.0157 or a "
                                 "fraction like 4/255") from None
    if not math.isfinite(value):
        raise ClipauditError(f"{flag} {text!r} is not a finite number; use e.g. 4/255")
    return value


def max_eps(norm: str, image_size: int | None = None) -> float:
    """The largest meaningful budget: 1 for Linf (the pixel range); for L2 the diagonal of the
    pixel cube, sqrt(3) * S (no bound while the image size S is unknown)."""
    if norm == "linf":
        return 1.0
    return math.inf if image_size is None else math.sqrt(3.0) * image_size


def check_eps(eps: float, norm: str, image_size: int | None = None, flag: str = "--eps") -> float:
    """Raise :class:`ClipauditError` unless 0 <= eps <= :func:`max_eps`."""
    hi = max_eps(norm, image_size)
    if eps < 0:
        raise ClipauditError(f"{flag} {eps:g} is negative; the budget must be >= 0 (e.g. 4/255)")
    if eps > hi:
        what = ("Linf eps is a fraction of the pixel range [0, 1]" if norm == "linf" else
                f"an L2 eps above {hi:.1f} exceeds the diagonal of the {image_size}px pixel cube")
        raise ClipauditError(f"{flag} {eps:g} is above {hi:g}: {what}; use e.g. 4/255")
    return eps


# ------------------------------------------------------------------------- objective

def classifier_loss(logits: torch.Tensor, labels: torch.Tensor, rule: str = "softmax") -> torch.Tensor:
    """The zero-shot head's own training loss per image (B,), for the class index ``labels`` (B,).

    ``softmax`` (CLIP): cross-entropy over the classes. ``sigmoid`` (SigLIP, Zhai et al. 2023):
    the sigmoid loss of the image's row, ``-sum_j log sigmoid(s_j * z_j)`` with ``s_j = +1`` for
    the label and ``-1`` for every other class: each class is scored on its own, so pushing the
    label's probability down and another's up are separate terms, as the model was trained.
    """
    if rule == "sigmoid":
        sign = -torch.ones_like(logits, dtype=torch.float32)
        sign[torch.arange(len(logits), device=logits.device), labels] = 1.0
        return -F.logsigmoid(sign * logits.float()).sum(-1)
    return F.cross_entropy(logits, labels, reduction="none")


class Objective:
    """What an attack maximises, per image, and what counts as fooling the model.

    Modes:
        ``classifier``: the head's own loss (:func:`classifier_loss`: cross-entropy for softmax
        models, the sigmoid loss for SigLIP models) against ``labels`` (untargeted), or minus
        that loss toward ``target`` (targeted).
        ``embedding``: cosine similarity of the image embedding to ``anchor`` (a target text
        embedding (D,), targeted), or minus the cosine to the clean image embeddings
        (``anchor`` (B, D), untargeted).

    Success is read from the head either way: prediction == target (targeted) or
    prediction != label (untargeted).

    Args:
        head: a :class:`~clipaudit.model.ZeroShotHead` (pixels -> logits) or any module with
            ``audit_model`` and ``logits_from_embeddings``.
        labels: (B,) long, the class each image should keep (its true class or clean prediction).
        target: class index to reach, or None.
        mode: ``classifier`` or ``embedding``.
        anchor: L2-normalised embedding(s) for ``embedding`` mode (see above).
        eot: gradient samples averaged per attack step (Expectation over Transformation, for
            models whose forward pass is random); 1 = one plain gradient.
    """

    def __init__(self, head, labels: torch.Tensor, target: int | None = None, mode: str = "classifier",
                 anchor: torch.Tensor | None = None, eot: int = 1) -> None:
        if mode not in MODES:
            raise ClipauditError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
        if mode == "embedding" and anchor is None:
            raise ValueError("embedding mode needs an anchor embedding (target text or clean images)")
        self.head = head
        self.labels = labels.long()
        self.target = target
        self.mode = mode
        self.anchor = None if anchor is None else F.normalize(anchor.float(), dim=-1)
        self.eot = max(1, int(eot))

    def __call__(self, x: torch.Tensor, idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss (b,), logits (b, C)) for the images ``idx`` of the batch (all when None)."""
        emb = self.head.audit_model.encode_images(x, normalize=False)
        logits = self.head.logits_from_embeddings(emb)
        if self.mode == "classifier":
            rule = getattr(self.head, "rule", "softmax")
            if self.target is None:
                labels = self.labels if idx is None else self.labels[idx]
                return classifier_loss(logits, labels, rule), logits
            goal = torch.full((len(x),), self.target, dtype=torch.long, device=logits.device)
            return -classifier_loss(logits, goal, rule), logits
        e = F.normalize(emb, dim=-1)
        if self.target is not None or self.anchor.ndim == 1:
            return e @ self.anchor, logits
        anchor = self.anchor if idx is None else self.anchor[idx]
        return -(e * anchor).sum(-1), logits

    def success(self, logits: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """(b,) bool: the head's prediction reached the target / left the label."""
        pred = logits.argmax(-1)
        if self.target is not None:
            return pred == self.target
        labels = self.labels if idx is None else self.labels[idx]
        return pred != labels


# --------------------------------------------------------------------------- results

@dataclass
class AttackOutput:
    """What an attack returns for one batch.

    Attributes:
        adv: (B, 3, S, S) adversarial pixels in [0, 1] within the eps ball.
        success: (B,) bool, the head was fooled at ``adv``.
        loss: (B,) the objective at ``adv``.
        logits: (B, C) the head's logits at ``adv``.
        gradient_steps: forward+backward passes run, counted per image (cost measure).
    """

    adv: torch.Tensor
    success: torch.Tensor
    loss: torch.Tensor
    logits: torch.Tensor
    gradient_steps: int


class _Best:
    """Per-image best iterate: a successful one beats an unsuccessful one, then higher loss."""

    def __init__(self, x: torch.Tensor, n_classes: int) -> None:
        b = len(x)
        self.x = x.clone()
        self.loss = torch.full((b,), -math.inf, device=x.device)
        self.success = torch.zeros(b, dtype=torch.bool, device=x.device)
        self.logits = torch.zeros(b, n_classes, device=x.device)

    @torch.no_grad()
    def update(self, idx: torch.Tensor | None, x: torch.Tensor, loss: torch.Tensor, logits: torch.Tensor,
               success: torch.Tensor) -> None:
        sel = slice(None) if idx is None else idx
        old_s, old_l = self.success[sel], self.loss[sel]
        better = (success & ~old_s) | ((success == old_s) & (loss > old_l))
        if not bool(better.any()):
            return
        where = better.nonzero().squeeze(1)
        rows = where if idx is None else idx[where]
        self.x[rows] = x[where].detach()
        self.loss[rows] = loss[where].detach()
        self.success[rows] = success[where]
        self.logits[rows] = logits[where].detach().float()


# ------------------------------------------------------------------------ geometry

def _direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent unit step: sign (Linf) or gradient over its L2 norm (L2)."""
    if norm == "linf":
        return grad.sign()
    n = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
    return grad / n.view(-1, 1, 1, 1)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Nearest point of the eps ball around ``x`` (then clipped to [0, 1], which only shrinks
    the perturbation, so the ball constraint still holds).

    A point already in the ball (norm <= eps, boundary included) comes back unchanged; an L2
    point outside is scaled onto the sphere, a hair inside it (relative 1e-6) so float32
    rounding can never put its norm above eps."""
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        n = delta.flatten(1).double().norm(dim=1)
        outside = n > eps
        scale = torch.where(outside, eps * (1 - 1e-6) / n.clamp_min(1e-300), torch.ones_like(n))
        delta = torch.where(outside.view(-1, 1, 1, 1), delta * scale.to(delta.dtype).view(-1, 1, 1, 1), delta)
    return (x + delta).clamp(0.0, 1.0)


def random_in_ball(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator) -> torch.Tensor:
    """A random point of the eps ball around ``x``, clipped to [0, 1]: uniform per pixel (Linf)
    or a uniform direction at a uniform radius (L2)."""
    if norm == "linf":
        delta = (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * eps
    else:
        delta = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        radius = torch.rand(len(x), generator=generator, device=x.device, dtype=x.dtype) * eps
        delta = delta * (radius / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).view(-1, 1, 1, 1)
    return project(x + delta, x, eps, norm)


def random_noise(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator) -> torch.Tensor:
    """Noise at the full budget, for the "beats random noise" sanity check: uniform in
    [-eps, eps] per pixel (Linf) or a uniform direction of norm eps (L2)."""
    if norm == "linf":
        return random_in_ball(x, eps, norm, generator)
    delta = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    delta = delta * (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).view(-1, 1, 1, 1)
    return project(x + delta, x, eps, norm)


def perturbation_norms(adv: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Linf (B,), L2 (B,)) norms of ``adv - x``."""
    d = (adv.double() - x.double()).flatten(1)
    return d.abs().amax(1).float(), d.norm(dim=1).float()


# --------------------------------------------------------------------------- attacks

def _grad(objective: Objective, x: torch.Tensor, idx: torch.Tensor | None):
    """One forward+backward: (loss, logits, d loss / d x) for the sub-batch.

    With ``objective.eot`` = n > 1 the gradient is the mean over n forward+backward passes
    (Expectation over Transformation, Athalye et al. 2018), for models whose forward pass is
    random; loss and logits are those of the last pass."""
    draws = objective.eot
    total = None
    for _ in range(draws):
        xr = x.detach().requires_grad_(True)
        with torch.enable_grad():
            loss, logits = objective(xr, idx)
            (grad,) = torch.autograd.grad(loss.sum(), xr)
        total = grad if total is None else total + grad
    return loss.detach(), logits.detach(), total / draws if draws > 1 else total


def _active(best: _Best, early_stop: bool) -> torch.Tensor | None:
    """Indices still to attack (None = the whole batch, which avoids gathers)."""
    if not early_stop or not bool(best.success.any()):
        return None
    return (~best.success).nonzero().squeeze(1)


def _take(t: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
    return t if idx is None else t[idx]


def _put(t: torch.Tensor, idx: torch.Tensor | None, values: torch.Tensor) -> torch.Tensor:
    if idx is None:
        return values
    t[idx] = values
    return t


@torch.no_grad()
def _pgd_run(objective: Objective, x: torch.Tensor, best: _Best, eps: float, norm: str, steps: int,
             step_size: float, start: torch.Tensor, early_stop: bool) -> int:
    """One PGD run from ``start``; updates ``best``; returns gradient steps (per image)."""
    x_adv = start.clone()
    cost = 0
    for _ in range(steps):
        idx = _active(best, early_stop)
        if idx is not None and len(idx) == 0:
            return cost
        xa, x0 = _take(x_adv, idx), _take(x, idx)
        loss, logits, grad = _grad(objective, xa, idx)
        cost += len(xa)
        best.update(idx, xa, loss, logits, objective.success(logits, idx))
        x_adv = _put(x_adv, idx, project(xa + step_size * _direction(grad, norm), x0, eps, norm))
    idx = _active(best, early_stop)
    if idx is None or len(idx):
        xa = _take(x_adv, idx)
        loss, logits = objective(xa, idx)
        best.update(idx, xa, loss, logits, objective.success(logits, idx))
    return cost


def _apgd_checkpoints(steps: int) -> set[int]:
    """Iterations at which APGD checks progress: p0 = 0, p1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), times ``steps`` (rounded up)."""
    p = [0.0, 0.22]
    while p[-1] < 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    marks = {math.ceil(q * steps - 1e-9) for q in p[1:]}
    return {m for m in marks if m < steps}


@torch.no_grad()
def _apgd_run(objective: Objective, x: torch.Tensor, best: _Best, eps: float, norm: str, steps: int,
              start: torch.Tensor, early_stop: bool, step_size: float | None = None) -> int:
    """One APGD run (Croce & Hein 2020, algorithm 1) from ``start``; updates ``best``.

    Per image it keeps the step size ``eta`` (initially 2 eps), the best loss and point of this
    run, and counts the steps that raised the loss; at each checkpoint an image halves ``eta``
    and jumps back to its best point when fewer than rho = 75% of the steps since the last
    checkpoint raised its loss, or when neither ``eta`` nor its best loss changed since then.
    """
    b = len(x)
    dev = x.device
    eta = torch.full((b,), step_size if step_size else 2.0 * eps, device=dev)
    run_best_x = start.clone()
    run_best_loss = torch.full((b,), -math.inf, device=dev)
    run_best_grad = torch.zeros_like(x)
    increases = torch.zeros(b, device=dev)
    last_eta = eta.clone()
    last_best = run_best_loss.clone()
    reduced_last = torch.zeros(b, dtype=torch.bool, device=dev)
    prev_loss = torch.full((b,), -math.inf, device=dev)
    checkpoints = sorted(_apgd_checkpoints(steps))
    last_ck = 0
    x_prev = start.clone()
    x_cur = start.clone()
    cost = 0
    for k in range(steps):
        idx = _active(best, early_stop)
        if idx is not None and len(idx) == 0:
            return cost
        xa = _take(x_cur, idx)
        loss, logits, grad = _grad(objective, xa, idx)
        cost += len(xa)
        best.update(idx, xa, loss, logits, objective.success(logits, idx))
        sel = slice(None) if idx is None else idx
        if k > 0:
            increases[sel] += (loss > prev_loss[sel]).float()
        prev_loss[sel] = loss
        improved = loss > run_best_loss[sel]
        run_best_loss[sel] = torch.where(improved, loss, run_best_loss[sel])
        imp = improved.view(-1, 1, 1, 1)
        run_best_x[sel] = torch.where(imp, xa, run_best_x[sel])
        run_best_grad[sel] = torch.where(imp, grad, run_best_grad[sel])
        if k in checkpoints:
            span = k - last_ck
            stalled = increases < APGD_RHO * span
            stuck = ~reduced_last & (last_best >= run_best_loss)
            cut = stalled | stuck
            eta = torch.where(cut, eta / 2, eta)
            x_cur = torch.where(cut.view(-1, 1, 1, 1), run_best_x, x_cur)
            if idx is None:
                grad = torch.where(cut.view(-1, 1, 1, 1), run_best_grad, grad)
            else:
                grad = torch.where(cut[idx].view(-1, 1, 1, 1), run_best_grad[idx], grad)
            reduced_last, last_best, last_eta = cut, run_best_loss.clone(), eta.clone()
            increases.zero_()
            last_ck = k
        xa = _take(x_cur, idx)
        x0 = _take(x, idx)
        e = _take(eta, idx).view(-1, 1, 1, 1)
        z = project(xa + e * _direction(grad, norm), x0, eps, norm)
        if k == 0:
            nxt = z
        else:
            xp = _take(x_prev, idx)
            nxt = project(xa + APGD_MOMENTUM * (z - xa) + (1 - APGD_MOMENTUM) * (xa - xp), x0, eps, norm)
        x_prev = _put(x_prev, idx, xa.clone()) if idx is not None else xa.clone()
        x_cur = _put(x_cur, idx, nxt)
    del last_eta
    idx = _active(best, early_stop)
    if idx is None or len(idx):
        xa = _take(x_cur, idx)
        loss, logits = objective(xa, idx)
        best.update(idx, xa, loss, logits, objective.success(logits, idx))
    return cost


def attack(objective: Objective, x: torch.Tensor, attack: str = "pgd", eps: float = 4 / 255,
           norm: str = "linf", steps: int = 10, restarts: int = 1, step_size: float | None = None,
           seed: int = 0, early_stop: bool = True, n_classes: int | None = None,
           random_start: bool = True) -> AttackOutput:
    """Attack one batch of pixels.

    Args:
        objective: an :class:`Objective` (built on the zero-shot head over the class list).
        x: (B, 3, S, S) clean pixels in [0, 1] on the model's device.
        attack: ``fgsm``, ``pgd`` or ``apgd``.
        eps: budget in pixel units (``4/255`` is 0.0157); Linf or L2 by ``norm``.
        steps: gradient steps per restart (FGSM always takes one).
        restarts: random restarts (PGD, APGD) for the images not yet fooled.
        step_size: PGD step (default 2.5 * eps / steps); APGD initial step (default 2 * eps).
        seed: seed of the random starts.
        early_stop: stop attacking an image once it is fooled (same results, less compute).
        n_classes: width of the logits (default: the head's class count).
        random_start: PGD and APGD start from a random point of the ball (Madry et al.); False
            starts them at ``x`` itself, which makes the attack deterministic (a restart would
            repeat the same run, so only one runs). FGSM never starts randomly.

    Returns:
        :class:`AttackOutput` with adversarial pixels (B, 3, S, S), success (B,), loss (B,),
        logits (B, C) and the gradient-step count.

    Raises:
        ClipauditError: unknown attack or norm, eps out of range, steps or restarts < 1.

    Example:
        >>> head = model.classifier(["apple", "pizza"])
        >>> y = head(x).argmax(-1)
        >>> out = attack(Objective(head, y), x, "pgd", eps=8 / 255, steps=10)
        >>> out.success.float().mean()
    """
    if attack not in ATTACKS:
        raise ClipauditError(f"unknown attack {attack!r}; valid: {', '.join(ATTACKS)}")
    if norm not in NORMS:
        raise ClipauditError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    check_eps(float(eps), norm, x.shape[-1])
    if int(steps) < 1:
        raise ClipauditError(f"--steps must be >= 1, got {steps}")
    if int(restarts) < 1:
        raise ClipauditError(f"--restarts must be >= 1, got {restarts}")
    if step_size is not None and not step_size > 0:
        raise ClipauditError(f"--step-size must be > 0, got {step_size}")
    x = x.detach().float()
    if n_classes is None:
        n_classes = len(objective.head.classnames)
    best = _Best(x, n_classes)
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    cost = 0
    if attack == "fgsm":
        cost += _pgd_run(objective, x, best, eps, norm, 1, eps if step_size is None else step_size, x,
                         early_stop)
    else:
        for r in range(int(restarts) if random_start else 1):
            if r and early_stop and bool(best.success.all()):
                break
            start = random_in_ball(x, eps, norm, gen) if random_start else x
            if attack == "pgd":
                alpha = step_size if step_size is not None else 2.5 * eps / steps
                cost += _pgd_run(objective, x, best, eps, norm, int(steps), alpha, start, early_stop)
            else:
                cost += _apgd_run(objective, x, best, eps, norm, int(steps), start, early_stop, step_size)
    return AttackOutput(best.x, best.success.clone(), best.loss, best.logits, cost)


def classifier_attack(head, x: torch.Tensor, labels: torch.Tensor | None = None, target: int | None = None,
                      **kwargs) -> AttackOutput:
    """Attack the zero-shot ``head`` directly: untargeted against ``labels`` (default: the
    clean predictions) or targeted toward class index ``target``. ``kwargs`` go to :func:`attack`."""
    if labels is None:
        with torch.no_grad():
            labels = head(x).argmax(-1)
    return attack(Objective(head, labels, target, "classifier"), x, **kwargs)


ObjectiveFactory = Callable[[torch.Tensor], Objective]
