"""Overview: every run found, what made it, and its headline numbers; choose runs here."""
from __future__ import annotations

from urllib.parse import urlencode

from dash import dcc, html

from clipaudit.runs import RunView

from . import ids
from .components import message, modelcard_panel, run_banner
from .data import RunStore, headline, model_facts

PATH = "/"
TITLE = "Overview"
AUDIT = None


def _choose(name: str, a: str | None, b: str | None) -> html.Div:
    """Links that make this run A, or B (keeping A) for the Compare page."""
    as_a = urlencode({"a": name, **({"b": b} if b and b != name else {})})
    as_b = urlencode({"a": a, "b": name}) if a and a != name else None
    return html.Div([dcc.Link("view as A", href=f"/?{as_a}", className="choose-a"),
                     html.Br(), dcc.Link("compare as B", href=f"/compare?{as_b}", className="choose-b") if as_b else None],
                    className="small")


def _row(store: RunStore, view: RunView, chosen: set[str], a: str | None = None, b: str | None = None) -> html.Tr:
    m = model_facts(view)
    name = store.run_name(view)
    model = [html.Div(m["name"]), html.Div(f"pretrained: {m['pretrained'] or 'default'}", className="muted small")]
    if m["random_init"]:
        model.append(html.Span("RANDOM-INIT", className="badge-danger"))
    heads = [html.Div(f"{label}: {value}") for label, value in headline(view)]
    status = view.manifest.get("status", "?")
    return html.Tr([
        html.Td(html.Strong(name) if name in chosen else name),
        html.Td(model),
        html.Td(m["weights_hash"][:12], className="mono"),
        html.Td(", ".join(a for a in view.audits if a)),
        html.Td(view.manifest.get("command_line", ""), className="mono small"),
        html.Td((view.manifest.get("started") or "")[:19].replace("T", " ")),
        html.Td(status, className="" if status == "complete" else "warn"),
        html.Td(heads or html.Span("no headline numbers yet", className="muted")),
        html.Td(_choose(name, a, b)),
    ], **{"data-run": name})


def layout(store: RunStore, a: RunView | None, b: RunView | None) -> html.Div:
    runs, broken = store.scan()
    if not runs:
        body = message(f"No run folders found in {store.root}. Make one with `clipaudit audit --quick` "
                       "(or any audit command with --out inside this folder), then reload.", "warn")
    else:
        names = [store.run_name(v) if v is not None else None for v in (a, b)]
        chosen = {n for n in names if n}
        head = html.Thead(html.Tr([html.Th(h) for h in ("run", "model", "weights", "audits", "command",
                                                         "started (UTC)", "status", "headline", "choose")]))
        body = html.Table([head, html.Tbody([_row(store, v, chosen, *names) for v in runs])], id=ids.RUNS_TABLE,
                          className="data-table")
    notes = html.Div([html.H4("Folders that could not be read"),
                      html.Ul([html.Li(f"{x.name}: {x.reason}") for x in broken])], id=ids.BROKEN_LIST) if broken else None
    return html.Div([
        html.Div([html.H2("Runs"), run_banner(a) if a is not None else None,
                  html.P("Choose run A (and optionally run B for Compare) in the selectors above.", className="muted"),
                  body, notes], className="main"),
        modelcard_panel(None, a),
    ], className="page")
