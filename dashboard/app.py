"""The dashboard shell: header with run selectors, navigation, and a router to the page modules.

Why a plain router instead of ``use_pages``: the page modules live in this package and are
imported by name, so the app works the same installed or from a checkout, and every page
receives the same inputs (the runs store and the chosen runs A and B). The app reads run
folders only; it never loads a model.
"""
from __future__ import annotations

import sys
from pathlib import Path

from urllib.parse import parse_qs

from dash import Dash, Input, Output, State, dcc, html, no_update

from . import ids, page_compare, page_overview, page_search, page_unit
from .components import message
from .data import RunStore, model_facts
from .files import add_file_route

__all__ = ["create_app", "pages", "render_page"]


def pages() -> tuple:
    """Overview, one page per registered audit (``clipaudit.AUDITS``; its own or the generic one), Compare."""
    from clipaudit.audits import AUDITS

    from .page_generic import page_for

    return (page_overview, *[page_for(name) for name in AUDITS], page_compare, page_search)


ASSETS = Path(__file__).parent / "assets"


def _options(store: RunStore) -> list[dict]:
    opts = []
    for v in store.runs():
        m = model_facts(v)
        flag = " [RANDOM-INIT]" if m["random_init"] else ""
        status = "" if v.manifest.get("status") == "complete" else f" ({v.manifest.get('status')})"
        opts.append({"label": f"{store.run_name(v)} · {', '.join(a for a in v.audits if a)} · {m['name']}{flag}{status}",
                     "value": store.run_name(v)})
    return opts


def _default_runs(store: RunStore) -> tuple[str | None, str | None]:
    runs = store.runs()
    done = [v for v in runs if v.manifest.get("status") == "complete"] or runs
    return (store.run_name(done[0]) if done else None), None


def render_page(store: RunStore, pathname: str | None, run_a: str | None, run_b: str | None,
                search: str | None = None, extra: tuple = ()):
    """The page for ``pathname`` with runs A and B; a readable message instead of a traceback.

    ``/unit/...`` goes to the unit pages; ``search`` is the URL's query string (for pages that
    read it); ``extra`` are page modules beyond :func:`pages` (the live bench).
    """
    norm = (pathname or "/").rstrip("/") or "/"
    if norm.startswith(page_unit.PREFIX):
        try:
            return page_unit.layout(store, norm)
        except Exception as err:  # a damaged table costs the page, not the app
            detail = " ".join(str(err).split())[:300]
            print(f"dashboard: {norm}: {type(err).__name__}: {detail}", file=sys.stderr)
            return message(f"Could not show {norm}: {type(err).__name__}: {detail}", "error")
    every = (*pages(), *extra)
    page = next((p for p in every if p.PATH == norm), None)
    if page is None:
        return message(f"No page at {pathname}. Pages: " + ", ".join(p.PATH for p in every) +
                       ", /unit/<kind>/<run>/<address>", "warn")
    a, b = store.get(run_a), store.get(run_b)
    try:
        if getattr(page, "WANTS_QUERY", False):
            return page.layout(store, a, b, search=search)
        return page.layout(store, a, b)
    except Exception as err:  # a half-written or hand-edited run must not blank the page
        detail = " ".join(str(err).split())[:300]
        print(f"dashboard: {page.PATH} for run {run_a}: {type(err).__name__}: {detail}", file=sys.stderr)
        return message(f"Could not show {page.TITLE} for run {run_a}: {type(err).__name__}: {detail}. "
                       "The run may be half-written or not follow docs/run-folders.md.", "error")


def create_app(runs_dir: Path | str = "runs", model=None) -> Dash:
    """A Dash app over the run folders in ``runs_dir`` (start with ``app.run(host, port)``).

    ``model`` (an :class:`~clipaudit.model.AuditModel`) adds the live bench at ``/bench``; without
    it the dashboard only reads run folders.
    """
    store = RunStore(Path(runs_dir))
    extra: tuple = ()
    if model is not None:
        from .bench import MAX_UPLOAD_BYTES, Bench
        from .page_bench import make_page

        extra = (make_page(Bench(model)),)
        # search by embedding: the query's text embedding in this model's joint space (numpy (1, D))
        store.text_encoder = lambda texts: model.encode_texts(list(texts)).cpu().numpy()
    app = Dash(__name__, title="clipaudit", assets_folder=str(ASSETS), suppress_callback_exceptions=True,
               update_title=None)
    add_file_route(app.server, store.root)
    if extra:  # room for a 50 MB upload as base64 in a callback request, and no more
        app.server.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES * 4 // 3 + 1024 * 1024
    page_unit.add_export_route(app.server, store)

    def shell():
        a, b = _default_runs(store)
        opts = _options(store)
        return html.Div([
            dcc.Location(id=ids.URL),
            html.Header([
                html.H1("clipaudit"),
                html.Nav([dcc.Link(p.TITLE, href=p.PATH, className="nav-link", id=f"nav-{p.TITLE.lower()}")
                          for p in (*pages(), *extra)]),
                html.Div([html.Label("run A"),
                          dcc.Dropdown(id=ids.RUN_A, options=opts, value=a, clearable=False, persistence=True,
                                       persistence_type="session", className="run-select"),
                          html.Label("run B (compare)"),
                          dcc.Dropdown(id=ids.RUN_B, options=opts, value=b, persistence=True,
                                       persistence_type="session", className="run-select",
                                       placeholder="second run…")], className="run-pickers"),
            ]),
            html.Div(f"reading run folders in {store.root}", className="muted small root-note", id=ids.RUN_NOTE),
            dcc.Loading(html.Div(id=ids.PAGE), type="dot", delay_show=400),
        ])

    app.layout = shell

    @app.callback(Output(ids.PAGE, "children"), Input(ids.URL, "pathname"), Input(ids.RUN_A, "value"),
                  Input(ids.RUN_B, "value"), State(ids.URL, "search"))
    def _route(pathname, run_a, run_b, search):
        return render_page(store, pathname, run_a, run_b, search, extra)

    @app.callback(Output(ids.RUN_A, "value"), Output(ids.RUN_B, "value"), Input(ids.URL, "search"))
    def _runs_from_url(search):
        """``?a=RUN&b=RUN`` chooses the runs, so a view can be shared as a link."""
        query = parse_qs((search or "").lstrip("?"))
        names = set(store.names())
        a = query.get("a", [None])[0]
        b = query.get("b", [None])[0]
        return (a if a in names else no_update), (b if b in names else no_update)

    for page in (*pages(), *extra):
        if hasattr(page, "register_callbacks"):
            page.register_callbacks(app, store)
    app.clipaudit_store = store  # for tests and the benchmark
    app.clipaudit_bench = extra[0] if extra else None
    return app
