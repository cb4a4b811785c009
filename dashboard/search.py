"""Search across the units of the open runs by text (labels, fuzzily), ranked best first.

How a unit is scored against a query ``q`` (case-insensitive, whitespace-trimmed):
1.0 its best label is ``q``; 0.9 its best label contains ``q``; 0.75 another of its labels is
``q``; 0.6 another label contains ``q``; otherwise ``0.5 * r`` where ``r`` is the
:class:`difflib.SequenceMatcher` ratio between ``q`` and its best label (kept when r >= 0.7, so
"piza" finds "pizza"), else ``0.4 * r`` for its best-matching other label. Ties go to the higher label score (SoftWPMI, TextSpan variance or
AUROC, whichever the unit kind records), then to the run and address, for a stable order.

Search by embedding: with a model loaded (``clipaudit dashboard --model ...``) the query's text
embedding ("a photo of a {q}.") is scored by cosine against each neuron's direction in the joint
space (the ``neuron_text_directions`` table the neurons audit writes: the mean embedding of its top
images); units found this way and not by label follow the label matches, with their cosine as
``match`` and ``how`` = ``embedding``. Without a model or such a table, only labels are searched
(:data:`EMBEDDING_NOTE` says why).
"""
from __future__ import annotations

import difflib

import pandas as pd

from .data import RunStore
from .units import units_of, unit_url

__all__ = ["search_units", "all_units", "embedding_hits", "embedding_available", "EMBEDDING_NOTE"]

FUZZY_MIN = 0.7
EMBEDDING_NOTE = ("search by embedding is off: it needs a model (clipaudit dashboard --model ...) and runs whose "
                  "neurons audit wrote neuron_text_directions")
DIRECTIONS = "neuron_text_directions"
EMBEDDING_EXTRA = 10  # nearest units by embedding listed after the label matches
TEMPLATE = "a photo of a {}."


def embedding_available(store: RunStore) -> bool:
    """A text encoder is attached to the store and some run holds unit directions."""
    return getattr(store, "text_encoder", None) is not None and any(
        store.table(v, DIRECTIONS) is not None for v in store.runs())


def embedding_hits(store: RunStore, query: str, limit: int = 50) -> pd.DataFrame:
    """Neurons ranked by cosine between the query's text embedding and their directions:
    kind, run, address, match (the cosine), best first; empty without an encoder or directions."""
    import numpy as np

    encode = getattr(store, "text_encoder", None)
    cols = ["kind", "run", "address", "match"]
    if encode is None or not query.strip():
        return pd.DataFrame(columns=cols)
    q = None
    frames = []
    for view in store.runs():
        d = store.table(view, DIRECTIONS)
        if d is None or "neuron" not in d:
            continue
        if q is None:
            q = np.asarray(encode([TEMPLATE.format(query.strip())]), dtype=float).reshape(-1)
        e = d[[c for c in d.columns if c.startswith("e") and c[1:].isdigit()]].to_numpy(dtype=float)
        if e.shape[1] != q.shape[0]:
            continue  # another model's joint space
        layer = str(view.summary.get("neurons", {}).get("layer", ""))
        frames.append(pd.DataFrame({"kind": "neuron", "run": store.run_name(view),
                                    "address": [f"{layer}/{int(n)}" for n in d["neuron"]], "match": e @ q}))
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["match", "run", "address"], ascending=[False, True, True], kind="stable").head(limit)


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
    if units.empty and not embedding_available(store):
        return pd.DataFrame(columns=cols)
    units = units.assign(_s=pd.to_numeric(units["score"], errors="coerce").fillna(-1.0))
    units = units.sort_values(["match", "_s", "run", "address"], ascending=[False, False, True, True], kind="stable")
    units = units.drop(columns="_s").head(limit).assign(how="label")
    emb = embedding_hits(store, q, EMBEDDING_EXTRA)
    if not emb.empty:
        known = set(zip(units["run"], units["address"]))
        extra = emb[[(r, a) not in known for r, a in zip(emb["run"], emb["address"])]]
        meta = all_units(store).drop(columns=["url"], errors="ignore")
        extra = extra.merge(meta, on=["kind", "run", "address"], how="left").assign(how="embedding")
        units = pd.concat([units, extra], ignore_index=True).head(limit)
    if units.empty:
        return pd.DataFrame(columns=[*cols, "how"])
    units["url"] = [unit_url(k, r, tuple(a.split("/"))) for k, r, a in zip(units["kind"], units["run"], units["address"])]
    return units.reset_index(drop=True)
