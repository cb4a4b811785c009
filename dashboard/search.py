"""Search across the units of the open runs by text (labels, fuzzily), ranked best first.

How a unit is scored against a query ``q`` (case-insensitive, whitespace-trimmed):
1.0 its best label is ``q``; 0.9 its best label contains ``q``; 0.75 another of its labels is
``q``; 0.6 another label contains ``q``; otherwise ``0.5 * r`` where ``r`` is the
:class:`difflib.SequenceMatcher` ratio between ``q`` and its best label (kept when r >= 0.7, so
"piza" finds "pizza"), else ``0.4 * r`` for its best-matching other label. Ties go to the higher label score (SoftWPMI, TextSpan variance or
AUROC, whichever the unit kind records), then to the run and address, for a stable order.

Search by embedding (a query's text embedding against each unit's text direction) needs each
unit's direction in the joint space, which no audit writes today; see :data:`EMBEDDING_NOTE`.
"""
from __future__ import annotations

import difflib

import pandas as pd

from .data import RunStore
from .units import units_of, unit_url

__all__ = ["search_units", "all_units", "EMBEDDING_NOTE"]

FUZZY_MIN = 0.7
EMBEDDING_NOTE = ("search by embedding is off: no run here holds units' text directions "
                  "(a <kind>_text_directions table: address + one column per embedding dimension)")


def all_units(store: RunStore) -> pd.DataFrame:
    """Every unit of every readable run under the store's root (kind, run, address, label, labels, score)."""
    frames = [units_of(store, v) for v in store.runs()]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=["kind", "run", "address", "label", "labels", "score"])
    return pd.concat(frames, ignore_index=True)


def _match(query: str, label: str, labels: str) -> float:
    label = label.lower()
    others = [x for x in labels.lower().split(";") if x]
    if label == query:
        return 1.0
    if query in label:
        return 0.9
    if query in others:
        return 0.75
    if any(query in x for x in others):
        return 0.6
    best = difflib.SequenceMatcher(None, query, label).ratio() if label else 0.0
    if best >= FUZZY_MIN:
        return 0.5 * best
    other = max((difflib.SequenceMatcher(None, query, x).ratio() for x in others), default=0.0)
    return 0.4 * other if other >= FUZZY_MIN else 0.0


def search_units(store: RunStore, query: str | None, limit: int = 50) -> pd.DataFrame:
    """Units matching ``query``, best first, with a ``match`` score in (0, 1] and their page ``url``.

    Returns:
        DataFrame (kind, run, address, label, labels, score, match, url), at most ``limit`` rows;
        empty for an empty query or no match.
    """
    q = (query or "").strip().lower()
    units = all_units(store)
    cols = [*units.columns, "match", "url"]
    if not q or units.empty:
        return pd.DataFrame(columns=cols)
    match = [_match(q, str(a), str(b)) for a, b in zip(units["label"].fillna(""), units["labels"].fillna(""))]
    units = units.assign(match=match)
    units = units[units["match"] > 0]
    units = units.assign(_s=pd.to_numeric(units["score"], errors="coerce").fillna(-1.0))
    units = units.sort_values(["match", "_s", "run", "address"], ascending=[False, False, True, True], kind="stable")
    units = units.drop(columns="_s").head(limit)
    units["url"] = [unit_url(k, r, tuple(a.split("/"))) for k, r, a in zip(units["kind"], units["run"], units["address"])]
    return units.reset_index(drop=True)
