"""Model-card limitations measured: accuracy per shift with CI bars, the k-shot curve against the
zero-shot line, prompt gains, and counting / digits / fine-grained against chance."""
from __future__ import annotations

import plotly.graph_objects as go
from dash import dcc, html

from clipaudit.runs import RunView

from .components import guard, kpis, message, modelcard_panel, needs_audit, rate_bars, run_banner, section, table
from .data import RunStore, fmt_rate

PATH = "/limitations"
TITLE = "Limitations"
AUDIT = "limitations"
KPIS = [("base_accuracy", "zero-shot accuracy, base domain"), ("worst_shift", "worst shift"),
        ("worst_shift_drop", "largest drop under shift"), ("mean_effective_robustness", "effective robustness"),
        ("zero_shot_worth_shots", "zero-shot worth (shots/class)"), ("count_zero_shot_accuracy", "counting, zero-shot"),
        ("digits_zero_shot_accuracy", "digits, zero-shot")]
RATES = ("accuracy", "ci_low", "ci_high", "drop", "drop_ci_low", "drop_ci_high", "gain", "gain_ci_low", "gain_ci_high",
         "chance", "zero_shot_accuracy", "probe_accuracy")


def kshot_figure(kshot, zero_shot: float | None) -> dcc.Graph:
    """Linear-probe accuracy against shots per class (log axis, CI band) with the zero-shot line."""
    k = kshot.sort_values("k")
    fig = go.Figure()
    fig.add_scatter(x=list(k["k"]) + list(k["k"])[::-1], y=list(k["ci_high"] * 100) + list(k["ci_low"] * 100)[::-1],
                    fill="toself", opacity=0.2, line={"width": 0}, showlegend=False, hoverinfo="skip")
    fig.add_scatter(x=k["k"], y=k["accuracy"] * 100, mode="lines+markers", name="k-shot linear probe")
    if zero_shot is not None:
        fig.add_hline(y=zero_shot * 100, line_dash="dot", annotation_text="zero-shot", annotation_position="top left")
    fig.update_layout(title="Linear probe vs zero-shot (95% CI)", xaxis={"type": "log", "title": "shots per class"},
                      yaxis_title="%", height=340, margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return dcc.Graph(figure=fig, config={"displayModeBar": False})


@needs_audit(AUDIT)
def layout(store: RunStore, a: RunView | None, b: RunView | None) -> html.Div:
    s = a.summary.get(AUDIT, {})
    shift = store.table(a, "limitations_shift")
    probe = store.table(a, "limitations_probe_shift")
    kshot = store.table(a, "limitations_kshot")
    prompts = store.table(a, "limitations_prompts")
    tasks = store.table(a, "limitations_tasks")
    rates = {c: fmt_rate for c in RATES}
    flagged = s.get("controls_flagged") or []
    warn = [message(f"A control domain was flagged as a shift ({', '.join(map(str, flagged))}): the shift "
                    "measurement itself is suspect.", "warn")] if flagged else []
    return html.Div([html.Div([
        run_banner(a), *warn,
        kpis(a, AUDIT, KPIS),
        guard("Distribution shift", lambda: section(
            "Zero-shot accuracy per domain (distribution shift)",
            rate_bars(shift, "domain", "accuracy", title="Accuracy per domain (95% Wilson CI)", color="role"),
            table(shift, formats=rates, table_id="limitations-shift"))) if shift is not None else None,
        guard("Linear probe under shift", lambda: section(
            "Zero-shot vs a linear probe fit on the base domain",
            table(probe, formats=rates, table_id="limitations-probe-shift"))) if probe is not None else None,
        guard("k-shot", lambda: section("k-shot linear probe", kshot_figure(kshot, s.get("base_accuracy")),
                                        table(kshot, formats=rates, table_id="limitations-kshot")))
        if kshot is not None else None,
        guard("Prompts", lambda: section(
            "Prompt engineering", rate_bars(prompts, "prompt_set", "accuracy", color="domain",
                                            title="Accuracy per prompt set (95% CI)"),
            table(prompts, formats=rates, table_id="limitations-prompts"))) if prompts is not None else None,
        guard("Tasks", lambda: section(
            "Counting, handwritten digits, fine-grained classes (against chance)",
            rate_bars(tasks.assign(what=tasks["task"] + " / " + tasks["method"]), "what", "accuracy",
                      title="Accuracy per task and method (95% CI)"),
            table(tasks, formats=rates, table_id="limitations-tasks"))) if tasks is not None else None,
    ], className="main"), modelcard_panel(AUDIT, a)], className="page")
