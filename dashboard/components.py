"""Building blocks shared by the pages: the model-card panel, headline figures, tables, charts.

Every user-provided string (labels, words, class names, ids) goes into components as a Python
string, which Dash renders as text; nothing here builds HTML from strings.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterable

import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html

from clipaudit.modelcard import measured_figures
from clipaudit.runs import RunView

from . import ids
from .data import fmt_ci, fmt_num, fmt_rate, model_facts

# summary keys that hold rates (shown as %), the rest as plain numbers
RATE_KEYS = {"attack_success_rate", "attack_success", "flip_rate", "clean_accuracy", "robust_accuracy", "max_harmful_rate",
             "max_label_set_shift", "true_prob_drop", "target_prob_rise", "label_accuracy",
             "attacked_accuracy", "spliced_accuracy", "defended_clean_accuracy", "defended_attacked_accuracy",
             "defended_attack_success_rate", "dead_fraction"}


def fmt_value(key: str, value: Any) -> str:
    """Format a summary value the way the dashboard shows it everywhere."""
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and all(isinstance(v, (int, float)) or v is None for v in value):
            return fmt_ci(value, rate=key.replace("_ci", "") in RATE_KEYS)
        return ", ".join(str(v) for v in value) or "none"
    if isinstance(value, bool) or value is None:
        return fmt_num(value)
    if isinstance(value, (int, float)) and key.split(".")[-1] in RATE_KEYS:
        return fmt_rate(value)
    return fmt_num(value) if isinstance(value, (int, float)) else str(value)


def message(text: str, kind: str = "info") -> html.Div:
    return html.Div(text, className=f"message message-{kind}")


def needs_audit(audit: str) -> Callable:
    """Decorate a page's ``layout(store, a, b)`` so that, when run ``a`` has no ``audit``
    results, the page shows why (and the model card panel) instead of empty charts.

    Why a decorator: every audit page needs the same guard, and one copy keeps the wording
    and the layout of the "nothing here" page identical across pages.
    """
    def wrap(layout: Callable[..., html.Div]) -> Callable[..., html.Div]:
        @functools.wraps(layout)
        def guarded(store, a: RunView | None, b: RunView | None) -> html.Div:
            note = missing_audit(a, audit)
            other = store.for_audit(store.run_name(a), audit) \
                if note is not None and a is not None and audit not in a.audits else None
            if other is not None and a is not None:  # separate per-audit runs: show the newest that has it
                shown = layout(store, other, b)
                return html.Div([message(f"Run {store.run_name(a)} has no {audit} results; showing "
                                         f"{store.run_name(other)}, the newest run that has them.", "info"), shown])
            if note is not None:
                return html.Div([html.Div(note, className="main"), modelcard_panel(audit, a)], className="page")
            return layout(store, a, b)
        return guarded
    return wrap


def missing_audit(view: RunView | None, audit: str) -> html.Div | None:
    """A clear note when no run is chosen or the run has no ``audit`` results (yet)."""
    if view is None:
        return message("Choose a run at the top of the page (none selected, or the chosen run no longer exists).")
    if audit not in view.summary and not any(t.startswith(audit) for t in view.tables()):
        status = view.manifest.get("status", "unknown")
        return message(f"Run {view.name} has no {audit} results (status: {status}; audits: "
                       f"{', '.join(a for a in view.audits if a) or 'none'}). "
                       f"Choose a run made with `clipaudit {audit}` or `clipaudit audit`.", "warn")
    return None  # a running run with partial results is shown, with run_banner saying so


def run_banner(view: RunView) -> html.Div:
    """Model, weights and status of the chosen run; random-init runs are marked loudly."""
    m = model_facts(view)
    parts: list[Any] = [html.Span(f"Run {view.name}", className="run-name"),
                        html.Span(f"model {m['name']} · pretrained {m['pretrained'] or 'default'} · "
                                  f"weights {m['weights_hash'][:12] or '?'}", className="run-model")]
    if m["random_init"]:
        parts.append(html.Span("RANDOM-INIT WEIGHTS: these numbers describe no trained CLIP", className="badge-danger"))
    for edit in view.manifest.get("interventions") or []:  # shown as text: the spec is user input
        parts.append(html.Span(f"EDITED MODEL ({edit.get('kind')}: {edit.get('spec')}): not the checkpoint as "
                               "published", className="badge-warn"))
    status = view.manifest.get("status")
    if status != "complete":
        parts.append(html.Span(f"status: {status} — results may be incomplete", className="badge-warn"))
    return html.Div(parts, className="run-banner")


def kpis(view: RunView, section: str, keys: Iterable[tuple[str, str]]) -> html.Div:
    """Headline figures of ``summary[section]``: value plus its ``<key>_ci`` when present."""
    values = view.summary.get(section, {}) or {}
    boxes = []
    for key, label in keys:
        if key not in values:
            continue
        ci = values.get(f"{key}_ci", values.get(f"{key.removesuffix('_rate')}_ci"))
        boxes.append(html.Div([html.Div(label, className="kpi-label"),
                               html.Div(fmt_value(key, values[key]), id=ids.kpi(section, key), className="kpi-value"),
                               html.Div(fmt_value(f"{key}_ci", ci) if ci is not None else "", className="kpi-ci",
                                        id=ids.kpi(section, key) + "-ci")],
                              className="kpi"))
    return html.Div(boxes or [message("no headline numbers written yet")], className="kpis")


def modelcard_panel(audit: str | None, view: RunView | None, other: RunView | None = None) -> html.Aside:
    """The model-card limitations ``audit`` measures (all when None), each with the figure from
    ``view`` (and from ``other``, on the Compare page) or a plain 'not measured in this run'."""
    runs = [r for r in (view, other) if r is not None]
    figures = [measured_figures(r.summary, audit) for r in runs] or [measured_figures({}, audit)]
    items = []
    for i, m in enumerate(figures[0]):
        lim = m.limitation
        lines = []
        for k, run_figs in enumerate(figures):
            mk = run_figs[i]
            tag = f"{'AB'[k]}: " if other is not None else ""
            if mk.measured:
                lines.append(html.Div([tag, html.Span(mk.metric or "", className="mc-metric"), " = ",
                                       html.Strong(fmt_value(mk.metric or "", mk.value), className="mc-value")],
                                      className="mc-figure"))
            else:
                lines.append(html.Div(f"{tag}not measured in this run", className="mc-figure mc-missing"))
        items.append(html.Li([html.Div([html.Strong(lim.title), html.Span(f" ({lim.id})", className="muted")]),
                              html.Div(lim.claim, className="mc-claim"), *lines,
                              html.Div(lim.how_measured, className="muted small") if lim.how_measured else None],
                             className="mc-item", **{"data-limitation": lim.id}))
    title = "CLIP model card: limitations measured here" if audit else "CLIP model card: every limitation"
    return html.Aside([html.H3(title), html.Ul(items)], id=ids.MODELCARD, className="modelcard")


def table(df: pd.DataFrame | None, columns: list[str] | None = None, max_rows: int = 50,
          formats: dict[str, Callable[[Any], str]] | None = None, table_id: str | None = None) -> html.Div:
    """A plain HTML table (text cells only); rows past ``max_rows`` are counted, not shown."""
    if df is None or df.empty:
        return message("no rows")
    cols = [c for c in (columns or list(df.columns)) if c in df.columns]
    formats = formats or {}
    head = html.Thead(html.Tr([html.Th(c) for c in cols]))
    body = []
    for _, row in df.head(max_rows).iterrows():
        body.append(html.Tr([html.Td(formats.get(c, _cell)(row[c])) for c in cols]))
    extra = [html.Div(f"{len(df) - max_rows} more rows in the run folder's CSV", className="muted")] \
        if len(df) > max_rows else []
    kwargs = {"id": table_id} if table_id else {}
    return html.Div([html.Table([head, html.Tbody(body)], className="data-table", **kwargs), *extra])


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return fmt_num(v, 4)
    return "" if v is None else str(v)


def rate_bars(df: pd.DataFrame, x: str, y: str, lo: str = "ci_low", hi: str = "ci_high", title: str = "",
              color: str | None = None) -> dcc.Graph:
    """Rates as bars with their CIs as error bars (y axis in %)."""
    fig = go.Figure()
    groups = [(None, df)] if color is None or color not in df.columns else list(df.groupby(color, sort=False))
    for name, g in groups:
        err = dict(type="data", symmetric=False, array=(g[hi] - g[y]).clip(lower=0) * 100,
                   arrayminus=(g[y] - g[lo]).clip(lower=0) * 100) if lo in g and hi in g else None
        fig.add_bar(x=g[x].astype(str), y=g[y] * 100, error_y=err, name=str(name) if name is not None else y)
    fig.update_layout(title=title, yaxis_title="%", margin=dict(l=40, r=10, t=40, b=40), height=320,
                      showlegend=color is not None, barmode="group")
    return dcc.Graph(figure=fig, config={"displayModeBar": False})


def ci_line(df: pd.DataFrame, x: str, y: str, lo: str = "ci_low", hi: str = "ci_high", title: str = "",
            group: str | None = None, extra: list[tuple[str, str]] | None = None, x_title: str | None = None) -> dcc.Graph:
    """A dose-response curve with a shaded CI band per group."""
    fig = go.Figure()
    groups = [(None, df)] if group is None or group not in df.columns else list(df.groupby(group))
    for name, g in groups:
        g = g.sort_values(x)
        label = f"{group}={name}" if name is not None else y
        if lo in g and hi in g:
            fig.add_scatter(x=list(g[x]) + list(g[x])[::-1], y=list(g[hi] * 100) + list(g[lo] * 100)[::-1],
                            fill="toself", opacity=0.2, line=dict(width=0), showlegend=False, hoverinfo="skip")
        fig.add_scatter(x=g[x], y=g[y] * 100, mode="lines+markers", name=label)
        for col, name2 in extra or []:
            if col in g:
                fig.add_scatter(x=g[x], y=g[col] * 100, mode="lines", line=dict(dash="dot"), name=name2)
    fig.update_layout(title=title, yaxis_title="%", xaxis_title=x_title or x, height=340,
                      margin=dict(l=40, r=10, t=40, b=40))
    return dcc.Graph(figure=fig, config={"displayModeBar": False})


def image(store, view: RunView, rel: str | None, alt: str, cls: str = "run-image") -> html.Img | html.Div:
    url = store.image_url(view, rel)
    if url is None:
        why = store.not_served(view, rel)
        return html.Div(f"{alt}: {why or 'not rendered in this run'}", className="muted small")
    return html.Img(src=url, alt=alt, title=alt, className=cls)


def guard(title: str, build: Callable[[], Any]) -> Any:
    """``build()``, or a note naming the section when its table lacks what it needs.

    Why: one half-written or hand-edited table should cost one section, not the whole page.
    """
    try:
        return build()
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        what = f"missing column {err.args[0]!r}" if isinstance(err, KeyError) and err.args else \
            f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
        return html.Section([html.H3(title), message(f"Could not show this section ({what}); the table may be "
                                                     "half-written or not follow docs/run-folders.md.", "error")],
                            className="section")


def section(title: str, *children: Any) -> html.Section:
    return html.Section([html.H3(title), *children], className="section")
