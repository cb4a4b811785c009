"""One page per unit (neuron, attention head, SAE latent) at a stable URL:
``/unit/<kind>/<run>/<address...>`` (e.g. ``/unit/neuron/<run>/<layer>/<index>``).

Why the URL holds everything: a page can be bookmarked, shared and reached by back/forward
without any state in the browser. The data come from :mod:`.units`; a unit's data also download
as JSON or Parquet from ``/unitdata/<kind>/<run>/<address...>.json|.parquet`` (built in memory
from the run's tables; no file is served from outside the runs folder).
"""
from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html

from clipaudit.modelcard import get_limitation

from . import ids
from .components import message, run_banner, section, table
from .data import RunStore, fmt_num
from .units import HISTOGRAM_TABLE, KINDS, Unit, get_unit, unit_url

PREFIX = "/unit/"
EXPORT_PREFIX = "/unitdata/"
TITLE = "Unit"

__all__ = ["PREFIX", "EXPORT_PREFIX", "layout", "add_export_route", "export_bytes"]


def _labels(unit: Unit) -> html.Div:
    if not unit.labels:
        return html.Div(message("no labels recorded for this unit"), id=ids.UNIT_LABELS)
    items = [html.Li([html.Span(text), html.Span(f"  {fmt_num(score)}" if score is not None else "", className="muted")])
             for text, score in unit.labels]
    return html.Div([html.Strong("labels (score)"), html.Ol(items)], id=ids.UNIT_LABELS)


def _stats(unit: Unit) -> html.Table:
    rows = [html.Tr([html.Th(k.replace("_", " ")), html.Td(fmt_num(v) if not isinstance(v, str) else v,
                                                           **{"data-field": k})]) for k, v in unit.stats.items()]
    return html.Table(html.Tbody(rows), className="data-table")


def _histogram(df: pd.DataFrame) -> dcc.Graph:
    fig = go.Figure(go.Bar(x=(df["bin_low"] + df["bin_high"]) / 2, y=df["count"],
                           width=(df["bin_high"] - df["bin_low"]).tolist()))
    fig.update_layout(height=240, margin=dict(l=40, r=10, t=10, b=40), xaxis_title="activation", yaxis_title="images")
    return dcc.Graph(figure=fig, config={"displayModeBar": False})


def _limitations(unit: Unit) -> html.Div:
    if not unit.limitations:
        return message("this unit bears on no model-card limitation that its audit measures")
    items = []
    for lid, why in unit.limitations.items():
        lim = get_limitation(lid)
        items.append(html.Li([html.Strong(lim.title), html.Span(f" ({lim.id}) ", className="muted"),
                              html.Div(lim.claim, className="mc-claim"), html.Div(why)],
                             **{"data-limitation": lid}))
    return html.Ul(items)


def _neighbours(store: RunStore, unit: Unit) -> html.Div:
    """Links to the previous and next unit of the same kind in the run (by address order)."""
    kind = KINDS[unit.kind]
    view = store.get(unit.run)
    idx = kind.index(store, view) if view is not None else None
    links: list[Any] = []
    if idx is not None and not idx.empty:
        addrs = list(idx["address"])
        here = "/".join(unit.address)
        if here in addrs:
            i = addrs.index(here)
            if i > 0:
                links.append(dcc.Link(f"◀ {addrs[i - 1]}", href=unit_url(unit.kind, unit.run, tuple(addrs[i - 1].split("/"))),
                                      id=ids.UNIT_PREV))
            if i + 1 < len(addrs):
                links.append(dcc.Link(f"{addrs[i + 1]} ▶", href=unit_url(unit.kind, unit.run, tuple(addrs[i + 1].split("/"))),
                                      id=ids.UNIT_NEXT))
    links.append(dcc.Link("search units", href="/search"))
    return html.Div(links, className="unit-nav")


def _body(store: RunStore, unit: Unit) -> list:
    view = store.get(unit.run)
    export = unit.url.replace(PREFIX, EXPORT_PREFIX, 1)
    parts: list[Any] = [
        run_banner(view) if view is not None else None,
        html.H2(unit.title + f" · run {unit.run}", id=ids.UNIT_TITLE),
        html.Div(unit.label or "(no label)", id=ids.UNIT_LABEL, className="unit-label"),
        _neighbours(store, unit),
        html.Div([html.A("export JSON", href=export + ".json", id=ids.UNIT_EXPORT_JSON, download=""), " · ",
                  html.A("export Parquet", href=export + ".parquet", id=ids.UNIT_EXPORT_PARQUET, download="")],
                 className="small"),
        section("Labels", _labels(unit)),
        section("Statistics", _stats(unit)),
    ]
    if unit.images and view is not None:
        figs = []
        for cap, rel in unit.images.items():
            url = store.image_url(view, rel)
            pic = html.Img(src=url, alt=cap, title=cap, className="unit-img") if url else \
                html.Div(store.not_served(view, rel) or "missing from the run folder", className="muted small")
            figs.append(html.Figure([pic, html.Figcaption(cap, className="small")]))
        parts.append(section("Pictures", html.Div(figs, className="unit-images")))
    for name, df in unit.tables.items():
        if name == "activation histogram" and {"bin_low", "bin_high", "count"} <= set(df.columns):
            parts.append(section(name, _histogram(df)))
        else:
            parts.append(section(name, table(df, max_rows=30)))
    parts.append(section("Model-card limitation", _limitations(unit)))
    if unit.missing:
        parts.append(section("Not in this run", html.Ul([html.Li(m, className="muted") for m in unit.missing])))
    return parts


def layout(store: RunStore, pathname: str) -> html.Div:
    """The unit page for ``pathname``, or a page saying what is wrong with the address."""
    try:
        unit = get_unit(store, pathname)
    except ValueError as err:
        return html.Div([html.Div([html.H2("No such unit"), html.Div(str(err), id=ids.UNIT_ERROR,
                                                                     className="message message-warn"),
                                   dcc.Link("search units", href="/search")], className="main")], className="page")
    return html.Div([html.Div(_body(store, unit), className="main unit-page")], className="page")


def export_bytes(store: RunStore, rest: str) -> tuple[bytes, str]:
    """(body, mimetype) of ``<kind>/<run>/<address...>.json|.parquet``.

    Raises:
        ValueError: unknown format or unit (the message says which).
    """
    stem, dot, fmt = rest.rpartition(".")
    if not dot or fmt not in ("json", "parquet"):
        raise ValueError("export as .json or .parquet")
    unit = get_unit(store, PREFIX + stem)
    if fmt == "json":
        return json.dumps(unit.to_dict(), indent=1, default=str).encode(), "application/json"
    buf = io.BytesIO()
    unit.to_frame().to_parquet(buf, index=False)
    return buf.getvalue(), "application/octet-stream"


def _filename(path: str) -> str:
    """``/unitdata/neuron/run/layer/3.json`` -> ``neuron-run-layer-3.json`` (safe characters only)."""
    from urllib.parse import unquote

    raw = "-".join(unquote(p) for p in path[len(EXPORT_PREFIX):].split("/"))
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in raw)


def add_export_route(server, store: RunStore) -> None:
    """Serve ``/unitdata/...`` (a 404 with the reason as text for unknown units)."""
    from flask import Response, request

    @server.before_request
    def _unitdata():
        if not request.path.startswith(EXPORT_PREFIX):
            return None
        try:
            body, mime = export_bytes(store, request.path[len(EXPORT_PREFIX):])
        except ValueError as err:
            return Response(str(err), status=404, mimetype="text/plain")
        resp = Response(body, mimetype=mime)
        resp.headers["Content-Disposition"] = f'attachment; filename="{_filename(request.path)}"'
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp
