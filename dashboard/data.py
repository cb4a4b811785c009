"""The dashboard's only door to disk: run folders, read through ``clipaudit.runs``, with caching.

Why a layer: pages never touch paths. They ask for a run by *name* (a folder directly under the
runs root); names that are not run folders there are refused, so a crafted URL cannot make the
dashboard read elsewhere. Tables are cached by (file, mtime, size), so a run that is still being
written is re-read when its files change, and a 1,000-neuron table is parsed once.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from clipaudit.errors import ClipauditError
from clipaudit.runs import MANIFEST, RunView, open_run

__all__ = ["RunStore", "Broken", "fmt_rate", "fmt_num", "fmt_ci", "model_facts", "headline"]


@dataclass
class Broken:
    """A folder under the runs root that could not be read as a run, and why."""

    name: str
    reason: str


@dataclass
class RunStore:
    """Run folders under ``root`` (and ``root`` itself when it is one), by name."""

    root: Path
    _tables: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()

    # -- runs --------------------------------------------------------------------------
    def scan(self) -> tuple[list[RunView], list[Broken]]:
        """Readable runs (newest first) and folders that look like runs but cannot be read."""
        runs: list[RunView] = []
        broken: list[Broken] = []
        folders = [self.root] if (self.root / MANIFEST).is_file() else []
        if self.root.is_dir() and not folders:  # a run folder given directly is that one run
            folders += sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for p in folders:
            if not (p / MANIFEST).is_file():
                if p != self.root:
                    broken.append(Broken(p.name, "no manifest.json (not a run folder, or its audit has not started)"))
                continue
            try:
                runs.append(open_run(p))
            except ClipauditError as err:
                broken.append(Broken(p.name, str(err)))
        runs.sort(key=lambda v: v.manifest.get("started") or "", reverse=True)
        return runs, broken

    def runs(self) -> list[RunView]:
        return self.scan()[0]

    def names(self) -> list[str]:
        return [self._name(v) for v in self.runs()]

    def _name(self, view: RunView) -> str:
        return view.path.name

    def _root_is_run(self) -> bool:
        return (self.root / MANIFEST).is_file()

    def get(self, name: str | None) -> RunView | None:
        """The run called ``name`` (a folder directly under the root, or the root itself when it
        is a run folder: named by its folder name, ``.`` kept as an alias), or None."""
        if not name or "/" in name or "\\" in name or name == "..":
            return None
        if self._root_is_run():
            path = self.root if name in (".", self.root.name) else None
            if path is None:
                return None
        else:
            path = self.root / name
        if not (path / MANIFEST).is_file():
            return None
        try:
            return open_run(path)
        except ClipauditError:
            return None

    def run_name(self, view: RunView) -> str:
        return self._name(view)

    def for_audit(self, name: str | None, audit: str) -> RunView | None:
        """Run ``name`` when it holds ``audit`` results, else the newest run that does (None if none).

        Why: with one run folder per audit, the run chosen at the top holds one audit; the other
        pages then show the newest run of their own audit instead of "no results".
        """
        view = self.get(name)
        if view is None:
            return None
        if holds_audit(view, audit):
            return view
        return next((v for v in self.runs() if holds_audit(v, audit)), None)

    # -- tables ------------------------------------------------------------------------
    def table(self, view: RunView, name: str) -> pd.DataFrame | None:
        """A table of ``view`` (cached), or None when the run does not have it (yet)."""
        if not view.has_table(name):
            return None
        files = [view.path / f"{name}.parquet", view.path / f"{name}.csv"]
        stamp = tuple((f.stat().st_mtime_ns, f.stat().st_size) if f.is_file() else None for f in files)
        key = (str(view.path), name)
        with self._lock:
            hit = self._tables.get(key)
            if hit and hit[0] == stamp:
                return hit[1]
        try:
            df = view.table(name)
        except (ClipauditError, ValueError, OSError):
            return None
        with self._lock:
            self._tables[key] = (stamp, df)
        return df

    def image_url(self, view: RunView, rel: str | None) -> str | None:
        """URL of a run's image for the safe file route, or None when absent."""
        if not isinstance(rel, str) or not rel.strip():
            return None
        if not (view.path / rel).is_file():
            return None
        from urllib.parse import quote

        from .files import safe_path

        prefix = "" if view.path.resolve() == self.root else f"{view.path.name}/"
        if safe_path(self.root, prefix + rel) is None:
            return None  # outside the runs folder (e.g. a linked run): see not_served
        return f"/runfile/{quote(prefix + rel)}"

    def not_served(self, view: RunView, rel: str | None) -> str | None:
        """Why an existing file of ``view`` is not served (files leave only from inside the root)."""
        if not isinstance(rel, str) or not rel.strip() or not (view.path / rel).is_file():
            return None
        if self.image_url(view, rel) is not None:
            return None
        return (f"not shown: run {view.path.name} is a link to {view.path.resolve()}, outside the runs folder "
                f"{self.root}, and files are served only from inside it; start the dashboard with "
                f"--runs {view.path.resolve()} to see its pictures")


def holds_audit(view: RunView, audit: str) -> bool:
    """Whether ``view`` has results (a summary section or a table) of ``audit``."""
    return audit in view.summary or any(t.startswith(audit) for t in view.tables())


# ---------------------------------------------------------------------------- formatting
# One formatter per kind of number: the browser tests format the run's tables with these same
# functions and look for the result on the page.

def _bad(x: Any) -> bool:
    try:
        return x is None or (isinstance(x, float) and math.isnan(x))
    except TypeError:
        return True


def fmt_rate(x: Any) -> str:
    """0.4123 -> '41.2%' ('–' when missing)."""
    if _bad(x):
        return "–"
    try:
        return f"{100 * float(x):.1f}%"
    except (TypeError, ValueError):
        return str(x)


def fmt_num(x: Any, digits: int = 3) -> str:
    if _bad(x):
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    try:
        return f"{float(x):.{digits}g}"
    except (TypeError, ValueError):
        return str(x)


def fmt_ci(ci: Any, rate: bool = True) -> str:
    """[lo, hi] -> '[35.0%, 48.1%]'."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return ""
    f = fmt_rate if rate else fmt_num
    return f"[{f(ci[0])}, {f(ci[1])}]"


def model_facts(view: RunView) -> dict:
    """Model name, pretrained tag, weights hash and the random-init flag from the manifest."""
    model = view.manifest.get("model") or {}
    return {"name": model.get("name", "unknown"), "pretrained": model.get("pretrained"),
            "weights_hash": model.get("weights_hash") or "", "random_init": bool(model.get("random_init")),
            "arch": model.get("arch", "")}


def _fmt_headline(key: str, value: Any, ci: Any) -> str:
    is_rate = key.endswith(("_rate", "accuracy")) and isinstance(value, (int, float)) and 0 <= value <= 1
    text = fmt_rate(value) if is_rate else fmt_num(value)
    if ci is not None:
        lo, hi = (fmt_rate(c) for c in ci) if is_rate else (fmt_num(c) for c in ci)
        text += f" [{lo}, {hi}]"
    return text


def headline_rows(view: RunView) -> list[dict[str, Any]]:
    """Each registered audit's headline figures present in a run (``clipaudit.AUDITS`` order).

    Returns:
        dicts with ``audit``, ``key``, ``measure`` (the label), ``value`` and ``text`` (formatted,
        with its 95% interval when the audit declares one).
    """
    from clipaudit.audits import headline_values

    return [{"audit": hv.audit, "key": hv.headline.key, "measure": hv.headline.label, "value": hv.value,
             "text": _fmt_headline(hv.headline.key, hv.value, hv.ci)} for hv in headline_values(view.summary)]


def headline(view: RunView) -> list[tuple[str, str]]:
    """(label, formatted value) pairs for the overview row of a run."""
    return [(row["measure"], row["text"]) for row in headline_rows(view)]
