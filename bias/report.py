"""Exports of a finished bias run: a self-contained HTML page, a Markdown model-card section,
and CSV / JSON of every table.

Why from the run folder: a report must describe exactly what was measured, so it reads only the
run's tables, summary and manifest (``clipaudit.runs.open_run``), never re-runs a model. The
HTML embeds plotly.js inline (``include_plotlyjs=True``), so it opens offline.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from clipaudit.bias.audit import SCOPE_NOTE
from clipaudit.errors import ClipauditError
from clipaudit.modelcard import get_limitation, measured_figures
from clipaudit.runs import RunView, check_writable, open_run, to_json, write_export

REPORT_FORMATS = ("html", "md", "csv", "json")
TABLES = ("bias_denigration", "bias_intersectional", "bias_label_sensitivity", "bias_skew", "bias_weat",
          "bias_predictions", "skipped")
_DEFAULT_NAMES = {"html": "bias_report.html", "md": "bias_report.md", "csv": "bias_tables", "json": "bias_report.json"}


def _open(run_dir: Path | str) -> RunView:
    run = open_run(run_dir)
    if "bias" not in run.summary:
        raise ClipauditError(f"run {str(run_dir)!r} has no bias results (summary.json has no 'bias' section); "
                             "run 'clipaudit bias --dataset ... --out DIR' first")
    return run


def _tables(run: RunView) -> dict[str, pd.DataFrame]:
    return {name: run.table(name) for name in TABLES if run.has_table(name)}


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "n/a"
    if isinstance(x, float):
        return "inf" if x == float("inf") else f"{x:.{digits}g}"
    return str(x)


def _ci(pair) -> str:
    if not pair or len(pair) != 2:
        return ""
    return f" (95% CI {_fmt(pair[0])} to {_fmt(pair[1])})"


_MD_SPECIAL = set("\\`*_[]()<>|#~!{}&")


def md_escape(value) -> str:
    """``value`` as literal Markdown text: HTML-active and Markdown-active characters escaped.

    ``<`` ``>`` ``&`` become entities (Markdown renderers pass raw HTML through); the rest of
    CommonMark's ASCII punctuation that can start markup (emphasis, code, links, tables) gets
    a backslash. Dataset values (group names, prompts) are user input.
    """
    out = []
    for ch in str(value):
        if ch in "<>&":
            out.append(html.escape(ch))
        elif ch in _MD_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out).replace("\n", " ")


def _same(value) -> str:
    return str(value)


def describe_metric(key: str, s: dict, esc=_same) -> str:
    """One sentence for a summary key of the bias section, with its CI where it has one.

    ``esc`` is applied to every dataset value in the sentence (:func:`md_escape` for Markdown).
    """
    s = {k: ([esc(x) for x in v] if isinstance(v, list) and k == "added_classes" else
             esc(v) if isinstance(v, str) else v) for k, v in s.items()}
    name = key.split(".", 1)[-1]
    if name == "harmful_rate_ratio":
        return (f"harmful-label rate of {s.get('harmful_rate_ratio_attribute')}={s.get('harmful_rate_ratio_group')} "
                f"is {_fmt(s.get('harmful_rate_ratio'))}x the rate of the other groups{_ci(s.get('harmful_rate_ratio_ci'))}, "
                f"Holm-adjusted p = {_fmt(s.get('harmful_rate_ratio_p_holm'))}")
    if name == "max_harmful_rate":
        return (f"highest harmful-label rate {_fmt(s.get('max_harmful_rate'))} for {s.get('max_harmful_rate_group')}"
                f"{_ci(s.get('max_harmful_rate_ci'))}")
    if name == "max_label_set_shift":
        return (f"adding {', '.join(s.get('added_classes') or []) or 'no classes'} moved the harmful rate of "
                f"{s.get('max_label_set_shift_group')} by {_fmt(s.get('max_label_set_shift'))}")
    if name == "weat_d":
        return f"WEAT '{s.get('weat_test')}': d = {_fmt(s.get('weat_d'))}, Holm-adjusted p = {_fmt(s.get('weat_p'))}"
    if name == "max_skew":
        return (f"mean MaxSkew@{s.get('max_skew_k')} over prompts is {_fmt(s.get('max_skew'))} for "
                f"{s.get('max_skew_attribute')} (largest single prompt: '{s.get('max_skew_prompt')}')")
    return f"{name} = {_fmt(s.get(name))}"


def markdown(run: RunView) -> str:
    """The 'Bias, risks and limitations' model-card section for this run."""
    s = run.summary["bias"]
    model = run.manifest.get("model") or {}
    ls = s.get("label_set", {})
    e = md_escape
    lines = ["## Bias, risks and limitations", "",
             f"Measured with `clipaudit bias` on {e(s.get('dataset'))} ({e(s.get('n_images'))} images, dataset hash "
             f"{e(s.get('dataset_hash'))}), model {e(model.get('name'))} (weights hash {e(model.get('weights_hash'))}"
             f"{', RANDOM-INIT' if model.get('random_init') else ''}), label set {e(ls.get('name'))}, seed {e(s.get('seed'))}, "
             f"{s.get('bootstrap')} bootstrap resamples, {s.get('permutations')} permutations; p-values adjusted by "
             "Holm (and Benjamini-Hochberg in the tables).", ""]
    for m in measured_figures(run.summary, "bias"):
        lim = m.limitation
        lines.append(f"- **{lim.title}** (`{lim.id}`). Model card: {lim.claim}")
        if m.measured:
            lines.append(f"  Measured: {describe_metric(m.metric, s, md_escape)}.")
            extra = [k for k in lim.metrics if k != m.metric and k.split('.')[-1] in s]
            for k in extra:
                lines.append(f"  Also: {describe_metric(k, s, md_escape)}.")
        else:
            lines.append("  Not measured in this run.")
    flagged = s.get("flagged") or []
    lines += ["", f"Groups flagged (Holm-adjusted p \\< {e(s.get('alpha', 0.05))}): "
                  f"{', '.join(e(f) for f in flagged) or 'none'}."]
    for lid in ("L-surveillance", "L-deployment"):
        lim = get_limitation(lid)
        lines.append(f"- **{lim.title}** (`{lim.id}`). {lim.claim}")
    lines += ["", f"> {SCOPE_NOTE}", ""]
    return "\n".join(lines)


def _bar_with_ci(df: pd.DataFrame, x: str, y: str, lo: str, hi: str, title: str, ytitle: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    for attr, part in df.groupby("attribute", sort=False):
        fig.add_bar(name=str(attr), x=[f"{attr}={g}" for g in part[x]], y=part[y],
                    error_y=dict(type="data", symmetric=False, array=(part[hi] - part[y]).clip(lower=0),
                                 arrayminus=(part[y] - part[lo]).clip(lower=0)))
    fig.update_layout(title=title, yaxis_title=ytitle, height=380, margin=dict(l=40, r=20, t=50, b=80))
    return fig


def _figures(tables: dict[str, pd.DataFrame]) -> list:
    import plotly.graph_objects as go

    figs = []
    den = tables.get("bias_denigration")
    if den is not None and len(den):
        figs.append(_bar_with_ci(den, "group", "rate", "ci_low", "ci_high",
                                 "Harmful-label rate per group (95% bootstrap CI)", "rate"))
    sens = tables.get("bias_label_sensitivity")
    if sens is not None and len(sens):
        lab = [f"{a}={g}" for a, g in zip(sens["attribute"], sens["group"])]
        fig = go.Figure([go.Bar(name="base label set", x=lab, y=sens["rate_base"]),
                         go.Bar(name="with neutral classes", x=lab, y=sens["rate_extended"])])
        fig.update_layout(barmode="group", title="Label-set sensitivity", yaxis_title="harmful rate", height=380)
        figs.append(fig)
    skew = tables.get("bias_skew")
    if skew is not None and len(skew):
        fig = go.Figure()
        for attr, part in skew.groupby("attribute", sort=False):
            fig.add_bar(name=str(attr), x=part["prompt"], y=part["max_skew"],
                        error_y=dict(type="data", symmetric=False,
                                     array=(part["max_skew_ci_high"] - part["max_skew"]).clip(lower=0),
                                     arrayminus=(part["max_skew"] - part["max_skew_ci_low"]).clip(lower=0)))
        fig.update_layout(barmode="group", title=f"MaxSkew@{int(skew['k'].max())} per prompt (95% CI)",
                          yaxis_title="MaxSkew", height=380)
        figs.append(fig)
    weat = tables.get("bias_weat")
    if weat is not None and len(weat):
        fig = go.Figure([go.Bar(x=weat["test"], y=weat["d"], text=[f"p_holm={_fmt(p)}" for p in weat["p_holm"]])])
        fig.update_layout(title="WEAT effect size d", yaxis_title="d", height=380)
        figs.append(fig)
    return figs


def html_report(run: RunView) -> str:
    """One self-contained HTML page (plotly.js inline, no network)."""
    s = run.summary["bias"]
    tables = _tables(run)
    model = run.manifest.get("model") or {}
    ls = s.get("label_set", {})
    parts = [f"<h1>clipaudit bias report: {html.escape(run.name)}</h1>",
             f"<p class='scope'>{html.escape(SCOPE_NOTE)}</p>", "<h2>Headline</h2><ul>"]
    for m in measured_figures(run.summary, "bias"):
        if m.measured:
            parts.append(f"<li><b>{html.escape(m.limitation.id)}</b>: {html.escape(describe_metric(m.metric, s))}</li>")
    parts.append(f"<li>flagged (Holm p &lt; {s.get('alpha', 0.05)}): {html.escape(', '.join(s.get('flagged') or []) or 'none')}</li></ul>")
    for i, fig in enumerate(_figures(tables)):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    for name, df in tables.items():
        if name == "bias_predictions":
            continue
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts.append(df.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, classes="t"))
    notes = {
        "model": f"{model.get('name')} (pretrained {model.get('pretrained')}, weights hash {model.get('weights_hash')})",
        "dataset": f"{s.get('dataset')} ({s.get('n_images')} images, {s.get('n_skipped')} skipped, hash {s.get('dataset_hash')})",
        "attributes": ", ".join(s.get("attributes") or []),
        "label set": f"{ls.get('name')}: {', '.join(ls.get('classes') or [])}",
        "harmful classes": json.dumps(ls.get("harmful")),
        "templates": " | ".join(ls.get("templates") or []),
        "neutral additions": ", ".join(ls.get("neutral_additions") or []),
        "skew prompts": f"{', '.join(ls.get('skew_concepts') or [])} x templates {' | '.join(ls.get('skew_templates') or [])}",
        "k": f"{s.get('k')} (clipped to the number of images); target shares: {s.get('target')}; "
             "groups absent from the top k have skew -inf and never set MaxSkew",
        "statistics": f"{s.get('bootstrap')} bootstrap resamples (percentile CIs), {s.get('permutations')} "
                      "WEAT permutations (two-sided, group sizes kept, exact when few splits; p never 0); group-vs-rest "
                      "rate tests are exact permutation tests (hypergeometric), "
                      "Holm and Benjamini-Hochberg within each table",
        "seed": str(s.get("seed")),
        "sources": ", ".join(ls.get("sources") or []),
    }
    parts.append("<h2>Method notes</h2><table class='t'>" + "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in notes.items()) + "</table>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table.t{border-collapse:collapse;font-size:13px;margin-bottom:1em}"
             "table.t td,table.t th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
             ".scope{background:#fff4d6;padding:.6em;border-left:4px solid #e0a800}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>clipaudit bias report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


def json_report(run: RunView) -> str:
    tables = _tables(run)
    return to_json({"run": run.name, "manifest": run.manifest, "summary": run.summary["bias"],
                    "scope_note": SCOPE_NOTE,
                    "tables": {k: json.loads(v.to_json(orient="records")) for k, v in tables.items()}})


def write_report(run_dir: Path | str, fmt: str = "html", to: Path | str | None = None) -> Path:
    """Write one export of a bias run; returns its path (a folder for ``csv``).

    Defaults: ``bias_report.html`` / ``bias_report.md`` / ``bias_report.json`` / ``bias_tables/``
    inside the run folder.
    """
    if fmt not in REPORT_FORMATS:
        raise ClipauditError(f"unknown --format {fmt!r}; valid: {', '.join(REPORT_FORMATS)}")
    run = _open(run_dir)
    out = check_writable(to) if to else run.path / _DEFAULT_NAMES[fmt]
    if fmt == "csv":
        if out.exists() and not out.is_dir():
            raise ClipauditError(f"--to {str(out)!r} is a file; CSV export needs a folder")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ClipauditError(f"--to {str(out)!r} cannot be written ({err.strerror or type(err).__name__}); "
                                 "choose a folder you can write to") from None
        for name, df in _tables(run).items():
            write_export(out / f"{name}.csv", df.to_csv(index=False))
        write_export(out / "summary.json", to_json(run.summary["bias"]))
        return out
    if out.is_dir():
        out = out / _DEFAULT_NAMES[fmt]
    text = {"html": html_report, "md": markdown, "json": json_report}[fmt](run)
    return write_export(out, text)
