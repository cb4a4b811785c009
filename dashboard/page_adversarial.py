"""Adversarial robustness: robust accuracy vs eps, per-class results, examples, sanity checks."""
from __future__ import annotations

from dash import html

from clipaudit.runs import RunView

from .components import guard, ci_line, image, kpis, message, needs_audit, modelcard_panel, run_banner, section, table
from .data import RunStore, fmt_rate

PATH = "/adversarial"
TITLE = "Adversarial"
AUDIT = "adversarial"
KPIS = [("attack", "attack"), ("norm", "norm"), ("eps", "eps"), ("steps", "steps"), ("restarts", "restarts"),
        ("clean_accuracy", "clean accuracy"), ("robust_accuracy", "robust accuracy"),
        ("attack_success_rate", "attack success"), ("sanity_passed", "sanity checks passed")]


def _broken_by(images):
    """Images per eps and first breaking attack (``clean``: wrong before any attack; ``survived``)."""
    if images is None or "broken_by" not in images:
        return None
    df = images.assign(broken_by=images["broken_by"].fillna("").replace("", "survived"))
    return df.groupby(["eps", "broken_by"]).size().rename("images").reset_index()


@needs_audit(AUDIT)
def layout(store: RunStore, a: RunView | None, b: RunView | None) -> html.Div:
    s = a.summary.get(AUDIT, {})
    curve = store.table(a, "adversarial_curve")
    by_class = store.table(a, "adversarial_by_class")
    sanity = store.table(a, "adversarial_sanity")
    warn = [message("Some sanity checks failed: treat the robust accuracy as an upper bound until they pass.", "warn")] \
        if s.get("sanity_passed") is False else []
    ensemble = store.table(a, "adversarial_ensemble")
    masking = store.table(a, "adversarial_masking")
    robust_clip = store.table(a, "adversarial_robust_clip")
    if s.get("masking_suspected"):
        warn.append(message("Gradient masking suspected (" + ", ".join(map(str, s.get("masking_flags", []))) + "): "
                            "the gradient attacks were blind here, so this robust accuracy is not evidence of "
                            "robustness. Rerun with --bpda / --eot if the model has a known input stage.", "warn"))
    elif s.get("protocol"):
        warn.append(message(f"Protocol {s['protocol']}: worst case over {', '.join(map(str, s.get('ensemble', [])))}; "
                            "no gradient-masking check flagged.", "info"))
    rates = {c: fmt_rate for c in ("clean_accuracy", "robust_accuracy", "ci_low", "ci_high", "attack_success_rate")}
    return html.Div([html.Div([
        run_banner(a), *warn,
        kpis(a, AUDIT, KPIS),
        guard("Robust accuracy vs eps", lambda: section(
            "Robust accuracy vs eps", ci_line(curve, "eps", "robust_accuracy", extra=[("clean_accuracy", "clean")],
                                              title="Zero-shot accuracy under attack (95% CI)"),
            table(curve, formats=rates, table_id="adversarial-curve"))) if curve is not None else None,
        guard("Robust accuracy per attack", lambda: section(
            "Robust accuracy after each attack of the ensemble (cumulative) and the worst case",
            ci_line(ensemble, "eps", "robust_accuracy", group="attack",
                    title="Robust accuracy vs eps per attack stage (95% CI)"),
            table(ensemble, formats=rates, table_id="adversarial-ensemble"))) if ensemble is not None else None,
        section("Which attack broke each image", table(_broken_by(store.table(a, "adversarial_images")),
                                                       table_id="adversarial-broken-by"))
        if ensemble is not None else None,
        section("Gradient-masking checks", table(masking, table_id="adversarial-masking"))
        if masking is not None else None,
        section("Robust-CLIP table (zero-shot accuracy, %)", table(robust_clip, table_id="adversarial-robust-clip"))
        if robust_clip is not None else None,
        section("Examples (clean / perturbation / adversarial)",
                image(store, a, "images/adversarial_examples.png", "adversarial examples", "wide-img")),
        section("Sanity checks", table(sanity, table_id="adversarial-sanity")) if sanity is not None else None,
        section("By class", table(by_class, formats=rates)) if by_class is not None else None,
    ], className="main"), modelcard_panel(AUDIT, a)], className="page")
