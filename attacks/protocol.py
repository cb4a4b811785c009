"""Robustness protocols: the ensemble's worst case over a source, gradient-masking checks, and the
robust-CLIP papers' table.

Protocols (``clipaudit adversarial --protocol NAME``):
    ``autoattack``: APGD-CE, APGD-T (DLR) and Square in sequence on the images still standing,
    at ``--eps`` (and every ``--eps-sweep`` budget); 100 APGD steps, 9 targets, 5000 queries by
    default (Croce & Hein 2020's standard version).
    ``robust-clip``: the same ensemble at l-inf 2/255 and 4/255 with the fixed template
    "a photo of a {}.", 500 images unless ``--n-images`` says otherwise, seed 0 unless
    ``--seed``: the setting of TeCoA (Mao et al. 2023) and FARE (Schlarmann et al. 2024),
    whose tables give clean and robust zero-shot accuracy per budget.

Gradient-masking checks (Athalye et al. 2018; Carlini et al. 2019, "On evaluating adversarial
robustness"), each a row of ``adversarial_masking`` with ``flagged`` and the evidence:
    ``gradients_vanish``: more than 10% of the checked images have an all-zero or non-finite
        input gradient of the loss.
    ``gradient_free_beats_gradient``: Square broke a share of the images both gradient attacks
        left standing whose 95% Wilson lower bound exceeds 10% (a black-box attack should not
        beat white-box ones on a differentiable model).
    ``large_eps_not_broken``: APGD-CE at half the pixel range (l-inf 0.5) fools under 95% of the
        checked images (at that budget any image can be turned into a grey blur, so a real
        gradient must reach ~100%).
"""
from __future__ import annotations

import math
from typing import Callable

import pandas as pd
import torch

from clipaudit.attacks.adversarial import Objective, attack, classifier_loss, max_eps, perturbation_norms
from clipaudit.attacks.ensemble import ENSEMBLE, EnsembleSettings, run_ensemble
from clipaudit.stats import proportion_ci
from clipaudit.zeroshot import iterate

PROTOCOLS = ("autoattack", "robust-clip")
ROBUST_CLIP_EPS = (2 / 255, 4 / 255)
ROBUST_CLIP_N = 500
DEFAULT_ENSEMBLE_STEPS = 100
VANISH_SHARE = 0.10
GRADIENT_FREE_SHARE = 0.10
LARGE_EPS_SUCCESS = 0.95


def check_protocol_name(name: str) -> str:
    """``name`` if it is a protocol, else :class:`ClipauditError` naming the valid ones."""
    if name not in PROTOCOLS:
        from clipaudit.errors import ClipauditError, suggest

        raise ClipauditError(f"unknown --protocol {name!r}{suggest(str(name), list(PROTOCOLS))}; "
                             f"valid: {', '.join(PROTOCOLS)}")
    return name


def eps_name(eps: float) -> str:
    """``4/255`` for multiples of 1/255, else the number."""
    k = eps * 255
    return f"{k:.3g}/255" if abs(k - round(k)) < 1e-6 else f"{eps:.4g}"


def ensemble_source(model, source, setup, config, eps: float, settings: EnsembleSettings,
                    progress: Callable | None, desc: str) -> tuple[list[dict], dict, list]:
    """Run the ensemble over every image of ``source`` at ``eps``.

    Returns (rows: one per image, cost: attack -> passes, kept: (x, labels) batches for checks).
    """
    from clipaudit.attacks.adversarial_audit import _labels_for, image_row, reference_labels

    rows: list[dict] = []
    cost = {a: 0 for a in settings.attacks}
    skipped: dict[str, str] = {}
    kept: list[tuple[torch.Tensor, torch.Tensor]] = []
    classes = setup.classes
    for b_i, batch in enumerate(iterate(source, model, config.batch_size, progress, desc=desc)):
        x = batch.pixels.float()
        true = _labels_for(batch.meta, classes)
        with torch.no_grad():
            clean_pred = setup.head(x).argmax(-1)
        ref = reference_labels(true, clean_pred, classes)
        out = run_ensemble(setup.head, x, ref, eps, config.norm, settings, config.seed + 7919 * b_i)
        skipped.update(out.skipped)
        for a, c in out.cost.items():
            cost[a] = cost.get(a, 0) + c
        with torch.no_grad():
            adv_pred = setup.head(out.adv).argmax(-1)
        linf, l2 = perturbation_norms(out.adv, x)
        for i, img_id in enumerate(batch.ids):
            # the worst-case point fools the model exactly when some attack broke the image, so the
            # shared row's prediction-based fields equal the ensemble's own verdict (out.worst)
            row = image_row(img_id, true[i], int(ref[i]), int(clean_pred[i]), int(adv_pred[i]), classes, eps,
                            float(linf[i]), float(l2[i]), config.norm)
            row["broken_by"] = out.broken_by[i]
            for a in settings.attacks:
                col = out.robust.get(a)
                row[f"robust_{a.replace('-', '_')}"] = None if col is None else col[i]
            rows.append(row)
        kept.append((x.cpu(), ref.cpu()))
    return rows, {"cost": cost, "skipped": skipped}, kept


def _rate_ci(k: int, n: int) -> tuple[float, float, float]:
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    lo, hi = proportion_ci(k, n)
    return k / n, lo, hi


def ensemble_table(images: pd.DataFrame, attacks: tuple[str, ...], individual: bool) -> pd.DataFrame:
    """Per eps: robust accuracy after each attack of the sequence (cumulative), with Wilson
    intervals, the images each attack broke first, and (``individual``) each attack alone."""
    out = []
    for eps, g in images.groupby("eps", sort=True):
        known = g[g["correct_clean"].notna()]
        n = len(known)
        standing = known["correct_clean"].astype(bool).copy()
        for stage, a in enumerate(attacks):
            col = f"robust_{a.replace('-', '_')}"
            first = (known["broken_by"] == a)
            standing &= ~first
            acc, lo, hi = _rate_ci(int(standing.sum()), n)
            row = {"eps": float(eps), "attack": a, "stage": stage + 1, "n": n, "robust_accuracy": acc,
                   "ci_low": lo, "ci_high": hi, "broken_first": int(first.sum())}
            if individual and col in known:
                alone = known[col].map(lambda v: bool(v) if v is not None and v == v else False)
                row["robust_accuracy_alone"] = float(alone.mean()) if n else float("nan")
            out.append(row)
        k = int(known["correct_adv"].astype(bool).sum())
        acc, lo, hi = _rate_ci(k, n)
        out.append({"eps": float(eps), "attack": "worst case", "stage": len(attacks) + 1, "n": n,
                    "robust_accuracy": acc, "ci_low": lo, "ci_high": hi, "broken_first": 0})
    return pd.DataFrame(out)


def _input_gradients(head, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = classifier_loss(head(x), labels, getattr(head, "rule", "softmax")).sum()
        (g,) = torch.autograd.grad(loss, x)
    return g


def masking_checks(setup, config, images: pd.DataFrame, eps: float, x: torch.Tensor, labels: torch.Tensor,
                   settings: EnsembleSettings) -> pd.DataFrame:
    """The three checks of the module docstring at ``eps`` on ``x`` (n, 3, S, S) with ``labels`` (n,).

    Returns a table: check, flagged, detail.
    """
    head = setup.head
    dev = head.weights.device
    x, labels = x.to(dev), labels.to(dev)
    with torch.no_grad():
        ok = head(x).argmax(-1) == labels
    x, labels = x[ok], labels[ok]
    rows = []
    n = len(x)
    if n:
        g = _input_gradients(head, x, labels).flatten(1)
        dead = int(((g == 0).all(1) | ~torch.isfinite(g).all(1)).sum())
    else:
        dead = 0
    rows.append({"check": "gradients_vanish", "flagged": n > 0 and dead > VANISH_SHARE * n,
                 "detail": f"{dead}/{n} clean-correct images have an all-zero or non-finite input gradient "
                           f"(flagged above {VANISH_SHARE:.0%})"})

    at = images[(images["eps"] == eps) & images["correct_clean"].fillna(False).astype(bool)]
    grad_cols = [f"robust_{a.replace('-', '_')}" for a in settings.attacks if a != "square"]
    if "square" in settings.attacks and grad_cols and all(c in at for c in grad_cols) and "robust_square" in at:
        survived = at[at[grad_cols].apply(lambda r: all(v is True for v in r), axis=1)]
        tried = survived[survived["robust_square"].notna()]
        k = int((tried["robust_square"] == False).sum())  # noqa: E712 (object column of True/False/None)
        m = len(tried)
        lo = proportion_ci(k, m)[0] if m else 0.0
        rows.append({"check": "gradient_free_beats_gradient", "flagged": m > 0 and lo > GRADIENT_FREE_SHARE,
                     "detail": f"Square broke {k}/{m} images that {' and '.join(a for a in settings.attacks if a != 'square')} "
                               f"left standing at eps {eps_name(eps)} (95% lower bound {lo:.2f}; flagged above "
                               f"{GRADIENT_FREE_SHARE:.0%})"})
    else:
        rows.append({"check": "gradient_free_beats_gradient", "flagged": False,
                     "detail": "not applicable: the ensemble ran without Square or without a gradient attack"})

    big = 0.5 if config.norm == "linf" else max_eps(config.norm, x.shape[-1]) / 2
    if n:
        res = attack(Objective(head, labels, eot=settings.eot), x, "apgd", eps=big, norm=config.norm,
                     steps=min(int(settings.steps), 20), seed=config.seed + 5, n_classes=len(setup.classes))
        k = int(res.success.sum())
    else:
        k = 0
    rows.append({"check": "large_eps_not_broken", "flagged": n > 0 and k < LARGE_EPS_SUCCESS * n,
                 "detail": f"APGD-CE at {config.norm} eps {big:g} fooled {k}/{n} clean-correct images "
                           f"(flagged below {LARGE_EPS_SUCCESS:.0%})"})
    return pd.DataFrame(rows, columns=["check", "flagged", "detail"])


def settings_from(config) -> EnsembleSettings:
    """The ensemble budgets of an :class:`~clipaudit.attacks.adversarial_audit.AdversarialConfig`."""
    return EnsembleSettings(attacks=tuple(config.ensemble), steps=int(config.steps), n_targets=int(config.n_targets),
                            queries=int(config.queries), individual=bool(config.individual), eot=int(config.eot))


def protocol_audit(model, source, config, run=None, progress: Callable | None = None):
    """The protocol branch of :func:`clipaudit.attacks.adversarial_audit.audit` (same arguments).

    Writes ``adversarial_images`` (worst case per image and eps, ``broken_by`` and one
    ``robust_<attack>`` column per attack), ``adversarial_curve`` (worst case per eps),
    ``adversarial_ensemble``, ``adversarial_by_class``, ``adversarial_masking``,
    ``adversarial_sanity`` (the single-attack checks, run with APGD-CE) and, for ``robust-clip``,
    ``adversarial_robust_clip``.
    """
    from dataclasses import replace

    import importlib

    aa = importlib.import_module("clipaudit.attacks.adversarial_audit")  # the package re-exports a function of that name
    from clipaudit.errors import ClipauditError
    from clipaudit.result import Result

    setup = aa.prepare(model, source, config)
    settings = settings_from(config).check()
    result = Result(aa.SECTION)

    def save_table(name: str, df: pd.DataFrame) -> None:
        result.tables[name] = df
        if run is not None:
            run.write_table(name, df)

    budgets = protocol_budgets(config)
    rows: list[dict] = []
    costs: dict[str, dict] = {}
    kept: list = []
    for eps in budgets:
        r, info, k = ensemble_source(model, source, setup, config, eps, settings, progress,
                                     desc=f"ensemble eps={eps_name(eps)}")
        rows += r
        costs[eps_name(eps)] = info
        kept = kept or k
        if run is not None and source.skipped and eps == budgets[0]:
            run.write_table("skipped", source.skipped_table())
        if not rows:
            first = source.skipped[0][1] if source.skipped else "no images"
            raise ClipauditError(f"no image could be loaded ({len(source.skipped)} skipped; first: {first}); "
                                 "check --images")
        save_table("adversarial_images", pd.DataFrame(rows))
    images = pd.DataFrame(rows)
    curve = pd.DataFrame([aa.curve_row(images[images["eps"] == e], e, config.seed) for e in budgets])
    save_table("adversarial_curve", curve)
    save_table("adversarial_ensemble", ensemble_table(images, settings.attacks, settings.individual))
    main_eps = budgets[-1]
    save_table("adversarial_by_class", aa.by_class_table(images[images["eps"] == main_eps], config.seed))
    x = torch.cat([b[0] for b in kept])[: max(int(config.sanity_n), 1)]
    y = torch.cat([b[1] for b in kept])[: max(int(config.sanity_n), 1)]
    masking = masking_checks(setup, config, images, main_eps, x, y, settings)
    save_table("adversarial_masking", masking)
    single = replace(config, protocol=None, attack="apgd", steps=min(int(config.steps), 20), eps=main_eps,
                     eps_sweep=())
    with torch.no_grad():
        emb = model.encode_images(x.to(model.device), normalize=True)
    sanity = aa.sanity_checks(model, setup, single, x, y, emb, float((images["norm"] - images["eps"]).max()), curve)
    save_table("adversarial_sanity", sanity)
    if config.protocol == "robust-clip":
        save_table("adversarial_robust_clip", robust_clip_table(model.name, curve))
    main = images[images["eps"] == main_eps]
    _, k_rob, n_rob = aa._rate(main["correct_adv"])
    _, k_suc, n_suc = aa._rate(main["success"])
    head = curve.iloc[-1]
    flagged = masking.loc[masking["flagged"].astype(bool), "check"].tolist()
    summary = {
        "attack": "ensemble", "protocol": config.protocol, "ensemble": list(settings.attacks), "norm": config.norm,
        "eps": main_eps, "steps": int(settings.steps),
        "n_targets": min(int(settings.n_targets), max(len(setup.classes) - 1, 1)),
        "queries": int(settings.queries), "bpda": bool(config.bpda), "eot": int(settings.eot),
        "restarts": 1, "random_start": True, "mode": "classifier", "target": None, "target_added": False,
        "n_images": int(len(main)), "n_skipped": len(source.skipped), "n_classes": len(setup.classes),
        "clean_accuracy": float(head["clean_accuracy"]), "robust_accuracy": float(head["robust_accuracy"]),
        "robust_accuracy_ci": list(aa._ci(k_rob, n_rob)),
        "attack_success_rate": float(head["attack_success_rate"]), "attack_success_ci": list(aa._ci(k_suc, n_suc)),
        "n_attack_eligible": n_suc,
        "robust_accuracy_by_eps": {eps_name(float(r.eps)): float(r.robust_accuracy) for r in curve.itertuples()},
        "mean_norm": float(main["norm"].mean()), "max_norm": float(main["norm"].max()),
        "masking_suspected": bool(flagged), "masking_flags": flagged,
        "sanity_passed": bool(sanity["passed"].all()),
        "sanity_failed": sanity.loc[~sanity["passed"].astype(bool), "check"].tolist(),
        "passes_per_image": {k: {a: c / max(len(main), 1) for a, c in v["cost"].items()} for k, v in costs.items()},
        "skipped_attacks": {a: why for v in costs.values() for a, why in v["skipped"].items()},
        "eps_sweep": [float(e) for e in budgets],
        "labels_known": bool((main["true_class"] != "").any()),
    }
    result.summary = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}
    if run is not None:
        run.update_summary(result.summary, section=aa.SECTION)
    return result


def protocol_budgets(config) -> list[float]:
    """The eps values a protocol run attacks, ascending (the last is the headline)."""
    if config.protocol == "robust-clip":
        return list(ROBUST_CLIP_EPS)
    return sorted({float(config.eps), *(float(e) for e in config.eps_sweep)})


def robust_clip_table(model_name: str, curve: pd.DataFrame) -> pd.DataFrame:
    """One row shaped like the TeCoA/FARE tables: clean and robust zero-shot accuracy (%) per budget."""
    row: dict = {"model": model_name}
    if len(curve):
        row["clean"] = round(100 * float(curve["clean_accuracy"].iloc[0]), 2)
    for r in curve.sort_values("eps").itertuples():
        row[f"linf {eps_name(float(r.eps))}"] = round(100 * float(r.robust_accuracy), 2)
        row[f"linf {eps_name(float(r.eps))} ci"] = f"[{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}]"
    return pd.DataFrame([row])


__all__ = ["PROTOCOLS", "ENSEMBLE", "ROBUST_CLIP_EPS", "ensemble_source", "ensemble_table", "masking_checks",
           "robust_clip_table", "settings_from", "eps_name", "protocol_audit"]
