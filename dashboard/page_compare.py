"""Compare: two runs of one audit on the same inputs, with the paired difference and its CI."""
from __future__ import annotations

import plotly.graph_objects as go
from dash import dcc, html

from clipaudit.diff import diff_runs, left_out
from clipaudit.errors import ClipauditError
from clipaudit.runs import RunView

from . import ids
from .components import message, modelcard_panel, run_banner, section, table
from .data import RunStore, fmt_num, model_facts

PATH = "/compare"
TITLE = "Compare"
AUDIT = None


def forest(df) -> dcc.Graph:
    labels = (df["audit"] + ": " + df["metric"]).tolist()
    fig = go.Figure(go.Scatter(x=df["difference"], y=labels, mode="markers",
                               error_x=dict(type="data", symmetric=False, array=df["ci_high"] - df["difference"],
                                            arrayminus=df["difference"] - df["ci_low"])))
    fig.add_vline(x=0, line_dash="dot")
    fig.update_layout(title="Paired difference B − A (95% bootstrap CI)", height=120 + 28 * len(df),
                      margin=dict(l=220, r=10, t=40, b=30))
    return dcc.Graph(figure=fig, config={"displayModeBar": False})


def layout(store: RunStore, a: RunView | None, b: RunView | None) -> html.Div:
    if a is None or b is None:
        body = [message("Choose run A and run B at the top of the page: two runs of the same audit on the same "
                        "inputs (for example the same command with two checkpoints).", "info")]
    elif a.path == b.path:
        body = [message("Run A and run B are the same run; choose a different run B.", "warn")]
    else:
        try:
            df = diff_runs(a, b)
            ma, mb = model_facts(a), model_facts(b)
            same_model = ma["weights_hash"] == mb["weights_hash"]
            body = [
                html.Div([html.Div([html.H4("A"), run_banner(a)]), html.Div([html.H4("B"), run_banner(b)])],
                         className="compare-heads"),
                message("Both runs used the same weights: differences come from settings or randomness.", "info")
                if same_model else None,
                *[html.Div(f"Left out {audit}: {why}", className="message message-warn",
                           id=ids.compare_left_out(audit)) for audit, why in left_out(df).items()],
                forest(df),
                section("Metrics", table(df, ["audit", "metric", "a", "b", "difference", "ci_low", "ci_high",
                                              "n_pairs", "paired"],
                                         formats={c: (lambda v: fmt_num(v, 4)) for c in
                                                  ("a", "b", "difference", "ci_low", "ci_high")},
                                         table_id=ids.COMPARE_TABLE)),
            ]
        except ClipauditError as err:
            body = [html.Div(str(err), id=ids.COMPARE_MESSAGE, className="message message-warn")]
    return html.Div([html.Div([html.H2("Compare two runs"), *body], className="main"),
                     modelcard_panel(None, a, b)], className="page")
