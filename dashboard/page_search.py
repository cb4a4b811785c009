"""Search: find units of the open runs by label; each result links to its unit page.

The query lives in the URL (``/search?q=pizza``), so a search can be shared and back/forward
return to it.
"""
from __future__ import annotations

from urllib.parse import parse_qs, quote

from dash import Input, Output, dcc, html

from . import ids
from .components import message
from .data import RunStore, fmt_num
from .search import EMBEDDING_NOTE, embedding_available, search_units

PATH = "/search"
TITLE = "Search"
WANTS_QUERY = True  # the router passes the URL's query string (``?q=...``)


def results(store: RunStore, query: str | None) -> tuple[list, str]:
    """(result items, count text) for ``query``."""
    if not (query or "").strip():
        return [message("type a word, e.g. pizza: units whose labels match are listed, best first")], ""
    hits = search_units(store, query)
    if hits.empty:
        return [message(f"no unit of the open runs has a label like {query!r}")], "0 units"
    items = [html.Li([dcc.Link(f"{r.kind} {r.address}", href=r.url, className="search-hit"),
                      html.Span(f"  {r.label}", className="search-label"),
                      html.Span(f"  · run {r.run} · {getattr(r, 'how', 'label')} match {fmt_num(r.match)} · "
                                f"score {fmt_num(r.score)}",
                                className="muted small")], **{"data-kind": r.kind, "data-label": str(r.label)})
             for r in hits.itertuples()]
    share = dcc.Link(f"link to this search: /search?q={query}", href=f"/search?q={quote(query or '')}",
                     className="muted small")
    return [html.Ol(items, className="search-results"), share], f"{len(hits)} units"


def layout(store: RunStore, a=None, b=None, search: str | None = None) -> html.Div:
    query = parse_qs((search or "").lstrip("?")).get("q", [""])[0]
    found, count = results(store, query)
    return html.Div([html.Div([
        html.H2("Search units"),
        html.Div([dcc.Input(id=ids.SEARCH_INPUT, type="text", value=query, debounce=True,
                            placeholder="label, e.g. pizza", autoFocus=True),
                  html.Span(count, id=ids.SEARCH_COUNT, className="muted")], className="controls"),
        html.Div("searching labels, then the nearest units by embedding (the query's text embedding against "
                 "each neuron's direction)" if embedding_available(store) else EMBEDDING_NOTE, className="muted small"),
        html.Div(found, id=ids.SEARCH_RESULTS),
    ], className="main")], className="page")


def register_callbacks(app, store: RunStore) -> None:
    @app.callback(Output(ids.SEARCH_RESULTS, "children"), Output(ids.SEARCH_COUNT, "children"),
                  Input(ids.SEARCH_INPUT, "value"), prevent_initial_call=True)
    def _search(query):
        return results(store, query)
