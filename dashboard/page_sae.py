"""Sparse-autoencoder latents: quality, planted-factor recovery (SAE vs neurons vs the linear-probe
ceiling, per factor with CIs), the training curve, and a latent list linking to each latent's
page (top images, quantile samples, histogram, patch maps)."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html

from clipaudit.runs import RunView

from .components import guard, image, kpis, modelcard_panel, needs_audit, run_banner, section, table
from .data import RunStore, fmt_num
from .units import latent_factors, unit_url

PATH = "/sae"
TITLE = "SAE"
AUDIT = "sae"
KPIS = [("fvu", "fraction of variance unexplained"), ("l0", "active latents per row"),
        ("dead_fraction", "dead latents"), ("clean_accuracy", "zero-shot accuracy"),
        ("spliced_accuracy", "accuracy, layer spliced"), ("planted_factor_recall", "factors recovered: SAE"),
        ("neuron_factor_recall", "factors recovered: neurons"),
        ("linear_probe_factor_recall", "factors recovered: linear probe")]
UNITS = (("latent", "best SAE latent"), ("neuron", "best neuron"), ("probe", "linear probe (ceiling)"))
LIST_ROWS = 200


def factor_chart(factors: pd.DataFrame, threshold: float) -> dcc.Graph:
    """Held-out AUROC per planted factor for the best latent, the best neuron and the linear probe,
    each with its 95% bootstrap CI; the recall threshold as a line."""
    f = factors.sort_values(["group", "factor"])
    fig = go.Figure()
    for unit, name in UNITS:
        col = f"{unit}_auroc"
        if col not in f:
            continue
        err = {"type": "data", "symmetric": False, "array": (f[f"{unit}_ci_high"] - f[col]).tolist(),
               "arrayminus": (f[col] - f[f"{unit}_ci_low"]).tolist()} if f"{unit}_ci_low" in f else None
        fig.add_trace(go.Bar(name=name, x=f["factor"].astype(str), y=f[col], error_y=err,
                             hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>"))
    fig.add_hline(y=threshold, line_dash="dash", annotation_text=f"recovered at AUROC {threshold}")
    fig.update_layout(barmode="group", height=420, yaxis={"range": [0.4, 1.02], "title": "held-out AUROC"},
                      margin={"l": 60, "r": 20, "t": 30, "b": 140}, legend={"orientation": "h", "y": 1.08})
    return dcc.Graph(figure=fig, config={"displayModeBar": False})


def training_chart(log: pd.DataFrame) -> dcc.Graph:
    """Normalised MSE and dead latents over training steps."""
    fig = go.Figure(go.Scatter(x=log["step"], y=log["mse"], name="normalised MSE", mode="lines"))
    if "dead" in log:
        fig.add_trace(go.Scatter(x=log["step"], y=log["dead"], name="dead latents", mode="lines", yaxis="y2"))
    fig.update_layout(height=280, margin={"l": 60, "r": 60, "t": 30, "b": 40}, xaxis={"title": "step"},
                      yaxis={"title": "normalised MSE"}, yaxis2={"title": "dead", "overlaying": "y", "side": "right"})
    return dcc.Graph(figure=fig, config={"displayModeBar": False})


def latent_links(store: RunStore, view: RunView, latents: pd.DataFrame) -> html.Table:
    """The most-firing latents as links to their pages, with the planted factors each recovers (if any)
    and its SoftWPMI label. Label text is shown as text, never as markup."""
    run = store.run_name(view)
    recovered = latent_factors(store, view)  # the factors each latent recovers, at the run's threshold
    best_for = {} if recovered is None else recovered.groupby("latent")["factor"].apply(", ".join).to_dict()
    shown = latents[latents["fire_rate"] > 0].sort_values("fire_rate", ascending=False).head(LIST_ROWS)
    rows = [html.Tr([html.Th(h) for h in ("latent", "fires on", "max", "recovers (planted factor)", "label")])]
    for r in shown.itertuples():
        rows.append(html.Tr([html.Td(dcc.Link(str(int(r.latent)), href=unit_url("latent", run, (str(int(r.latent)),)))),
                             html.Td(f"{r.fire_rate:.1%}"), html.Td(fmt_num(r.max_activation)),
                             html.Td(best_for.get(int(r.latent), "")),
                             html.Td(str(getattr(r, "label", "") or "") if pd.notna(getattr(r, "label", None)) else "")]))
    return html.Table(rows, className="grid-links")


@needs_audit(AUDIT)
def layout(store: RunStore, a: RunView | None, b: RunView | None) -> html.Div:
    s = a.summary.get(AUDIT) or {}
    latents = store.table(a, "sae_latents")
    factors = store.table(a, "sae_factors")
    log = store.table(a, "sae_training")
    pictures = sorted(a.images(), key=lambda p: p.name)
    patches = [p for p in pictures if p.stem.startswith("sae_patches_")]
    return html.Div([html.Div([
        run_banner(a),
        html.P(f"{s.get('variant', '?')} SAE, {s.get('latents', '?')} latents, k = {s.get('k', '?')}, on "
               f"{s.get('layer', '?')} ({s.get('tokens', '?')} rows), {s.get('n_images', '?')} images"
               + (f"; loaded from {s['loaded_from']}" if s.get("loaded_from") else ""), className="muted"),
        kpis(a, AUDIT, KPIS),
        guard("Planted factors", lambda: section(
            "Planted factors: best single latent vs best neuron vs a linear probe on the layer (held-out AUROC, 95% CI)",
            factor_chart(factors, float(s.get("recall_threshold", 0.9))),
            table(factors, max_rows=100))) if factors is not None and len(factors) else None,
        guard("Latents", lambda: section(
            f"Latents (the {LIST_ROWS} that fire most; click one for its top images, quantiles, histogram and maps)",
            latent_links(store, a, latents))) if latents is not None and len(latents) else None,
        guard("Patch maps", lambda: section(
            "Where latents fire on their top images", *[image(store, a, f"images/{p.name}", p.stem) for p in patches]))
        if patches else None,
        guard("Training", lambda: section("Training curve", training_chart(log))) if log is not None and len(log)
        else None,
    ], className="main"), modelcard_panel(AUDIT, a)], className="page")
