"""Live bench (only with ``clipaudit dashboard --model NAME``): pick a toy scene or upload an
image, optionally write a word on it with the typographic renderer, and see the zero-shot
probabilities, the units it activates most (linked to their unit pages when an open run holds
that layer), and what ablating one unit does to the probabilities.

The computations live in :mod:`.bench`; this module holds the layout and thin callbacks.
"""
from __future__ import annotations

from typing import Any

import pandas as pd
from dash import Input, Output, State, ctx, dcc, html, no_update

from clipaudit.attacks.typographic import POSITIONS, STYLES

from . import ids
from .bench import Bench, decode_upload, image_data_url, scene_image
from .components import message, section
from .data import RunStore, fmt_num, fmt_rate
from .units import unit_url

PATH = "/bench"
TITLE = "Live"
SHOWN_CLASSES = 8


def _neurons_run(store: RunStore, bench: Bench) -> str | None:
    """Newest run of the neurons audit on this model's layer (for links to unit pages)."""
    model = getattr(bench.model, "name", None)
    for view in store.runs():
        s = view.summary.get("neurons") or {}
        if s.get("layer") == bench.resolved.path and (view.manifest.get("model") or {}).get("name") == model:
            return store.run_name(view)
    return None


def _heads_run(store: RunStore, bench: Bench) -> str | None:
    """Newest run of the heads audit on this model (for links to head pages)."""
    model = getattr(bench.model, "name", None)
    for view in store.runs():
        if "heads" in view.summary and (view.manifest.get("model") or {}).get("name") == model:
            return store.run_name(view)
    return None


def compute(bench: Bench, store: RunStore, source: str | None, scene: str | None, index: Any, word: str | None,
            size: Any, position: str | None, style: str | None, unit: Any, value: Any = None) -> dict:
    """Everything the bench shows for one set of controls (no Dash objects; tested directly).

    Returns:
        dict: ``image`` (data URL of what the model sees), ``probs`` (DataFrame class, clean,
        word, ablated as available; ``ablated`` is the unit clamped to ``value``, 0 when empty), ``top`` (DataFrame unit, activation, url), ``note`` (a one-line
        message or ''), ``error`` (one line or '').
    """
    out: dict = {"image": None, "probs": None, "top": None, "heads": None, "note": "", "error": ""}
    try:
        if source:
            img = decode_upload(source, "the upload")
        else:
            img = scene_image(scene or "apple", int(index or 0))
        pixels = bench.pixels(img)
        clean = bench.probs(pixels)
        table = pd.DataFrame({"class": clean.index, "clean": clean.values})
        word = (word or "").strip()
        if word:
            size_px = int(size) if size not in (None, "") else None
            pixels = bench.write_word(pixels, word, size_px, position or "center", style or "note")
            table["word"] = bench.probs(pixels).values
        u = bench.check_unit(unit)
        v = bench.check_value(value)
        if u is not None:
            table["ablated"] = bench.probs(pixels, ablate=u, value=v).values
        sort_col = "word" if "word" in table else "clean"
        out["probs"] = table.sort_values(sort_col, ascending=False, kind="stable").reset_index(drop=True)
        top = bench.top_units(pixels)
        run = _neurons_run(store, bench)
        top["url"] = [unit_url("neuron", run, (bench.resolved.path, str(i))) if run else None for i in top["unit"]]
        out["top"] = top
        heads = bench.top_heads(pixels)
        if heads is not None:
            hrun = _heads_run(store, bench)
            heads["url"] = [unit_url("head", hrun, (str(l), str(h))) if hrun else None
                            for l, h in zip(heads["layer"], heads["head"])]
        out["heads"] = heads
        out["image"] = image_data_url(pixels)
    except ValueError as err:
        out["error"] = str(err)
    return out


def _probs_table(df: pd.DataFrame) -> html.Table:
    cols = [c for c in ("clean", "word", "ablated") if c in df]
    names = {"clean": "as is", "word": "with the word", "ablated": "unit ablated / clamped"}
    head = html.Thead(html.Tr([html.Th("class"), *[html.Th(names[c]) for c in cols]]))
    rows = []
    for _, r in df.head(SHOWN_CLASSES).iterrows():
        cells = [html.Td(str(r["class"]))]
        for c in cols:
            cells.append(html.Td([html.Div(style={"width": f"{100 * float(r[c]):.0f}px", "height": "8px",
                                                  "background": "#0b5cad", "display": "inline-block",
                                                  "marginRight": "6px"}),
                                  html.Span(fmt_rate(r[c]), **{"data-prob": f"{float(r[c]):.6f}"})],
                                 **{"data-col": c}))
        rows.append(html.Tr(cells, **{"data-class": str(r["class"])}))
    return html.Table([head, html.Tbody(rows)], className="data-table")


def _top_list(df: pd.DataFrame) -> html.Ol:
    items = []
    for _, r in df.iterrows():
        name = f"unit {int(r['unit'])}"
        link = dcc.Link(name, href=r["url"]) if isinstance(r["url"], str) else html.Span(name)
        items.append(html.Li([link, html.Span(f"  activation {fmt_num(r['activation'])}", className="muted")]))
    return html.Ol(items)


def _heads_list(df: pd.DataFrame | None) -> html.Div:
    if df is None or df.empty:
        return html.Div("this model's vision tower has no attention heads clipaudit can read", className="muted")
    items = []
    for _, r in df.iterrows():
        name = f"head {int(r['layer'])}.{int(r['head'])}"
        link = dcc.Link(name, href=r["url"]) if isinstance(r.get("url"), str) else html.Span(name)
        items.append(html.Li([link, html.Span(f"  direct contribution to '{r['predicted']}' "
                                              f"{fmt_num(r['contribution'])} logits", className="muted")]))
    return html.Ol(items)


def outputs(result: dict) -> tuple:
    if result["error"]:
        return no_update, message(result["error"], "error"), no_update, no_update, no_update
    return (result["image"], "", _probs_table(result["probs"]), _top_list(result["top"]),
            _heads_list(result.get("heads")))


def make_page(bench: Bench):
    """A page object (PATH, TITLE, layout, register_callbacks) bound to ``bench``."""
    from clipaudit.toy.world import OBJECT_CLASSES

    class Page:
        PATH, TITLE = globals()["PATH"], globals()["TITLE"]

        @staticmethod
        def layout(store: RunStore, a=None, b=None) -> html.Div:
            controls = html.Div([
                html.Label("toy scene"),
                dcc.Dropdown(id=ids.BENCH_SCENE, options=list(OBJECT_CLASSES), value="apple", clearable=False),
                html.Label("scene number"),
                dcc.Input(id=ids.BENCH_SCENE_INDEX, type="number", min=0, step=1, value=0),
                html.Label("or your own image"),
                dcc.Upload(html.Div("drop an image here or click (max 50 MB)"), id=ids.BENCH_UPLOAD,
                           className="upload-box", multiple=False),
                html.Div(id=ids.BENCH_UPLOAD_MESSAGE),
                dcc.Store(id=ids.BENCH_SOURCE, data=None),
                html.Label("write a word on it"),
                dcc.Input(id=ids.BENCH_WORD, type="text", value="", debounce=True, placeholder="e.g. ipod"),
                html.Label("font size (model pixels, empty = auto)"),
                dcc.Input(id=ids.BENCH_SIZE, type="number", min=1, step=1, value=None, debounce=True),
                html.Label("position"),
                dcc.Dropdown(id=ids.BENCH_POSITION, options=list(POSITIONS), value="center", clearable=False),
                html.Label("style"),
                dcc.Dropdown(id=ids.BENCH_STYLE, options=list(STYLES), value="note", clearable=False),
                html.Label(f"ablate unit of {bench.resolved.path} (0..{bench.n_units - 1})"),
                dcc.Input(id=ids.BENCH_UNIT, type="number", min=0, step=1, value=None, debounce=True),
                html.Label("clamp it to (empty or 0 = ablate; e.g. 5 to steer toward the unit)"),
                dcc.Input(id=ids.BENCH_VALUE, type="number", value=None, debounce=True),
            ], className="section")
            result = compute(bench, store, None, "apple", 0, "", None, "center", "note", None)
            img, msg, probs, top, heads = outputs(result)
            shown = html.Div([
                html.Div(f"model {getattr(bench.model, 'name', '?')} · classes: {', '.join(bench.classes)}",
                         className="muted small"),
                html.Img(id=ids.BENCH_IMAGE, src=img, className="bench-img", alt="what the model sees"),
                html.Div(msg, id=ids.BENCH_MESSAGE),
                section("Zero-shot probabilities", html.Div(probs, id=ids.BENCH_PROBS)),
                section(f"Most active units of {bench.resolved.path}", html.Div(top, id=ids.BENCH_TOP)),
                section("Heads that push the prediction most (direct logit attribution)",
                        html.Div(heads, id=ids.BENCH_HEADS)),
            ])
            return html.Div([html.Div([html.H2("Live bench"), html.Div([controls, shown], className="bench-grid")],
                                      className="main")], className="page")

        @staticmethod
        def register_callbacks(app, store: RunStore) -> None:
            @app.callback(Output(ids.BENCH_SOURCE, "data"), Output(ids.BENCH_UPLOAD_MESSAGE, "children"),
                          Input(ids.BENCH_UPLOAD, "contents"), Input(ids.BENCH_SCENE, "value"),
                          Input(ids.BENCH_SCENE_INDEX, "value"), State(ids.BENCH_UPLOAD, "filename"),
                          prevent_initial_call=True)
            def _source(contents, _scene, _index, filename):
                if ctx.triggered_id != ids.BENCH_UPLOAD:
                    return None, ""  # a scene was picked: back to the scene
                try:
                    img = decode_upload(contents, filename)
                except ValueError as err:
                    return None, message(str(err), "error")
                return image_data_url(bench.pixels(img)), message(f"using {filename or 'the upload'}", "info")

            @app.callback(Output(ids.BENCH_IMAGE, "src"), Output(ids.BENCH_MESSAGE, "children"),
                          Output(ids.BENCH_PROBS, "children"), Output(ids.BENCH_TOP, "children"),
                          Output(ids.BENCH_HEADS, "children"), Input(ids.BENCH_SOURCE, "data"), Input(ids.BENCH_SCENE, "value"),
                          Input(ids.BENCH_SCENE_INDEX, "value"), Input(ids.BENCH_WORD, "value"),
                          Input(ids.BENCH_SIZE, "value"), Input(ids.BENCH_POSITION, "value"),
                          Input(ids.BENCH_STYLE, "value"), Input(ids.BENCH_UNIT, "value"),
                          Input(ids.BENCH_VALUE, "value"), prevent_initial_call=True)
            def _run(source, scene, index, word, size, position, style, unit, value):
                return outputs(compute(bench, store, source, scene, index, word, size, position, style, unit, value))

    return Page
