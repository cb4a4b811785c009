"""Neurons: a searchable, sortable, paginated grid of neuron cards and one neuron's detail view.

Why paginated on the server: a layer has hundreds to thousands of neurons; the grid callback
filters and sorts the cached ``neurons`` table and builds only one page of cards (50), so the
page stays fast at 1,000 neurons and images load only for the cards on screen.
"""
from __future__ import annotations

import math

import pandas as pd
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update

from clipaudit.runs import RunView

from . import ids
from .components import guard, image, kpis, message, needs_audit, modelcard_panel, run_banner, section, table
from .data import RunStore, fmt_num
from .units import unit_url

PATH = "/neurons"
TITLE = "Neurons"
AUDIT = "neurons"
PAGE_SIZE = 50
DEFAULT_SORT = "pictured"
SORTS = {"pictured": "pictured first, then multimodality", "label_score": "label score (high first)", "multimodal_score": "multimodality (high first)",
         "max": "max activation (high first)", "neuron": "neuron index"}


def filtered(df: pd.DataFrame, search: str | None = None, sort: str | None = "label_score",
             multimodal_only: bool = False) -> pd.DataFrame:
    """Neurons whose labels contain ``search`` (case-insensitive, plain text), sorted."""
    out = df
    if search and search.strip():
        needle = search.strip().lower()
        hay = out.get("labels", out.get("label", pd.Series("", index=out.index))).astype(str).str.lower()
        hay = hay + ";" + out.get("label", pd.Series("", index=out.index)).astype(str).str.lower()
        out = out[hay.str.contains(needle, regex=False)]
    if multimodal_only and "is_multimodal" in out:
        out = out[out["is_multimodal"].fillna(False).astype(bool)]
    if sort == "pictured":  # cards with a picture first, each half by multimodality
        pictured = pd.Series(False, index=out.index)
        for col in ("featvis", "top_images"):
            if col in out.columns:
                pictured |= out[col].map(lambda v: isinstance(v, str) and bool(v.strip()))
        score = (pd.to_numeric(out["multimodal_score"], errors="coerce") if "multimodal_score" in out.columns
                 else pd.Series(float("nan"), index=out.index))
        order = pd.DataFrame({"p": pictured, "s": score.fillna(-float("inf")), "n": out["neuron"]}, index=out.index)
        return out.loc[order.sort_values(["p", "s", "n"], ascending=[False, False, True], kind="stable").index]
    sort = sort if sort in SORTS and sort in out.columns else "neuron"
    if sort == "neuron":
        return out.sort_values("neuron", kind="stable")
    return out.sort_values([sort, "neuron"], ascending=[False, True], kind="stable")


def card(store: RunStore, view: RunView, row: pd.Series) -> html.Div:
    n = int(row["neuron"])
    thumb = row.get("featvis") or row.get("top_images")
    url = store.image_url(view, thumb) if isinstance(thumb, str) else None
    hidden = store.not_served(view, thumb) if url is None and isinstance(thumb, str) else None
    pic = html.Img(src=url, alt=f"neuron {n}", className="card-img") if url else \
        html.Div("not served (linked run)" if hidden else "no image", className="card-img noimg", title=hidden or "")
    badges = [html.Span("multimodal", className="badge")] if bool(row.get("is_multimodal", False)) else []
    concept = _concept(row)
    return html.Div([pic, html.Div(f"#{n}", className="card-title"),
                     html.Div(str(row.get("label", "")), className="card-label"),
                     html.Div(f"multimodal for: {concept}", className="card-concept") if concept else None,
                     html.Div(f"score {fmt_num(row.get('label_score'))} · mm {fmt_num(row.get('multimodal_score'))}",
                              className="card-score"), *badges],
                    id=ids.card_id(n), n_clicks=0, className="neuron-card", **{"data-neuron": str(n)})


def _concept(row: pd.Series) -> str | None:
    """The concept the neuron is multimodal for (``multimodal_concept`` column), when recorded."""
    value = row.get("multimodal_concept")
    return str(value) if isinstance(value, str) and value.strip() else None


def grid(store: RunStore, view: RunView | None, search: str | None, sort: str | None, mm_only: bool,
         page: int) -> tuple[list, str, int]:
    """(cards, count text, clamped page index) for one page of the filtered neurons."""
    df = store.table(view, "neurons") if view is not None else None
    if df is None:
        return [message("this run has no neurons table yet")], "", 0
    sel = filtered(df, search, sort, mm_only)
    pages = max(1, math.ceil(len(sel) / PAGE_SIZE))
    page = min(max(0, int(page or 0)), pages - 1)
    chunk = sel.iloc[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
    cards = [card(store, view, row) for _, row in chunk.iterrows()]
    text = f"{len(sel)} of {len(df)} neurons · page {page + 1} of {pages}"
    return cards or [message("no neuron matches this search")], text, page


def detail(store: RunStore, view: RunView, neuron: int) -> html.Div:
    df = store.table(view, "neurons")
    if df is None or neuron not in set(df["neuron"]):
        return message(f"neuron {neuron} is not in this run")
    row = df[df["neuron"] == neuron].iloc[0]
    labels = [x for x in str(row.get("labels", "") or "").split(";") if x]
    scores = [x for x in str(row.get("label_scores", "") or "").split(";") if x]
    if len(scores) == len(labels):
        labels = [f"{lab} ({sc})" for lab, sc in zip(labels, scores)]
    stats = [("layer", row.get("layer")), ("label", row.get("label")),
             *([("multimodal concept", _concept(row))] if _concept(row) else []),
             ("label score", fmt_num(row.get("label_score"))),
             ("multimodal score", fmt_num(row.get("multimodal_score"))),
             ("image response", fmt_num(row.get("image_response"))), ("word response", fmt_num(row.get("word_response"))),
             ("mean", fmt_num(row.get("mean"))), ("std", fmt_num(row.get("std"))), ("max", fmt_num(row.get("max")))]
    tops = store.table(view, "neuron_top_images")
    top_rows = tops[tops["neuron"] == neuron] if tops is not None and "neuron" in tops else None
    return html.Div([
        html.H3(f"Neuron {neuron}", id="neuron-detail-title"),
        dcc.Link("open its unit page (shareable link)", id="neuron-unit-link",
                 href=unit_url("neuron", store.run_name(view), (str(row.get("layer")), str(neuron)))),
        html.Div([image(store, view, row.get("featvis"), "feature visualisation", "detail-img"),
                  image(store, view, row.get("top_images"), "top images", "detail-img"),
                  image(store, view, row.get("attribution"), "attribution", "detail-img")], className="detail-images"),
        html.Table(html.Tbody([html.Tr([html.Th(k), html.Td(str(v), **{"data-field": k})]) for k, v in stats]),
                   className="data-table"),
        html.Div([html.Strong("top labels: "), html.Ol([html.Li(x) for x in labels])]),
        html.H4("top activating images"),
        table(top_rows, ["rank", "id", "activation"] + [c for c in (top_rows.columns if top_rows is not None else [])
                                                        if c not in ("neuron", "rank", "id", "activation")][:4]),
    ], className="neuron-detail-inner")


@needs_audit(AUDIT)
def layout(store: RunStore, a: RunView | None, b: RunView | None) -> html.Div:
    cards, count, _ = grid(store, a, "", DEFAULT_SORT, False, 0)
    abl = store.table(a, "ablation")
    return html.Div([html.Div([
        run_banner(a),
        kpis(a, "neurons", [("layer", "layer"), ("n_neurons", "neurons"), ("n_images", "probe images"),
                            ("n_multimodal", "multimodal"), ("n_rendered", "rendered"),
                            ("label_accuracy", "label accuracy (toy)")]),
        html.Div([dcc.Input(id=ids.NEURON_SEARCH, type="text", placeholder="search labels…", debounce=True, value=""),
                  dcc.Dropdown(id=ids.NEURON_SORT, options=[{"label": v, "value": k} for k, v in SORTS.items()],
                               value=DEFAULT_SORT, clearable=False, className="sort"),
                  dcc.Checklist(id=ids.NEURON_MULTIMODAL, options=[{"label": " multimodal only", "value": "mm"}], value=[]),
                  html.Button("◀ prev", id=ids.NEURON_PREV, n_clicks=0),
                  html.Button("next ▶", id=ids.NEURON_NEXT, n_clicks=0),
                  html.Span(count, id=ids.NEURON_COUNT, className="muted"),
                  dcc.Store(id=ids.NEURON_PAGE, data=0)], className="controls"),
        html.Div([html.Div(cards, id=ids.NEURON_GRID, className="neuron-grid"),
                  html.Div(message("click a neuron card to see its detail"), id=ids.NEURON_DETAIL, className="neuron-detail")],
                 className="neuron-split"),
        section("Ablation", table(abl)) if abl is not None else None,
    ], className="main"), modelcard_panel(AUDIT, a)], className="page")


def register_callbacks(app, store: RunStore) -> None:
    @app.callback(Output(ids.NEURON_GRID, "children"), Output(ids.NEURON_COUNT, "children"),
                  Output(ids.NEURON_PAGE, "data"),
                  Input(ids.NEURON_SEARCH, "value"), Input(ids.NEURON_SORT, "value"),
                  Input(ids.NEURON_MULTIMODAL, "value"), Input(ids.NEURON_PREV, "n_clicks"),
                  Input(ids.NEURON_NEXT, "n_clicks"), State(ids.NEURON_PAGE, "data"), State(ids.RUN_A, "value"),
                  prevent_initial_call=True)
    def _update_grid(search, sort, mm, _prev, _next, page, run_a):
        page = int(page or 0)
        trig = ctx.triggered_id
        if trig == ids.NEURON_NEXT:
            page += 1
        elif trig == ids.NEURON_PREV:
            page -= 1
        else:
            page = 0  # a new search or sort starts at the first page
        cards, text, page = grid(store, store.for_audit(run_a, AUDIT), search, sort, bool(mm), page)
        return cards, text, page

    @app.callback(Output(ids.NEURON_DETAIL, "children"), Input({"type": ids.NEURON_CARD, "index": ALL}, "n_clicks"),
                  State(ids.RUN_A, "value"), prevent_initial_call=True)
    def _show_detail(clicks, run_a):
        trig = ctx.triggered_id
        if not isinstance(trig, dict) or not any(c for c in clicks or []):
            return no_update
        if not ctx.triggered or not ctx.triggered[0].get("value"):
            return no_update  # cards re-rendered, not clicked
        view = store.for_audit(run_a, AUDIT)
        if view is None:
            return message("the chosen run is gone")
        return detail(store, view, int(trig["index"]))
