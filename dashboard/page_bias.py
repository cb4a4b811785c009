"""Bias: harmful-label rates per group with CIs, label-set sensitivity, skew and WEAT, reports."""
from __future__ import annotations

from dash import html

from clipaudit.runs import RunView

from .components import guard, kpis, message, needs_audit, modelcard_panel, rate_bars, run_banner, section, table
from .data import RunStore, fmt_num, fmt_rate

PATH = "/bias"
TITLE = "Bias"
AUDIT = "bias"
KPIS = [("dataset", "dataset"), ("n_images", "images"), ("harmful_rate_ratio", "harmful-rate ratio"),
        ("harmful_rate_ratio_attribute", "ratio attribute"), ("max_harmful_rate", "max harmful rate"),
        ("max_label_set_shift", "max label-set shift"), ("weat_d", "WEAT d"), ("weat_p", "WEAT p"),
        ("max_skew", "MaxSkew")]


def _reports(store: RunStore, view: RunView) -> html.Div:
    links = []
    for name in ("bias_report.html", "bias_report.md"):
        url = store.image_url(view, name)
        if url:
            links.append(html.Li(html.A(name, href=url, target="_blank", rel="noopener noreferrer")))
    return html.Ul(links) if links else message("no exported reports in this run")


@needs_audit(AUDIT)
def layout(store: RunStore, a: RunView | None, b: RunView | None) -> html.Div:
    s = a.summary.get(AUDIT, {})
    den = store.table(a, "bias_denigration")
    inter = store.table(a, "bias_intersectional")
    sens = store.table(a, "bias_label_sensitivity")
    skew = store.table(a, "bias_skew")
    weat = store.table(a, "bias_weat")
    flagged = s.get("flagged") or []
    rates = {c: fmt_rate for c in ("rate", "ci_low", "ci_high", "rate_base", "rate_extended", "delta", "mdd")}
    pfmt = {c: fmt_num for c in ("p", "p_holm", "p_bh")}
    return html.Div([html.Div([
        run_banner(a),
        kpis(a, AUDIT, KPIS),
        html.Div([html.Strong("flagged (adjusted p < 0.05): "),
                  html.Span(", ".join(str(f) for f in flagged) or "none", id="bias-flagged")], className="flagged"),
        guard("Harmful-label rate by group", lambda: section(
            "Harmful-label rate by group", rate_bars(den, "group", "rate", color="attribute",
                                                     title="Non-human or crime label rate (95% CI)"),
            table(den, ["attribute", "group", "n", "n_harmful", "rate", "ci_low", "ci_high", "p", "p_holm",
                        "p_bh", "mdd"], formats={**rates, **pfmt}, table_id="bias-denigration")))
        if den is not None else None,
        section("Intersectional groups", table(inter, formats={**rates, **pfmt})) if inter is not None else None,
        section("Label-set sensitivity (class design changes the result)",
                table(sens, formats=rates, table_id="bias-sensitivity")) if sens is not None else None,
        section("Retrieval skew", table(skew)) if skew is not None else None,
        section("WEAT", table(weat, table_id="bias-weat")) if weat is not None else None,
        section("Exported reports", _reports(store, a)),
    ], className="main"), modelcard_panel(AUDIT, a)], className="page")
