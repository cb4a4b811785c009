"""Typographic attacks: success and flip rates with CIs, dose-response sweeps, examples, words."""
from __future__ import annotations

import pandas as pd
from dash import html

from clipaudit.runs import RunView

from .components import (guard, ci_line, image, kpis, message, needs_audit, modelcard_panel, rate_bars, run_banner,
                         section, table)
from .data import RunStore, fmt_num, fmt_rate

PATH = "/typographic"
TITLE = "Typographic"
AUDIT = "typographic"
KPIS = [("target", "target word"), ("attack_success_rate", "attack success"), ("flip_rate", "flip rate"),
        ("clean_accuracy", "clean accuracy"), ("attacked_accuracy", "accuracy with text"), ("true_prob_drop", "true-class prob. drop"),
        ("target_prob_rise", "target prob. rise"), ("n_images", "images"), ("n_excluded", "excluded"),
        ("final_text_size", "text size")]
# measured columns of the sweep table; every other column is a swept parameter
_META = {"n", "text_area", "attack_success_rate", "ci_low", "ci_high", "flip_rate", "mean_target_gain", "final_size"}


def sweep_chart(df: pd.DataFrame):
    """Dose-response: success vs text area, one line per setting of the other swept parameters.

    Size-like parameters (size, text_size) set the text area itself, so they are the x axis,
    not a grouping.
    """
    params = [c for c in df.columns if c not in _META]
    x = "text_area" if "text_area" in df.columns else (params[0] if params else None)
    if x is None:
        return message("sweep table has no swept parameter")
    others = [p for p in params if p != x and "size" not in p and df[p].nunique() > 1]
    group = None
    if others:
        df = df.assign(_setting=df[others].astype(str).agg(", ".join, axis=1)) if len(others) > 1 else df
        group = "_setting" if len(others) > 1 else others[0]
    return ci_line(df, x, "attack_success_rate", group=group,
                   title="Attack success vs written-text area (95% CI)", x_title=x)


@needs_audit(AUDIT)
def layout(store: RunStore, a: RunView | None, b: RunView | None) -> html.Div:
    s = a.summary.get(AUDIT, {})
    added = [message(f"The target {s.get('target')!s} was not in the class list and was added for this attack.", "warn")] \
        if s.get("target_added") else []
    by_class = store.table(a, "typographic_by_class")
    sweep = store.table(a, "typographic_sweep")
    words = store.table(a, "typographic_words")
    dose = store.table(a, "typographic_dose")
    images = store.table(a, "typographic_images")
    rate_fmt = {c: fmt_rate for c in ("attack_success_rate", "ci_low", "ci_high", "flip_rate")}
    return html.Div([html.Div([
        run_banner(a), *added,
        kpis(a, AUDIT, KPIS),
        guard("By true class", lambda: section(
            "By true class", rate_bars(by_class, "class", "attack_success_rate",
                                       title="Attack success by true class (95% CI)"),
            table(by_class, formats=rate_fmt, table_id="typographic-by-class"))) if by_class is not None else None,
        guard("Dose-response sweep", lambda: section("Dose-response sweep", sweep_chart(sweep),
                                                     table(sweep, formats=rate_fmt))) if sweep is not None else None,
        section("Dose-response by parameter", image(store, a, "images/typographic_dose.png", "dose-response", "wide-img"),
                table(dose, formats=rate_fmt))
        if dose is not None else None,
        section("Before / after examples", image(store, a, "images/typographic_examples.png", "typographic examples",
                                                  "wide-img")),
        section("Word search ranking", table(words, ["rank", "word", "source_class", "n", "mean_target_gain",
                                                     "attack_success_rate"],
                                             formats={"attack_success_rate": fmt_rate, "mean_target_gain": fmt_num},
                                             table_id="typographic-words")) if words is not None else None,
        section("Per image (first 30)", table(images, ["id", "true_class", "pred_clean", "pred_attacked", "success",
                                                       "flipped", "excluded"], max_rows=30)) if images is not None else None,
    ], className="main"), modelcard_panel(AUDIT, a)], className="page")
