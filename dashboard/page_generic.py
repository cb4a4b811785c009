"""The page of any registered audit that brings no page of its own: headline figures, every
summary value, each table its contract declares, its pictures, and the model-card panel.

Why: a new audit (``clipaudit.AUDITS``) is browsable the day it lands, without a dashboard change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dash import html

from clipaudit.runs import RunView

from .components import image, kpis, message, modelcard_panel, needs_audit, run_banner, section, table
from .data import RunStore


@dataclass(frozen=True)
class GenericPage:
    """A page object shaped like the page modules (``PATH``, ``TITLE``, ``AUDIT``, ``layout``)."""

    AUDIT: str
    TITLE: str

    @property
    def PATH(self) -> str:  # noqa: N802 - the page modules' attribute name
        return f"/{self.AUDIT}"

    def layout(self, store: RunStore, a: RunView | None, b: RunView | None) -> Any:
        return needs_audit(self.AUDIT)(self._layout)(store, a, b)

    def _layout(self, store: RunStore, a: RunView | None, b: RunView | None) -> html.Div:
        from clipaudit.audits import AUDITS

        audit = AUDITS[self.AUDIT]
        summary = a.summary.get(self.AUDIT) or {}
        keys = [(h.key, h.label) for h in audit.headlines] + \
            [(k.name, k.name.replace("_", " ")) for k in audit.contract.summary
             if k.name in summary and k.name not in {h.key for h in audit.headlines}]
        parts: list[Any] = [run_banner(a), kpis(a, self.AUDIT, keys)]
        for spec in audit.contract.tables:
            df = store.table(a, spec.name)
            if df is not None:
                parts.append(section(f"{spec.name}: {spec.doc}", table(df, max_rows=50)))
        pictures = [p for p in a.images() if any(p.stem.startswith(pat.split("<")[0]) for pat in audit.contract.images)]
        if pictures:
            parts.append(section("Pictures", *[image(store, a, f"images/{p.name}", p.stem) for p in pictures[:24]]))
        if len(parts) == 2:
            parts.append(message(f"run {store.run_name(a)} holds no {self.AUDIT} tables yet"))
        return html.Div([html.Div(parts, className="main"), modelcard_panel(self.AUDIT, a, b)], className="page")


def page_for(name: str) -> Any:
    """The dedicated page module of audit ``name`` (``Audit.page``) or a :class:`GenericPage`."""
    import importlib

    from clipaudit.audits import AUDITS

    audit = AUDITS[name]
    if audit.page:
        return importlib.import_module(audit.page)
    title = name.upper() if len(name) <= 3 else name.replace("_", " ").capitalize()  # sae -> SAE (an acronym)
    return GenericPage(name, title)
