"""Attention heads: the layer x head grid of reading scores, each head linking to its unit page
(TextSpan texts, ablation effects, attribution), the layer curve and the defence's steps."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html

from clipaudit.runs import RunView

from .components import ci_line, guard, kpis, modelcard_panel, needs_audit, run_banner, section, table
from .data import RunStore, fmt_num, fmt_rate
from .units import unit_url

PATH = "/heads"
TITLE = "Heads"
AUDIT = "heads"
KPIS = [("clean_accuracy", "clean accuracy"), ("attack_success_rate", "typographic success"),
        ("defended_attack_success_rate", "success, defended"), ("attacked_accuracy", "accuracy with text"),
        ("defended_attacked_accuracy", "accuracy with text, defended"),
        ("defended_clean_accuracy", "clean accuracy, defended"), ("heads_ablated", "heads ablated"),
        ("decomposition_max_rel_error", "decomposition error")]
SCORES = ("typographic_score", "direct_effect", "word_token_share")


def score_grid(scores: pd.DataFrame, column: str = "typographic_score") -> dcc.Graph:
    """Heatmap: layers down, heads across, coloured by ``column``."""
    grid = scores.pivot_table(index="layer", columns="head", values=column, aggfunc="mean").sort_index()
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=[f"h{h}" for h in grid.columns],
                               y=[f"layer {l}" for l in grid.index], colorscale="Viridis",
                               colorbar={"title": column.replace("_", " ")},
                               hovertemplate="%{y} %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=f"{column.replace('_', ' ')} per head", height=120 + 40 * len(grid),
                      margin={"l": 70, "r": 20, "t": 40, "b": 30}, yaxis={"autorange": "reversed"})
    return dcc.Graph(figure=fig, config={"displayModeBar": False})


def head_links(store: RunStore, view: RunView, scores: pd.DataFrame) -> html.Table:
    """The same grid as links: click a head for its page (TextSpan texts, ablation, attribution)."""
    run = store.run_name(view)
    layers = sorted(scores["layer"].unique())
    heads = sorted(scores["head"].unique())
    value = {(int(r.layer), int(r.head)): r.typographic_score for r in scores.itertuples()}
    rows = [html.Tr([html.Th("layer \\ head"), *[html.Th(str(h)) for h in heads]])]
    for layer in layers:
        cells = [html.Th(str(layer))]
        for h in heads:
            v = value.get((int(layer), int(h)))
            cells.append(html.Td(dcc.Link(fmt_num(v, 2) if v is not None else "-",
                                          href=unit_url("head", run, (str(layer), str(h))))))
        rows.append(html.Tr(cells))
    return html.Table(rows, className="grid-links")


@needs_audit(AUDIT)
def layout(store: RunStore, a: RunView | None, b: RunView | None) -> html.Div:
    scores = store.table(a, "heads_scores")
    curve = store.table(a, "heads_layer_curve")
    ablation = store.table(a, "heads_ablation")
    textspan = store.table(a, "heads_textspan")
    defence = store.table(a, "heads_defence")
    rates = {c: fmt_rate for c in ("accuracy", "ci_low", "ci_high", "clean_accuracy", "attack_success_rate",
                                   "attacked_accuracy")}
    return html.Div([html.Div([
        run_banner(a),
        kpis(a, AUDIT, KPIS),
        guard("Heads", lambda: section(
            "Reading heads (share of the query token's attention on the written word)",
            score_grid(scores), *[score_grid(scores, c) for c in SCORES[1:] if c in scores.columns],
            html.P("Click a head for its TextSpan texts, ablation effect and attribution:", className="muted"),
            head_links(store, a, scores))) if scores is not None and len(scores) else None,
        guard("Layer curve", lambda: section(
            "How much of accuracy the last k layers carry (the rest mean-ablated, 95% CI)",
            ci_line(curve, "k", "accuracy", title="accuracy vs layers kept"), table(curve, formats=rates)))
        if curve is not None else None,
        section("Defence steps (greedy head selection)", table(defence, formats=rates)) if defence is not None else None,
        section("Single-head ablation", table(ablation, formats=rates, max_rows=40)) if ablation is not None else None,
        section("TextSpan texts", table(textspan, max_rows=40)) if textspan is not None else None,
    ], className="main"), modelcard_panel(AUDIT, a)], className="page")
