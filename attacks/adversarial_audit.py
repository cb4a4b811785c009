"""Measure how far a gradient attack moves a CLIP's zero-shot predictions, and check the
attack was real.

Why the sanity checks ride along with every run: a robust-looking number is most often a
broken attack (masked gradients, fp16, a wrong normalisation, too few steps). Each run
therefore also reports that eps = 0 changes nothing, that more steps are never weaker, that the
attack beats uniform random noise of the same budget, that every image stays inside the eps ball
and [0, 1], and (with a sweep) that robust accuracy does not rise with eps.

Definitions (per image; "label" is the true class when the source has one in the class list,
else the clean prediction):
    clean_accuracy: clean prediction == true class (images with a known true class).
    robust_accuracy: prediction on the adversarial image == true class (same images).
    attack_success_rate: untargeted, share of images predicted as their label when clean that
        no longer are; targeted, share of images whose label is not the target that are
        predicted as the target.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch

from clipaudit import contract
from clipaudit.audits import Audit, Headline, PairedMetric, column
from clipaudit.attacks.adversarial import (ATTACKS, MODES, NORMS, Objective, attack, check_eps,
                                           perturbation_norms, random_noise)
from clipaudit.data import ImageSource
from clipaudit.errors import ClipauditError
from clipaudit.model import AuditModel, in_eval_mode
from clipaudit.result import Result
from clipaudit.stats import proportion_ci
from clipaudit.zeroshot import iterate, read_templates, require_classes, resolve_classes

SECTION = "adversarial"
NORM_TOLERANCE = 1e-6
DEFAULT_STEPS = 10


@dataclass(frozen=True)
class AdversarialConfig:
    """One field per ``clipaudit adversarial`` flag.

    Attributes:
        target: class to push images toward (added to the class list when missing); None = untargeted.
        attack: ``fgsm`` | ``pgd`` | ``apgd``.
        eps: budget in pixel units (4/255 = 0.0157); Linf must be in [0, 1].
        norm: ``linf`` | ``l2``.
        steps: gradient steps per restart; None = 10 for PGD and APGD, 1 for FGSM (which takes
            exactly one step: any other number is refused, so the record never claims more).
        restarts: random restarts (PGD, APGD); FGSM takes exactly 1.
        step_size: PGD step (default 2.5 eps / steps) or APGD's initial step (default 2 eps).
            Refused above eps for FGSM and PGD (a longer step is cut back by the projection
            every time: almost always eps typed in 1/255 units by mistake) and above 2 eps for
            APGD (its own default start), against the main eps and every positive sweep eps.
        random_start: PGD and APGD start from a random point of the ball (False: from the clean
            image, deterministic; one restart).
        mode: ``classifier`` (cross-entropy on the zero-shot head) or ``embedding`` (cosine to
            the target text, or away from the clean image embedding).
        eps_sweep: budgets for the robust-accuracy-vs-eps curve (the main eps is always in it).
        classes: class-list file (default: toy object classes / class folders).
        templates: prompt-template file (default: "a photo of a {}.").
        batch_size: images attacked together.
        early_stop: stop attacking an image once it is fooled (same results, less compute).
        sanity_n: images used for the sanity checks.
        examples: clean / perturbation / adversarial triplets drawn in the figure.
        seed: seed of random starts, noise and bootstrap.
        protocol: ``autoattack`` or ``robust-clip`` (:mod:`clipaudit.attacks.protocol`): the
            worst case over ``ensemble`` instead of one attack; None = the single ``attack``.
        ensemble: the protocol's attacks, in order (``apgd-ce``, ``apgd-t``, ``square``).
        n_targets: APGD-T target classes per image. queries: Square's forward passes per image.
        individual: run each ensemble attack on every image too (per-attack robust accuracy).
        bpda: differentiate through the model's non-differentiable input stage as the identity.
        eot: gradients averaged over this many forward passes (random input stages).
    """

    target: str | None = None
    attack: str = "pgd"
    eps: float = 4 / 255
    norm: str = "linf"
    steps: int | None = None
    restarts: int = 1
    step_size: float | None = None
    random_start: bool = True
    mode: str = "classifier"
    eps_sweep: tuple[float, ...] = ()
    classes: str | None = None
    templates: str | None = None
    batch_size: int = 32
    early_stop: bool = True
    sanity_n: int = 32
    examples: int = 4
    seed: int = 0
    protocol: str | None = None
    ensemble: tuple[str, ...] = ("apgd-ce", "apgd-t", "square")
    n_targets: int = 9
    queries: int = 5000
    individual: bool = False
    bpda: bool = False
    eot: int = 1

    def __post_init__(self) -> None:
        if self.steps is None:
            default = 100 if self.protocol else DEFAULT_STEPS
            object.__setattr__(self, "steps", 1 if self.attack == "fgsm" and not self.protocol else default)
        object.__setattr__(self, "ensemble", tuple(self.ensemble))

    def validate(self, image_size: int | None = None) -> "AdversarialConfig":
        """Raise :class:`ClipauditError` on the first bad field (before any work is done)."""
        if self.attack not in ATTACKS and not (self.protocol and self.attack == "ensemble"):
            raise ClipauditError(f"unknown --attack {self.attack!r}; valid: {', '.join(ATTACKS)}")
        if self.norm not in NORMS:
            raise ClipauditError(f"unknown --norm {self.norm!r}; valid: {', '.join(NORMS)}")
        if self.mode not in MODES:
            raise ClipauditError(f"unknown --mode {self.mode!r}; valid: {', '.join(MODES)}")
        check_eps(float(self.eps), self.norm, image_size)
        for e in self.eps_sweep:
            check_eps(float(e), self.norm, image_size, flag="--eps-sweep value")
        if int(self.steps) < 1:
            raise ClipauditError(f"--steps must be >= 1, got {self.steps}; PGD-10 is a sensible minimum")
        if int(self.restarts) < 1:
            raise ClipauditError(f"--restarts must be >= 1, got {self.restarts}")
        if self.attack == "fgsm" and (int(self.steps) != 1 or int(self.restarts) != 1):
            raise ClipauditError(f"FGSM takes exactly one step from the clean image, but got --steps {self.steps} "
                                 f"--restarts {self.restarts}; drop them, or use --attack pgd for more steps")
        if self.step_size is not None and not float(self.step_size) > 0:
            raise ClipauditError(f"--step-size must be > 0, got {self.step_size}; omit it for the default")
        self._check_step_size()
        if int(self.batch_size) < 1:
            raise ClipauditError(f"--batch-size must be >= 1, got {self.batch_size}")
        if int(self.sanity_n) < 1:
            raise ClipauditError(f"--sanity-n must be >= 1, got {self.sanity_n}")
        if self.target is not None and not str(self.target).strip():
            raise ClipauditError("--target is empty; give a class name such as pizza, or omit it")
        if self.mode == "embedding" and self.target is None and self.attack == "fgsm" and self.eps == 0:
            pass  # allowed: a no-op run that still reports the sanity checks
        self._check_protocol()
        return self

    def _check_protocol(self) -> None:
        from clipaudit.attacks.ensemble import EnsembleSettings
        from clipaudit.attacks.protocol import ROBUST_CLIP_EPS, check_protocol_name

        if int(self.eot) < 1:
            raise ClipauditError(f"--eot must be >= 1 (gradient samples per step), got {self.eot}")
        if self.protocol is None:
            return
        check_protocol_name(self.protocol)
        EnsembleSettings(self.ensemble, int(self.steps), int(self.n_targets), int(self.queries),
                         self.individual, int(self.eot)).check()
        if self.target is not None or self.mode != "classifier":
            raise ClipauditError(f"--protocol {self.protocol} measures untargeted zero-shot robustness; drop "
                                 "--target / --mode embedding, or drop --protocol for a single targeted attack")
        if self.norm != "linf" and "square" in self.ensemble:
            raise ClipauditError(f"--protocol {self.protocol} includes Square, which is l-inf only here; use "
                                 "--norm linf")
        if self.protocol == "robust-clip" and (float(self.eps) not in ROBUST_CLIP_EPS
                                               or not {float(e) for e in self.eps_sweep} <= set(ROBUST_CLIP_EPS)):
            raise ClipauditError("--protocol robust-clip fixes eps at 2/255 and 4/255; drop --eps/--eps-sweep, "
                                 "or use --protocol autoattack --eps X for another budget")

    def _check_step_size(self) -> None:
        if self.step_size is None:
            return
        factor = 2.0 if self.attack == "apgd" else 1.0
        budgets = [float(e) for e in (self.eps, *self.eps_sweep) if float(e) > 0]
        if not budgets or float(self.step_size) <= factor * min(budgets):
            return
        what = "2 x eps (APGD's own first step)" if factor == 2 else "eps"
        raise ClipauditError(f"--step-size {self.step_size:g} is above {what} = {factor * min(budgets):g} "
                             f"(smallest positive eps {min(budgets):g}): the projection would cut every step "
                             f"back; pass it in pixel units (e.g. 1/255) or omit it for the default")

    def record(self) -> dict:
        d = asdict(self)
        d["eps_sweep"] = list(self.eps_sweep)
        return d


# ----------------------------------------------------------------------- preparation

def _check_target_addable(model: AuditModel, target: str, templates: list[str]) -> None:
    """A target the text tower cannot read whole is not addable: its prompt would be cut."""
    tokens = model.tokenizer([t.format(target) for t in templates])
    if bool((tokens[:, -1] != 0).any()):
        raise ClipauditError(f"--target {target!r} is too long for {model.name}'s text context "
                             f"({tokens.shape[1]} tokens, prompt cut off); use a shorter class name")


@dataclass
class _Setup:
    head: object
    classes: list[str]
    added: list[str]
    target_index: int | None
    target_embedding: torch.Tensor | None


def prepare(model: AuditModel, source: ImageSource, config: AdversarialConfig) -> _Setup:
    """Class list (target added when missing), zero-shot head and the target's text embedding."""
    if model.precision != "fp32":
        raise ClipauditError(f"attacks need fp32 gradients (fp16 and bf16 can mask them); got "
                             f"--precision {model.precision}; rerun with --precision fp32")
    config.validate(model.image_size)
    templates = read_templates(config.templates)
    target = str(config.target).strip() if config.target is not None else None
    if target is not None:
        _check_target_addable(model, target, templates)
    classes, added = resolve_classes(model, config.classes, source, add=[target] if target else [])
    require_classes(classes, "attack success and robust accuracy")
    head = model.classifier(classes, templates)
    t_idx = classes.index(target) if target else None
    t_emb = head.weights[t_idx].detach().clone() if target else None
    return _Setup(head, classes, added, t_idx, t_emb)


def _labels_for(meta: pd.DataFrame, classes: list[str]) -> list[str]:
    """The true class of each image when the source has one in the class list, else ''."""
    if "label" not in meta:
        return [""] * len(meta)
    known = set(classes)
    return [str(l) if str(l) in known else "" for l in meta["label"]]


def reference_labels(true: list[str], clean_pred: torch.Tensor, classes: list[str]) -> torch.Tensor:
    """(B,) the class each image should keep: its true class when known (``true`` from
    :func:`_labels_for`), else its clean prediction."""
    return torch.tensor([classes.index(t) if t else int(p) for t, p in zip(true, clean_pred.tolist())],
                        device=clean_pred.device)


def image_row(img_id: str, true: str, label: int, pred_clean: int, pred_adv: int, classes: list[str], eps: float,
              linf: float, l2: float, norm: str, target: int | None = None) -> dict:
    """One image's row of ``adversarial_images`` (see the module docstring for the definitions):
    untargeted, an image wrong before the attack is excluded; targeted, one whose label is the target."""
    known = bool(true)
    if target is not None:
        excluded = label == target
        success = (pred_adv == target) if not excluded else None
    else:
        excluded = pred_clean != label
        success = (pred_adv != label) if not excluded else None
    return {"id": img_id, "true_class": true, "pred_clean": classes[pred_clean], "pred_adv": classes[pred_adv],
            "correct_clean": (pred_clean == label) if known else None,
            "correct_adv": (pred_adv == label) if known else None,
            "success": success, "excluded": excluded, "norm": linf if norm == "linf" else l2, "eps": eps,
            "linf": linf, "l2": l2, "label_source": "true" if known else "clean_pred"}


def _objective(setup: _Setup, config: AdversarialConfig, labels: torch.Tensor,
               clean_emb: torch.Tensor) -> Objective:
    if config.mode == "classifier":
        return Objective(setup.head, labels, setup.target_index, "classifier", eot=config.eot)
    anchor = setup.target_embedding if setup.target_index is not None else clean_emb
    return Objective(setup.head, labels, setup.target_index, "embedding", anchor, eot=config.eot)


def _run_attack(setup: _Setup, config: AdversarialConfig, x: torch.Tensor, labels: torch.Tensor,
                clean_emb: torch.Tensor, eps: float, seed: int, **override):
    kw = dict(attack=config.attack, eps=eps, norm=config.norm, steps=config.steps, restarts=config.restarts,
              step_size=config.step_size, seed=seed, early_stop=config.early_stop,
              random_start=config.random_start)
    kw.update(override)
    if kw["attack"] != config.attack and "step_size" not in override:
        kw["step_size"] = None
    return attack(_objective(setup, config, labels, clean_emb), x, n_classes=len(setup.classes), **kw)


# ------------------------------------------------------------------------ one pass

@dataclass
class _Pass:
    """Per-image outcomes of attacking the whole source at one eps."""

    rows: list[dict] = field(default_factory=list)
    examples: list[tuple] = field(default_factory=list)
    sanity_x: list[torch.Tensor] = field(default_factory=list)
    sanity_labels: list[torch.Tensor] = field(default_factory=list)
    sanity_emb: list[torch.Tensor] = field(default_factory=list)
    sanity_meta: list[str] = field(default_factory=list)
    adv_kept: list[torch.Tensor] = field(default_factory=list)
    worst_violation: float = 0.0
    gradient_steps: int = 0


def _attack_source(model: AuditModel, source: ImageSource, setup: _Setup, config: AdversarialConfig,
                   eps: float, progress: Callable | None, keep: bool, transfer_head=None,
                   desc: str = "attack") -> _Pass:
    """Attack every loadable image of ``source`` at ``eps``; one row per image."""
    out = _Pass()
    seed = config.seed
    classes = setup.classes
    for b_i, batch in enumerate(iterate(source, model, config.batch_size, progress, desc=desc)):
        x = batch.pixels.float()
        true = _labels_for(batch.meta, classes)
        with torch.no_grad():
            clean_emb = model.encode_images(x, normalize=True)
            clean_logits = setup.head.logits_from_embeddings(clean_emb)
        clean_pred = clean_logits.argmax(-1)
        ref = reference_labels(true, clean_pred, classes)
        res = _run_attack(setup, config, x, ref, clean_emb, eps, seed + 7919 * b_i)
        out.gradient_steps += res.gradient_steps
        adv = res.adv
        with torch.no_grad():
            adv_logits = setup.head(adv)
        adv_pred = adv_logits.argmax(-1)
        linf, l2 = perturbation_norms(adv, x)
        norm = linf if config.norm == "linf" else l2
        lo, hi = float(adv.min()), float(adv.max())
        out.worst_violation = max(out.worst_violation, float(norm.max()) - eps, -lo, hi - 1.0)
        p_clean, p_adv = setup.head.probabilities(clean_logits).cpu(), setup.head.probabilities(adv_logits).cpu()
        t_idx = setup.target_index
        tr_pred = None
        if transfer_head is not None:
            with torch.no_grad():
                tr_pred = transfer_head(adv.to(transfer_head.weights.device)).argmax(-1).cpu()
                tr_clean = transfer_head(x.to(transfer_head.weights.device)).argmax(-1).cpu()
        for i, img_id in enumerate(batch.ids):
            known = bool(true[i])
            label = int(ref[i])
            pa = int(adv_pred[i])
            row = image_row(img_id, true[i], label, int(clean_pred[i]), pa, classes, eps, float(linf[i]),
                            float(l2[i]), config.norm, t_idx)
            row.update(p_label_clean=float(p_clean[i, label]), p_label_adv=float(p_adv[i, label]),
                       p_pred_adv=float(p_adv[i, pa]))
            if t_idx is not None:
                row["p_target_clean"] = float(p_clean[i, t_idx])
                row["p_target_adv"] = float(p_adv[i, t_idx])
            if tr_pred is not None:
                row["pred_transfer_clean"] = classes[int(tr_clean[i])]
                row["pred_transfer_adv"] = classes[int(tr_pred[i])]
                row["correct_transfer_adv"] = (int(tr_pred[i]) == label) if known else None
                row["correct_transfer_clean"] = (int(tr_clean[i]) == label) if known else None
            out.rows.append(row)
        if keep:
            n_have = sum(len(s) for s in out.sanity_x)
            if n_have < config.sanity_n:
                k = config.sanity_n - n_have
                out.sanity_x.append(x[:k].cpu())
                out.sanity_labels.append(ref[:k].cpu())
                out.sanity_emb.append(clean_emb[:k].cpu())
            if len(out.examples) < config.examples:
                batch_rows = out.rows[-len(x):]
                order = sorted(range(len(x)), key=lambda i: batch_rows[i]["success"] is not True)
                for i in order[:config.examples - len(out.examples)]:
                    out.examples.append((batch.ids[i], x[i].cpu(), adv[i].cpu(), p_clean[i].numpy(),
                                         p_adv[i].numpy(), true[i] or classes[int(ref[i])]))
    return out


# --------------------------------------------------------------------------- tables

def _rate(values: pd.Series) -> tuple[float, int, int]:
    v = values.dropna().astype(bool)
    return (float(v.mean()) if len(v) else float("nan"), int(v.sum()), len(v))


def _ci(k: int, n: int) -> list[float]:
    """The Wilson interval of ``k / n`` (:func:`clipaudit.stats.proportion_ci`) as a JSON pair."""
    return list(proportion_ci(k, n))


def curve_row(images: pd.DataFrame, eps: float, seed: int) -> dict:
    clean, _, _ = _rate(images["correct_clean"])
    robust, k, n = _rate(images["correct_adv"])
    asr, _, _ = _rate(images["success"])
    lo, hi = _ci(k, n)
    return {"eps": eps, "n": len(images), "clean_accuracy": clean, "robust_accuracy": robust, "ci_low": lo,
            "ci_high": hi, "attack_success_rate": asr, "mean_norm": float(images["norm"].mean()),
            "max_norm": float(images["norm"].max())}


def by_class_table(images: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Clean and robust accuracy per true class, with Wilson intervals of the robust rate."""
    known = images[images["true_class"] != ""]
    cols = ["class", "n", "clean_accuracy", "robust_accuracy", "ci_low", "ci_high", "attack_success_rate",
            "mean_norm"]
    if known.empty:
        return pd.DataFrame(columns=cols)
    g = known.groupby("true_class", sort=True)
    n = g.size()
    clean = g["correct_clean"].apply(lambda s: s.astype(bool).mean())
    robust_k = g["correct_adv"].apply(lambda s: s.astype(bool).sum())
    asr = g["success"].apply(lambda s: s.dropna().astype(bool).mean() if s.notna().any() else float("nan"))
    cis = [proportion_ci(int(k), int(m)) for k, m in zip(robust_k, n)]
    lo, hi = [c[0] for c in cis], [c[1] for c in cis]
    return pd.DataFrame({"class": n.index, "n": n.to_numpy(), "clean_accuracy": clean.to_numpy(),
                         "robust_accuracy": (robust_k / n).to_numpy(), "ci_low": lo, "ci_high": hi,
                         "attack_success_rate": asr.to_numpy(),
                         "mean_norm": g["norm"].mean().to_numpy()}, columns=cols)


# --------------------------------------------------------------------------- sanity

def _successes(res, labels: torch.Tensor, target: int | None, eligible: torch.Tensor) -> int:
    pred = res.logits.argmax(-1).cpu() if hasattr(res, "logits") else res
    hit = (pred == target) if target is not None else (pred != labels)
    return int((hit & eligible).sum())


def sanity_checks(model: AuditModel, setup: _Setup, config: AdversarialConfig, x: torch.Tensor,
                  labels: torch.Tensor, clean_emb: torch.Tensor, worst_violation: float,
                  curve: pd.DataFrame | None) -> pd.DataFrame:
    """The checks that catch a fake robustness number, on ``x`` (n, 3, S, S) (a subset).

    Returns a table: check, passed, detail.
    """
    dev = model.device
    x, labels, clean_emb = x.to(dev), labels.to(dev), clean_emb.to(dev)
    t = setup.target_index
    with torch.no_grad():
        clean_pred = setup.head(x).argmax(-1)
    eligible = (labels != t) if t is not None else (clean_pred == labels)
    eligible = eligible.cpu()
    n_el = int(eligible.sum())
    labels_cpu = labels.cpu()
    rows = []

    zero = _run_attack(setup, config, x, labels, clean_emb, 0.0, config.seed + 1)
    with torch.no_grad():
        zero_pred = setup.head(zero.adv).argmax(-1)
    moved = float((zero.adv - x).abs().max())
    changed = int((zero_pred != clean_pred).sum())
    rows.append({"check": "eps_zero_unchanged", "passed": moved == 0.0 and changed == 0,
                 "detail": f"max |delta| = {moved:.3g}, {changed}/{len(x)} predictions changed at eps = 0"})

    eps = float(config.eps)
    base = _run_attack(setup, config, x, labels, clean_emb, eps, config.seed + 2)
    k_base = _successes(base, labels_cpu, t, eligible)
    if config.attack == "fgsm":
        more = _run_attack(setup, config, x, labels, clean_emb, eps, config.seed + 2, attack="pgd", steps=10,
                           restarts=1)
        what = "PGD-10"
    else:
        more = _run_attack(setup, config, x, labels, clean_emb, eps, config.seed + 2, steps=2 * config.steps)
        what = f"{config.attack.upper()}-{2 * config.steps}"
    k_more = _successes(more, labels_cpu, t, eligible)
    rows.append({"check": "more_steps_not_weaker", "passed": k_more >= k_base - 1,
                 "detail": f"{what} fooled {k_more}/{n_el}, {config.attack.upper()}-{config.steps} fooled "
                           f"{k_base}/{n_el} (one image of slack)"})

    gen = torch.Generator(device=x.device).manual_seed(config.seed + 3)
    noisy = random_noise(x, eps, config.norm, gen)
    with torch.no_grad():
        noise_pred = setup.head(noisy).argmax(-1).cpu()
    k_noise = _successes(noise_pred, labels_cpu, t, eligible)
    if n_el == 0 or eps == 0:
        ok, why = True, "not applicable (no eligible image)" if n_el == 0 else "not applicable (eps = 0)"
    else:
        ok, why = (k_base > k_noise or k_base == n_el), ""
    rows.append({"check": "beats_random_noise", "passed": ok,
                 "detail": f"attack fooled {k_base}/{n_el}, uniform noise of the same eps {k_noise}/{n_el}"
                           + (f"; {why}" if why else "")})

    rows.append({"check": "within_eps_and_pixel_range", "passed": worst_violation <= NORM_TOLERANCE,
                 "detail": f"worst excess over eps or [0, 1]: {max(worst_violation, 0.0):.3g} "
                           f"(tolerance {NORM_TOLERANCE:g})"})

    if curve is not None and len(curve) > 1:
        c = curve.sort_values("eps")
        rob = c["robust_accuracy"].to_numpy()
        n = max(int(c["n"].max()), 1)
        worst_rise = float(np.nanmax(np.diff(rob))) if len(rob) > 1 and not np.all(np.isnan(rob)) else 0.0
        ok = not (worst_rise > 1.0 / n + 1e-12)
        rows.append({"check": "robust_accuracy_falls_with_eps", "passed": ok,
                     "detail": f"largest rise of robust accuracy between neighbouring eps: "
                               f"{max(worst_rise, 0.0):.3f} (one image of slack = {1.0 / n:.3f})"})
    return pd.DataFrame(rows, columns=["check", "passed", "detail"])


# --------------------------------------------------------------------------- figure

def examples_figure(examples: list[tuple], classes: list[str], target: str | None):
    """Rows of (clean + top-5, perturbation amplified, adversarial + top-5)."""
    from clipaudit.figures import image_prob_grid, to_uint8_image

    rows = []
    for img_id, x, adv, p_clean, p_adv, label in examples:
        delta = adv - x
        scale = float(delta.abs().max())
        amp = 0.5 + delta / (2 * scale) if scale > 0 else torch.full_like(delta, 0.5)
        rows.append([(f"{img_id}: clean ({label})", to_uint8_image(x), p_clean),
                     (f"perturbation x{0.5 / scale:.0f}" if scale > 0 else "no perturbation",
                      to_uint8_image(amp), None),
                     (f"adversarial -> {classes[int(np.argmax(p_adv))]}", to_uint8_image(adv), p_adv)])
    highlight = [target] if target else []
    return image_prob_grid(rows, classes, k=5, highlight=highlight)


# ----------------------------------------------------------------------------- audit

@in_eval_mode
def audit(model: AuditModel, source: ImageSource, config: AdversarialConfig, run=None,
          progress: Callable | None = None, transfer_model: AuditModel | None = None) -> Result:
    """Attack every image of ``source`` and measure clean vs robust zero-shot accuracy.

    Args:
        model: the CLIP to attack (fp32).
        source: images; a ``label`` column in the class list gives the true class.
        config: :class:`AdversarialConfig`.
        run: a :class:`~clipaudit.runs.RunFolder`; each table is written as soon as its stage ends.
        progress: wraps the batch iterator (a progress bar).
        transfer_model: a second CLIP (same image size) that also classifies the adversarial
            images, measuring transfer.

    Returns:
        :class:`~clipaudit.result.Result` with tables ``adversarial_images``,
        ``adversarial_curve``, ``adversarial_by_class``, ``adversarial_sanity``, the image
        ``adversarial_examples`` and the summary section ``adversarial``.

    Raises:
        ClipauditError: bad config, target not addable, non-fp32 model, no loadable image.
    """
    with model.bpda() if config.bpda else contextlib.nullcontext():
        if config.protocol is None:
            return _single_attack_audit(model, source, config, run, progress, transfer_model)
        if transfer_model is not None:
            raise ClipauditError("--transfer-to measures one attack's transfer; drop it with --protocol")
        from clipaudit.attacks.protocol import protocol_audit

        return protocol_audit(model, source, config, run, progress)


def _single_attack_audit(model: AuditModel, source: ImageSource, config: AdversarialConfig, run,
                         progress: Callable | None, transfer_model: AuditModel | None) -> Result:
    setup = prepare(model, source, config)
    transfer_head = None
    if transfer_model is not None:
        if transfer_model.image_size != model.image_size:
            raise ClipauditError(f"transfer model {transfer_model.name} takes {transfer_model.image_size}px "
                                 f"images but {model.name} takes {model.image_size}px; pick models of one size")
        transfer_head = transfer_model.classifier(setup.classes, setup.head.templates)
    result = Result(SECTION)
    eps = float(config.eps)

    def save_table(name: str, df: pd.DataFrame) -> None:
        result.tables[name] = df
        if run is not None:
            run.write_table(name, df)

    main = _attack_source(model, source, setup, config, eps, progress, keep=True, transfer_head=transfer_head)
    if run is not None and source.skipped:
        run.write_table("skipped", source.skipped_table())
    if not main.rows:
        first = source.skipped[0][1] if source.skipped else "no images"
        raise ClipauditError(f"no image could be loaded ({len(source.skipped)} skipped; first: {first}); "
                             "check --images")
    images = pd.DataFrame(main.rows)
    save_table("adversarial_images", images)

    curve_rows = {eps: curve_row(images, eps, config.seed)}
    save_table("adversarial_by_class", by_class_table(images, config.seed))
    for e in sorted({float(v) for v in config.eps_sweep} - {eps}):
        sweep = _attack_source(model, source, setup, config, e, progress, keep=False, desc=f"attack eps={e:.4g}")
        curve_rows[e] = curve_row(pd.DataFrame(sweep.rows), e, config.seed)
        main.worst_violation = max(main.worst_violation, sweep.worst_violation)
        save_table("adversarial_curve", pd.DataFrame([curve_rows[k] for k in sorted(curve_rows)]))
    curve = pd.DataFrame([curve_rows[k] for k in sorted(curve_rows)])
    save_table("adversarial_curve", curve)

    sanity = sanity_checks(model, setup, config, torch.cat(main.sanity_x), torch.cat(main.sanity_labels),
                           torch.cat(main.sanity_emb), main.worst_violation, curve)
    save_table("adversarial_sanity", sanity)

    if main.examples:
        result.images["adversarial_examples"] = examples_figure(main.examples, setup.classes, setup.classes[
            setup.target_index] if setup.target_index is not None else None)
        if run is not None:
            run.write_png("adversarial_examples", result.images["adversarial_examples"])

    head = curve_rows[eps]
    _, k_rob, n_rob = _rate(images["correct_adv"])
    _, k_suc, n_suc = _rate(images["success"])
    summary = {
        "attack": config.attack, "norm": config.norm, "eps": eps, "steps": int(config.steps),
        "restarts": int(config.restarts), "step_size": config.step_size, "random_start": bool(config.random_start),
        "mode": config.mode,
        "target": setup.classes[setup.target_index] if setup.target_index is not None else None,
        "target_added": bool(setup.added), "n_images": len(images), "n_skipped": len(source.skipped),
        "n_classes": len(setup.classes),
        "clean_accuracy": head["clean_accuracy"], "robust_accuracy": head["robust_accuracy"],
        "robust_accuracy_ci": _ci(k_rob, n_rob),
        "attack_success_rate": head["attack_success_rate"], "attack_success_ci": _ci(k_suc, n_suc),
        "n_attack_eligible": n_suc,
        "mean_norm": float(images["norm"].mean()), "max_norm": float(images["norm"].max()),
        "sanity_passed": bool(sanity["passed"].all()),
        "sanity_failed": sanity.loc[~sanity["passed"].astype(bool), "check"].tolist(),
        "gradient_steps_per_image": main.gradient_steps / max(len(images), 1),
        "eps_sweep": [float(e) for e in sorted(curve_rows)],
        "labels_known": bool((images["true_class"] != "").any()),
        "bpda": bool(config.bpda), "eot": int(config.eot),
    }
    if transfer_model is not None:
        summary["transfer_model"] = transfer_model.name
        summary["transfer_clean_accuracy"] = _rate(images["correct_transfer_clean"])[0]
        summary["transfer_robust_accuracy"] = _rate(images["correct_transfer_adv"])[0]
    result.summary = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}
    if run is not None:
        run.update_summary(result.summary, section=SECTION)
    return result


# ------------------------------------------------------------------ registry entry (clipaudit.audits)

def run(model: AuditModel, source: ImageSource, config: AdversarialConfig, sink,
        transfer_model: AuditModel | None = None) -> Result:
    """The registry's call shape: :func:`audit` writing through ``sink`` (a ResultSink)."""
    return audit(model, source, config, run=sink, progress=sink.progress, transfer_model=transfer_model)


def plan(args) -> list[str]:
    """This audit's command line inside ``clipaudit audit`` (``args.quick``: small sizes)."""
    quick = args.quick
    return ["adversarial", "--attack", "pgd", "--eps", "4/255", "--steps", "5" if quick else "10",
            "--n-images", "32" if quick else "256", "--sanity-n", "16" if quick else "32",
            "--eps-sweep", "0,2/255,4/255" if quick else "0,1/255,2/255,4/255,8/255"]


AUDIT = Audit(
    name=SECTION, config=AdversarialConfig, run=run, contract=contract.ADVERSARIAL,
    page="clipaudit.dashboard.page_adversarial", cli="clipaudit.attacks.adversarial_cli", plan=plan,
    description="FGSM / PGD / APGD against the zero-shot head or an embedding; robust accuracy vs eps",
    headlines=(Headline("clean_accuracy", "clean zero-shot accuracy"),
               Headline("robust_accuracy", "robust accuracy (PGD)", "robust_accuracy_ci")),
    limitations={"L-adversarial": ("robust_accuracy", "attack_success_rate", "masking_suspected")},
    paired=(PairedMetric(SECTION, "adversarial_images", "clean_accuracy", column("correct_clean")),
            PairedMetric(SECTION, "adversarial_images", "robust_accuracy", column("correct_adv")),
            PairedMetric(SECTION, "adversarial_images", "attack_success_rate", column("success"))),
)
