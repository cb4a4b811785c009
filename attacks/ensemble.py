"""The worst case over an attack ensemble: APGD-CE, APGD-T (DLR loss) and Square, AutoAttack-style.

Method: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks" (ICML 2020; reference code ``fra31/auto-attack``), and Andriushchenko,
Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box adversarial attack via
random search" (ECCV 2020). An image counts as robust only when *every* attack of the ensemble
failed on it (the pointwise worst case); attacks run in sequence on the images still standing,
so an image broken early costs nothing more.

Conventions: pixels (B, 3, S, S) in [0, 1]; ``head`` is a zero-shot head (pixels -> logits
(B, C)); ``labels`` (B,) the class each image should keep. Success is always untargeted
(prediction != label): APGD-T's targets only steer the search.

Where this differs from the reference on purpose:
    - Square draws its window position and channel signs per image (the paper's algorithm),
      where ``auto-attack``/torchattacks draw one window per batch step; results no longer
      depend on which images share a batch. No resampling of an unchanged window.
    - APGD-T's targets are the ``n_targets`` highest-scoring wrong classes of the clean image,
      as in the reference, capped at C - 1; with fewer than 4 classes the targeted DLR loss is
      undefined and APGD-T is skipped (recorded, never silent).
    - FAB-T is not included (optional in the issue; AutoAttack's standard version finds almost
      nothing with it that APGD-T misses).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from clipaudit.attacks.adversarial import Objective, _Best, _apgd_run, attack, random_in_ball
from clipaudit.errors import ClipauditError

ENSEMBLE = ("apgd-ce", "apgd-t", "square")
DLR_EPS = 1e-12
SQUARE_P_INIT = 0.8


# ------------------------------------------------------------------------------ losses

def dlr_targeted_loss(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Targeted DLR loss (Croce & Hein 2020, eq. 7), to maximise: (B,).

    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` with ``z_pi`` the logits sorted in
    decreasing order; invariant to shifting and scaling the logits (so to CLIP's temperature).

    Raises:
        ValueError: fewer than 4 classes.
    """
    if logits.shape[-1] < 4:
        raise ValueError(f"the targeted DLR loss needs at least 4 classes, got {logits.shape[-1]}")
    z = logits.float()
    srt = z.sort(dim=-1, descending=True).values
    rows = torch.arange(len(z), device=z.device)
    num = z[rows, labels] - z[rows, targets]
    den = srt[:, 0] - (srt[:, 2] + srt[:, 3]) / 2 + DLR_EPS
    return -num / den


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{j != y} z_j`` (B,): below 0 exactly when the image is misclassified."""
    z = logits.float()
    rows = torch.arange(len(z), device=z.device)
    true = z[rows, labels]
    others = z.clone()
    others[rows, labels] = -math.inf
    return true - others.amax(-1)


class TargetedDLRObjective(Objective):
    """APGD-T's objective: the targeted DLR loss toward per-image ``targets`` (B,), success
    untargeted (prediction != label)."""

    def __init__(self, head, labels: torch.Tensor, targets: torch.Tensor, eot: int = 1) -> None:
        super().__init__(head, labels, None, "classifier", eot=eot)
        self.targets = targets.long()

    def __call__(self, x: torch.Tensor, idx: torch.Tensor | None = None):
        emb = self.head.audit_model.encode_images(x, normalize=False)
        logits = self.head.logits_from_embeddings(emb)
        labels = self.labels if idx is None else self.labels[idx]
        targets = self.targets if idx is None else self.targets[idx]
        return dlr_targeted_loss(logits, labels, targets), logits


# ------------------------------------------------------------------------------ Square

def square_p(i: int, queries: int, p_init: float = SQUARE_P_INIT) -> float:
    """Share of pixels the square covers at iteration ``i``: ``p_init`` halved at iterations 10,
    50, 200, 500, 1000, 2000, 4000, 6000, 8000 of a 10,000-query run, rescaled to ``queries``."""
    it = int(i / queries * 10000)
    for k, mark in enumerate((10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)):
        if it <= mark:
            return p_init / 2 ** k
    return p_init / 512


@dataclass
class SquareOutput:
    """adv (B, 3, S, S); success (B,) bool; margin (B,) at adv; queries (B,) forward passes spent."""

    adv: torch.Tensor
    success: torch.Tensor
    margin: torch.Tensor
    queries: torch.Tensor


@torch.no_grad()
def square_attack(head, x: torch.Tensor, labels: torch.Tensor, eps: float, queries: int = 5000,
                  seed: int = 0, p_init: float = SQUARE_P_INIT) -> SquareOutput:
    """Linf Square attack (Andriushchenko et al. 2020), untargeted, margin loss.

    Start: vertical stripes of +-eps per column and channel. Each step sets a random square
    window (side ``round(sqrt(p * S * S))``, ``p`` from :func:`square_p`) of each image still
    standing to +-eps per channel and keeps the change when the margin drops; an image stops
    when its margin is below 0. ``queries`` counts forward passes per image, the start included.

    Raises:
        ClipauditError: ``queries`` < 1 or ``eps`` outside [0, 1].
    """
    if int(queries) < 1:
        raise ClipauditError(f"--queries must be >= 1 (Square's forward passes per image), got {queries}")
    if not 0 <= eps <= 1:
        raise ClipauditError(f"Square eps {eps:g} is outside [0, 1]")
    x = x.detach().float()
    b, c, h, w = x.shape
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    stripes = torch.randint(0, 2, (b, c, 1, w), generator=gen, device=x.device).float() * 2 - 1
    best = (x + eps * stripes).clamp(0, 1)
    cur_margin = margin(head(best), labels)
    used = torch.ones(b, device=x.device)
    rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
    for i in range(int(queries) - 1):
        idx = (cur_margin > 0).nonzero().squeeze(1)
        if len(idx) == 0:
            break
        n = len(idx)
        side = min(max(int(round(math.sqrt(square_p(i, queries, p_init) * h * w))), 1), h, w)
        top = torch.randint(0, h - side + 1, (n,), generator=gen, device=x.device).view(n, 1, 1, 1)
        left = torch.randint(0, w - side + 1, (n,), generator=gen, device=x.device).view(n, 1, 1, 1)
        window = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
        signs = torch.randint(0, 2, (n, c, 1, 1), generator=gen, device=x.device).float() * 2 - 1
        x0, xb = x[idx], best[idx]
        cand = torch.where(window, x0 + eps * signs, xb).clamp(0, 1)  # in the ball: xb is, the window is at +-eps
        m = margin(head(cand), labels[idx])
        used[idx] += 1
        better = m < cur_margin[idx]
        if bool(better.any()):
            keep = idx[better]
            best[keep] = cand[better]
            cur_margin[keep] = m[better]
    return SquareOutput(best, cur_margin <= 0, cur_margin, used)


# ---------------------------------------------------------------------------- ensemble

@dataclass(frozen=True)
class EnsembleSettings:
    """Budgets of the ensemble (AutoAttack's standard version: 100 steps, 9 targets, 5000 queries).

    Attributes:
        attacks: which of ``apgd-ce``, ``apgd-t``, ``square`` run, in this order.
        steps: APGD iterations per run (APGD-CE: one run; APGD-T: one run per target).
        n_targets: APGD-T target classes per image (the top wrong classes), capped at C - 1.
        queries: Square's forward passes per image.
        individual: also run every attack on every clean-correct image (each attack's own
            robust accuracy, for per-attack curves and the masking checks); costs more.
        eot: gradients averaged over this many forward passes (EOT, for random forward passes).
    """

    attacks: tuple[str, ...] = ENSEMBLE
    steps: int = 100
    n_targets: int = 9
    queries: int = 5000
    individual: bool = False
    eot: int = 1

    def check(self) -> "EnsembleSettings":
        bad = [a for a in self.attacks if a not in ENSEMBLE]
        if bad or not self.attacks:
            raise ClipauditError(f"unknown --ensemble attack {bad[0] if bad else '(none)'!r}; "
                                 f"valid: {', '.join(ENSEMBLE)}")
        if int(self.steps) < 1:
            raise ClipauditError(f"--steps must be >= 1 for the ensemble's APGD runs, got {self.steps}")
        if int(self.n_targets) < 1:
            raise ClipauditError(f"--n-targets must be >= 1, got {self.n_targets}")
        if int(self.queries) < 1:
            raise ClipauditError(f"--queries must be >= 1 (Square's forward passes per image), got {self.queries}")
        if int(self.eot) < 1:
            raise ClipauditError(f"--eot must be >= 1 (gradient samples per step), got {self.eot}")
        return self


@dataclass
class EnsembleOutput:
    """Per-image outcome of the ensemble at one eps.

    Attributes:
        adv: (B, 3, S, S) the worst-case point: where the first attack that broke the image left
            it, else the last attack's best point.
        clean_correct: (B,) bool, the clean prediction equals the label.
        robust: attack -> (B,) bool or None per image: True survived, False broken, None not
            attacked (already broken in sequence, or not clean-correct).
        worst: (B,) bool, robust to every attack run (False for clean errors).
        broken_by: (B,) the first attack that broke each image, ``clean`` for clean errors, ``""``
            for images that survived.
        cost: attack -> forward(+backward) passes summed over images.
        skipped: attack -> why it did not run (e.g. APGD-T with < 4 classes).
    """

    adv: torch.Tensor
    clean_correct: torch.Tensor
    robust: dict[str, list]
    worst: torch.Tensor
    broken_by: list[str]
    cost: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _top_wrong(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) the k highest-scoring classes other than the label, best first."""
    z = logits.float().clone()
    z[torch.arange(len(z)), labels] = -math.inf
    return z.topk(k, dim=-1).indices


def _run_one(name: str, head, x: torch.Tensor, labels: torch.Tensor, eps: float, norm: str,
             settings: EnsembleSettings, seed: int, clean_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Run one ensemble member on ``x``: (adv, success (b,), cost)."""
    n_classes = clean_logits.shape[-1]
    if name == "apgd-ce":
        out = attack(Objective(head, labels, eot=settings.eot), x, "apgd", eps=eps, norm=norm,
                     steps=int(settings.steps), seed=seed, n_classes=n_classes)
        return out.adv, out.success, out.gradient_steps
    if name == "apgd-t":
        k = min(int(settings.n_targets), n_classes - 1)
        targets = _top_wrong(clean_logits, labels, k)
        best = _Best(x.detach().float(), n_classes)
        gen = torch.Generator(device=x.device).manual_seed(int(seed))
        cost = 0
        for r in range(k):
            if bool(best.success.all()):
                break
            obj = TargetedDLRObjective(head, labels, targets[:, r], eot=settings.eot)
            best.loss.fill_(-math.inf)  # each target has its own loss scale; a success is kept anyway
            start = random_in_ball(x, eps, norm, gen)
            cost += _apgd_run(obj, x.detach().float(), best, eps, norm, int(settings.steps), start, True)
        return best.x, best.success.clone(), cost
    if norm != "linf":
        raise ClipauditError("Square is implemented for the linf norm only; use --norm linf or drop square "
                             "from the ensemble")
    out = square_attack(head, x, labels, eps, int(settings.queries), seed)
    return out.adv, out.success, int(out.queries.sum())


@torch.no_grad()
def run_ensemble(head, x: torch.Tensor, labels: torch.Tensor, eps: float, norm: str = "linf",
                 settings: EnsembleSettings = EnsembleSettings(), seed: int = 0) -> EnsembleOutput:
    """The ensemble's pointwise worst case on one batch (see the module docstring).

    Args:
        head: zero-shot head (pixels -> logits (B, C)).
        x: (B, 3, S, S) clean pixels in [0, 1].
        labels: (B,) long, true classes (or clean predictions).
        eps: budget in pixel units; norm ``linf`` (all attacks) or ``l2`` (APGD only).

    Returns:
        :class:`EnsembleOutput`.

    Raises:
        ClipauditError: bad settings; Square with ``l2``.
    """
    settings.check()
    x = x.detach().float()
    labels = labels.long()
    clean_logits = head(x)
    correct = clean_logits.argmax(-1) == labels
    adv = x.clone()
    standing = correct.clone()
    robust: dict[str, list] = {}
    broken_by = ["" if bool(c) else "clean" for c in correct]
    cost: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for j, name in enumerate(settings.attacks):
        if name == "apgd-t" and clean_logits.shape[-1] < 4:
            skipped[name] = f"the targeted DLR loss needs >= 4 classes; this head has {clean_logits.shape[-1]}"
            continue
        pool = correct if settings.individual else standing
        idx = pool.nonzero().squeeze(1)
        col: list = [None] * len(x)
        cost[name] = 0
        if len(idx):
            with torch.enable_grad():
                a, success, c = _run_one(name, head, x[idx], labels[idx], eps, norm, settings, seed + 1009 * j,
                                         clean_logits[idx])
            cost[name] = int(c)
            for k, i in enumerate(idx.tolist()):
                col[i] = not bool(success[k])
                if bool(success[k]) and bool(standing[i]):
                    standing[i] = False
                    broken_by[i] = name
                    adv[i] = a[k]
                elif bool(standing[i]):
                    adv[i] = a[k]
        robust[name] = col
    return EnsembleOutput(adv, correct, robust, standing.clone(), broken_by, cost, skipped)
