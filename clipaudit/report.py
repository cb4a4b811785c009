"""One self-contained HTML page for a run folder: the model, each audit's headline numbers, its
pictures, and every model-card limitation beside the figure that measures it.

Why self-contained: an auditor mails or archives this file; it must open offline, years later,
so pictures are embedded as data URIs and nothing is fetched. Every string from the run is
HTML-escaped (labels and words are user input).
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

from clipaudit.modelcard import measured_figures
from clipaudit.runs import RunView, open_run

HEADLINE_IMAGES = ("typographic_examples", "adversarial_examples")
_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;width:100%}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top;font-size:14px}th{background:#f3f3f3}.warn{background:#fee;border:2px solid #c00;padding:8px;
font-weight:bold}.muted{color:#777}img{max-width:100%;border:1px solid #ddd}code{background:#f6f6f6;padding:1px 3px}"""


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return f"[{value[0]:.3f}, {value[1]:.3f}]"
    return str(value)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _scalar_rows(section: dict) -> str:
    rows = []
    for key, value in section.items():
        if isinstance(value, (dict,)) or (isinstance(value, list) and len(value) > 6):
            continue
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(_fmt(value))}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def build_html(run: RunView | str | Path) -> str:
    """The report page for ``run`` as an HTML string."""
    view = run if isinstance(run, RunView) else open_run(run)
    model = view.manifest.get("model") or {}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>clipaudit report: "
             f"{html.escape(view.name)}</title><style>{_CSS}</style></head><body>",
             f"<h1>clipaudit audit report</h1><p class='muted'>run <code>{html.escape(view.name)}</code> · "
             f"<code>{html.escape(str(view.manifest.get('command_line', '')))}</code></p>"]
    if model.get("random_init"):
        parts.append("<p class='warn'>RANDOM-INIT WEIGHTS: these numbers describe an untrained network, "
                     "not a CLIP anyone uses.</p>")
    parts.append("<h2>Model</h2>" + _scalar_rows({k: model.get(k) for k in
                                                 ("name", "pretrained", "arch", "image_size", "weights_hash")}))
    parts.append("<h2>Model card limitations and what this run measured</h2><table><tr><th>id</th>"
                 "<th>the model card says (paraphrased)</th><th>measured</th><th>how</th></tr>")
    for m in measured_figures(view.summary):
        figure = (f"{html.escape(m.metric)} = {html.escape(_fmt(m.value))}" if m.measured
                  else "<span class='muted'>not measured in this run</span>")
        parts.append(f"<tr><td>{m.limitation.id}</td><td>{html.escape(m.limitation.claim)}</td><td>{figure}</td>"
                     f"<td>{html.escape(m.limitation.how_measured)}</td></tr>")
    parts.append("</table>")
    for audit in view.audits:
        section = view.summary.get(audit)
        if not isinstance(section, dict):
            continue
        parts.append(f"<h2>{html.escape(audit)}</h2>" + _scalar_rows(section))
        for name in HEADLINE_IMAGES:
            path = view.path / "images" / f"{name}.png"
            if name.startswith(audit) and path.is_file():
                parts.append(_img(path, name))
        if audit == "neurons":
            for path in sorted((view.path / "images").glob("featvis_*.png"))[:8]:
                parts.append(_img(path, path.stem))
        if audit == "bias" and (view.path / "bias_report.html").is_file():
            parts.append("<p>Full bias report: <code>bias_report.html</code> in the run folder.</p>")
    parts.append("<p class='muted'>Scope: clipaudit measures models; it is not a face or demographic "
                 "classifier, and surveillance uses are out of scope.</p></body></html>")
    return "".join(parts)


def write_report(run: RunView | str | Path, to: Path | str | None = None) -> Path:
    from clipaudit.runs import atomic_write_text

    view = run if isinstance(run, RunView) else open_run(run)
    path = Path(to) if to else view.path / "report.html"
    atomic_write_text(path, build_html(view))
    return path
