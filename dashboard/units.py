"""Units of a model as the dashboard knows them: a small registry of unit kinds (neuron, head,
latent), each reading its audit's tables into one shape the unit page, search and exports share.

Why a registry: the neurons audit, the heads audit and the SAE audit write different tables;
a unit page should not care which. A kind says how a unit is addressed in a URL
(``/unit/<kind>/<run>/<address...>``), how to list a run's units (for search) and how to gather
one unit's data. A new kind plugs in with one :func:`register` call.

Everything here reads run folders through :class:`~clipaudit.dashboard.data.RunStore`; nothing
runs a model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from clipaudit.runs import RunView

from .data import RunStore

__all__ = ["Unit", "UnitKind", "KINDS", "register", "parse_address", "unit_url", "units_of", "get_unit",
           "QUANTILE_TABLE", "HISTOGRAM_TABLE"]

# Tables the unit page shows when a neurons run holds them. The neurons audit does not write them
# today (its scan keeps only the top-k per neuron): examples per activation quantile and a
# histogram need a pass that keeps a reservoir per quantile bin and bin counts per neuron.
QUANTILE_TABLE = "neuron_quantile_images"  # neuron:int quantile:float id:str activation:float
HISTOGRAM_TABLE = "neuron_histogram"  # neuron:int bin_low:float bin_high:float count:int


@dataclass
class Unit:
    """One unit's data, as shown on its page and exported.

    Attributes:
        kind, run, address: what the URL names (address: the kind's parts, e.g. (layer, index)).
        label: the best label ('' when none); labels: (text, score or None) best first.
        stats: name -> value (scalars only).
        tables: name -> DataFrame of the unit's rows (top examples, quantile samples, histogram,
            ablation, TextSpan texts ...).
        images: caption -> run-relative path of a picture (feature vis, top images, attribution).
        limitations: model-card limitation ids the unit bears on, with why.
        missing: what the page cannot show for this unit, and why (one line each).
    """

    kind: str
    run: str
    address: tuple[str, ...]
    label: str = ""
    labels: list[tuple[str, float | None]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    limitations: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return unit_url(self.kind, self.run, self.address)

    @property
    def title(self) -> str:
        return f"{self.kind} {' / '.join(self.address)}"

    def to_dict(self) -> dict:
        """Plain-JSON form (tables as lists of records)."""
        return {"kind": self.kind, "run": self.run, "address": list(self.address), "url": self.url,
                "label": self.label, "labels": [{"text": t, "score": s} for t, s in self.labels],
                "stats": {k: _plain(v) for k, v in self.stats.items()},
                "tables": {k: [{c: _plain(v) for c, v in row.items()} for row in df.to_dict("records")]
                           for k, df in self.tables.items()},
                "images": dict(self.images), "limitations": dict(self.limitations), "missing": list(self.missing)}

    def to_frame(self) -> pd.DataFrame:
        """Long form for Parquet: one row per (section, row, column, value as text)."""
        rows = [{"section": "stats", "row": 0, "column": k, "value": str(_plain(v))} for k, v in self.stats.items()]
        rows += [{"section": "labels", "row": i, "column": "text" if j == 0 else "score", "value": str(x)}
                 for i, pair in enumerate(self.labels) for j, x in enumerate(pair)]
        for name, df in self.tables.items():
            for i, rec in enumerate(df.to_dict("records")):
                rows += [{"section": name, "row": i, "column": str(c), "value": str(_plain(v))} for c, v in rec.items()]
        rows += [{"section": "images", "row": 0, "column": k, "value": v} for k, v in self.images.items()]
        head = pd.DataFrame(rows, columns=["section", "row", "column", "value"])
        head.insert(0, "address", "/".join(self.address))
        head.insert(0, "run", self.run)
        head.insert(0, "kind", self.kind)
        return head


def _plain(v: Any) -> Any:
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and (np.isnan(v) or np.isinf(v)):
        return None
    return v


@dataclass(frozen=True)
class UnitKind:
    """How one kind of unit is addressed, listed and read.

    Attributes:
        name: URL segment (``neuron``, ``head``, ``latent``).
        audit: the audit whose tables hold these units.
        address: names of the URL segments after the run (e.g. ("layer", "index")).
        index: (store, view) -> DataFrame with columns address (tuple as '/'-joined str), label,
            labels (all label texts, ';'-joined), score; None when the run has no such units.
        read: (store, view, address) -> :class:`Unit` or None when the run has no such unit.
    """

    name: str
    audit: str
    address: tuple[str, ...]
    index: Callable[[RunStore, RunView], pd.DataFrame | None]
    read: Callable[[RunStore, RunView, tuple[str, ...]], Unit | None]


KINDS: dict[str, UnitKind] = {}


def register(kind: UnitKind) -> UnitKind:
    KINDS[kind.name] = kind
    return kind


def unit_url(kind: str, run: str, address: tuple[str, ...] | list[str]) -> str:
    from urllib.parse import quote

    return "/unit/" + "/".join(quote(str(p), safe="") for p in (kind, run, *address))


def parse_address(pathname: str) -> tuple[UnitKind, str, tuple[str, ...]]:
    """``/unit/<kind>/<run>/<address...>`` -> (kind, run, address).

    Raises:
        ValueError: an unknown kind or the wrong number of parts, naming the valid form.
    """
    from urllib.parse import unquote

    parts = [unquote(p) for p in pathname.strip("/").split("/")][1:]
    if not parts or parts[0] not in KINDS:
        raise ValueError(f"unknown unit kind {parts[0] if parts else ''!r}; kinds: {', '.join(KINDS)} "
                         f"(e.g. /unit/neuron/<run>/<layer>/<index>)")
    kind = KINDS[parts[0]]
    if len(parts) != 2 + len(kind.address):
        form = "/".join(f"<{a}>" for a in ("run", *kind.address))
        raise ValueError(f"a {kind.name} page is /unit/{kind.name}/{form}; got {pathname!r}")
    return kind, parts[1], tuple(parts[2:])


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{what} must be a whole number, got {text!r}") from None


def units_of(store: RunStore, view: RunView) -> pd.DataFrame:
    """Every unit of every registered kind in one run: kind, run, address, label, labels, score, url."""
    frames = []
    for kind in KINDS.values():
        df = kind.index(store, view)
        if df is None or df.empty:
            continue
        df = df.assign(kind=kind.name, run=store.run_name(view))
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["kind", "run", "address", "label", "labels", "score"])
    return pd.concat(frames, ignore_index=True)


def get_unit(store: RunStore, pathname: str) -> Unit:
    """The unit a URL names.

    Raises:
        ValueError: bad kind/form, unknown run, or no such unit in the run (one line, says what exists).
    """
    kind, run, address = parse_address(pathname)
    view = store.get(run)
    if view is None:
        raise ValueError(f"no run called {run!r} in {store.root}; runs: {', '.join(store.names()[:10]) or 'none'}")
    unit = kind.read(store, view, address)
    if unit is None:
        raise ValueError(f"run {run} has no {kind.name} {'/'.join(address)}")
    return unit


# ------------------------------------------------------------------------------ neurons

def _split(text: Any) -> list[str]:
    """'a;b;c' (or space- or comma-separated ids) -> ['a', 'b', 'c']."""
    if not isinstance(text, str):
        return []
    sep = ";" if ";" in text else ("," if "," in text else " ")
    return [x.strip() for x in text.split(sep) if x.strip()]


def _neuron_index(store: RunStore, view: RunView) -> pd.DataFrame | None:
    df = store.table(view, "neurons")
    if df is None or "neuron" not in df:
        return None
    layer = df["layer"].astype(str) if "layer" in df else pd.Series("", index=df.index)
    label = df["label"].fillna("").astype(str) if "label" in df else pd.Series("", index=df.index)
    labels = df["labels"].fillna("").astype(str) if "labels" in df else label
    score = pd.to_numeric(df["label_score"], errors="coerce") if "label_score" in df else np.nan
    return pd.DataFrame({"address": layer + "/" + df["neuron"].astype(int).astype(str), "label": label,
                         "labels": labels, "score": score})


def _neuron_read(store: RunStore, view: RunView, address: tuple[str, ...]) -> Unit | None:
    layer, index = address[0], _int(address[1], "the neuron index")
    df = store.table(view, "neurons")
    if df is None:
        return None
    rows = df[(df["neuron"] == index) & (df["layer"].astype(str) == layer if "layer" in df else True)]
    if rows.empty:
        return None
    row = rows.iloc[0]
    labels, scores = _split(row.get("labels")), _split(row.get("label_scores"))
    if not labels and isinstance(row.get("label"), str) and row.get("label"):
        labels = [row["label"]]
    pairs = [(lab, float(scores[i]) if i < len(scores) else None) for i, lab in enumerate(labels)]
    if pairs and pairs[0][0] == row.get("label") and pairs[0][1] is None and pd.notna(row.get("label_score")):
        pairs[0] = (pairs[0][0], float(row["label_score"]))
    stats = {k: _plain(row[k]) for k in ("label_score", "multimodal_score", "is_multimodal", "multimodal_concept",
                                          "image_response", "word_response", "mean", "std", "max") if k in row.index}
    unit = Unit("neuron", store.run_name(view), (layer, str(index)), label=str(row.get("label") or ""),
                labels=pairs, stats=stats)
    for name, cap in (("featvis", "feature visualisation"), ("top_images", "top images"),
                      ("attribution", "attribution overlay")):
        rel = row.get(name)
        if isinstance(rel, str) and rel.strip():
            unit.images[cap] = rel
        else:
            unit.missing.append(f"{cap}: not rendered for this neuron (the audit renders the top neurons; "
                                f"rerun with --neurons {index})")
    for name, label, where in (("neuron_top_images", "top examples", None), (QUANTILE_TABLE, "quantile samples", None),
                               (HISTOGRAM_TABLE, "activation histogram", None),
                               ("neuron_text_features", "words that excite it (written on plain backgrounds)", None),
                               ("attribution_convergence",
                                                                                  "attribution convergence", None)):
        t = store.table(view, name)
        if t is not None and "neuron" in t:
            part = t[t["neuron"] == index].drop(columns=["neuron"])
            if not part.empty:
                unit.tables[label] = part.reset_index(drop=True)
    if "quantile samples" not in unit.tables:
        unit.missing.append("examples per activation quantile: not recorded (the neurons audit keeps only the "
                            f"top-k per neuron; a {QUANTILE_TABLE} table would hold them)")
    if "activation histogram" not in unit.tables:
        unit.missing.append(f"activation histogram: not recorded (a {HISTOGRAM_TABLE} table would hold it); "
                            "mean, std and max are shown")
    abl = store.table(view, "ablation")
    if abl is not None and "neurons" in abl:
        hit = abl[abl["neurons"].astype(str).map(lambda s: str(index) in _split(s))]
        if not hit.empty:
            unit.tables["ablation"] = hit.reset_index(drop=True)
    if bool(row.get("is_multimodal", False)):
        concept = row.get("multimodal_concept") or row.get("concept") or unit.label
        unit.limitations["L-typographic"] = (f"multimodal for {concept!s}: responds to pictures of it and to the "
                                             "written word, the path a typographic attack takes")
    return unit


register(UnitKind("neuron", "neurons", ("layer", "index"), _neuron_index, _neuron_read))


# ------------------------------------------------------------------------------ heads

def _head_labels(store: RunStore, view: RunView) -> pd.DataFrame | None:
    ts = store.table(view, "heads_textspan")
    if ts is None or ts.empty:
        return None
    ts = ts.sort_values(["layer", "head", "rank"])
    return ts.groupby(["layer", "head"]).agg(label=("text", "first"), labels=("text", ";".join),
                                           score=("variance_explained", "first")).reset_index()


def _head_index(store: RunStore, view: RunView) -> pd.DataFrame | None:
    sc = store.table(view, "heads_scores")
    if sc is None or sc.empty:
        return None
    out = sc[["layer", "head"]].copy()
    lab = _head_labels(store, view)
    if lab is not None:
        out = out.merge(lab, on=["layer", "head"], how="left")
    else:
        out["label"], out["labels"], out["score"] = "", "", np.nan
    out["label"] = out["label"].fillna("")
    out["labels"] = out["labels"].fillna("")
    out["address"] = out["layer"].astype(int).astype(str) + "/" + out["head"].astype(int).astype(str)
    return out[["address", "label", "labels", "score"]]


def _head_read(store: RunStore, view: RunView, address: tuple[str, ...]) -> Unit | None:
    layer, head = _int(address[0], "the layer"), _int(address[1], "the head")
    sc = store.table(view, "heads_scores")
    if sc is None:
        return None
    row = sc[(sc["layer"] == layer) & (sc["head"] == head)]
    if row.empty:
        return None
    unit = Unit("head", store.run_name(view), (str(layer), str(head)),
                stats={k: _plain(v) for k, v in row.iloc[0].items() if k not in ("layer", "head")})
    for name, label in (("heads_textspan", "TextSpan texts"), ("heads_ablation", "ablation"),
                        ("heads_attribution", "direct contribution per class")):
        t = store.table(view, name)
        if t is not None and {"layer", "head"} <= set(t.columns):
            part = t[(t["layer"] == layer) & (t["head"] == head)].drop(columns=["layer", "head"])
            if not part.empty:
                unit.tables[label] = part.reset_index(drop=True)
    ts = unit.tables.get("TextSpan texts")
    if ts is not None:
        unit.labels = [(str(r["text"]), float(r["variance_explained"])) for _, r in ts.iterrows()]
        unit.label = unit.labels[0][0] if unit.labels else ""
    else:
        unit.missing.append("TextSpan texts: none recorded for this head")
    maps = store.table(view, "heads_token_maps")
    if maps is not None and {"layer", "head"} <= set(maps.columns) and \
            not maps[(maps["layer"] == layer) & (maps["head"] == head)].empty:
        unit.images["spatial map (token contributions to the reading effect)"] = f"images/head_map_{layer}_{head}.png"
    else:
        unit.missing.append("spatial map: saved for the top reading heads only (--maps)")
    unit.missing.append("top examples, feature visualisation: the heads audit records none per head")
    top = (view.summary.get("heads") or {}).get("top_reading_heads") or []
    if f"{layer}.{head}" in [str(t) for t in top[:5]]:
        unit.limitations["L-typographic"] = "one of the heads that read the written word most (typographic score)"
    return unit


register(UnitKind("head", "heads", ("layer", "head"), _head_index, _head_read))


# ------------------------------------------------------------------------------ SAE latents

def latent_factors(store: RunStore, view: RunView, recovered: bool = True) -> pd.DataFrame | None:
    """The planted factors whose best latent each latent is; with ``recovered`` only those it
    recovers (held-out AUROC at the run's recall threshold): only these name a latent, a weaker
    best match is no label."""
    f = store.table(view, "sae_factors")
    if recovered and f is not None and "latent_auroc" in f:
        f = f[f["latent_auroc"] >= float((view.summary.get("sae") or {}).get("recall_threshold", 0.9))]
    if f is None or f.empty or "latent" not in f:
        return None
    return f.sort_values("latent_auroc", ascending=False)


def _latent_index(store: RunStore, view: RunView) -> pd.DataFrame | None:
    lat = store.table(view, "sae_latents")
    if lat is None or lat.empty:
        return None
    out = pd.DataFrame({"latent": lat["latent"].astype(int)})
    f = latent_factors(store, view)
    if f is not None:
        g = f.groupby("latent").agg(label=("factor", "first"), labels=("factor", ";".join),
                                    score=("latent_auroc", "first")).reset_index()
        out = out.merge(g, on="latent", how="left")
    else:
        out["label"], out["labels"], out["score"] = "", "", np.nan
    if "label" in lat.columns:  # latents no planted factor claims keep their SoftWPMI label
        soft = lat.set_index(lat["latent"].astype(int))
        no_factor = out["label"].isna() | (out["label"].astype(str) == "")
        out.loc[no_factor, "label"] = out.loc[no_factor, "latent"].map(soft["label"]).to_numpy()
        out.loc[no_factor, "labels"] = out.loc[no_factor, "latent"].map(soft.get("labels", soft["label"])).to_numpy()
        if "label_score" in soft:
            out.loc[no_factor, "score"] = out.loc[no_factor, "latent"].map(soft["label_score"]).to_numpy()
    out["label"] = out["label"].fillna("").astype(str)
    out["labels"] = out["labels"].fillna("").astype(str)
    out["address"] = out["latent"].astype(str)
    return out[["address", "label", "labels", "score"]]


def _latent_read(store: RunStore, view: RunView, address: tuple[str, ...]) -> Unit | None:
    latent = _int(address[0], "the latent")
    lat = store.table(view, "sae_latents")
    if lat is None:
        return None
    row = lat[lat["latent"] == latent]
    if row.empty:
        return None
    r = row.iloc[0]
    unit = Unit("latent", store.run_name(view), (str(latent),),
                stats={k: _plain(v) for k, v in r.items() if k not in ("latent", "top_images")})
    tops = _split(str(r.get("top_images") or ""))
    if tops:
        unit.tables["top examples"] = pd.DataFrame({"rank": range(len(tops)), "id": tops})
    f = latent_factors(store, view, recovered=False)
    if f is not None:
        part = f[f["latent"] == latent]
        if not part.empty:
            unit.tables["planted factors (this latent is the best single unit for them)"] = part.reset_index(drop=True)
    f = latent_factors(store, view)
    if f is not None:
        part = f[f["latent"] == latent]
        if not part.empty:
            unit.labels = [(str(x["factor"]), float(x["latent_auroc"])) for _, x in part.iterrows()]
            unit.label = unit.labels[0][0]
    if not unit.labels and isinstance(r.get("label"), str) and r.get("label"):  # SoftWPMI, latents as units
        score = r.get("label_score")
        words = _split(str(r.get("labels") or r["label"]))
        unit.labels = [(w, float(score) if i == 0 and score is not None else None) for i, w in enumerate(words)]
        unit.label = str(r["label"])
    for name, label in (("sae_latent_quantiles", "quantile samples"), ("sae_latent_histogram", "activation histogram"),
                        ("sae_latent_patches", "patch maps (code per patch of its top images)")):
        t = store.table(view, name)
        if t is not None and "latent" in t:
            part = t[t["latent"] == latent].drop(columns=["latent"])
            if not part.empty:
                unit.tables[label] = part.reset_index(drop=True)
    png = f"images/sae_patches_{latent}.png"
    if (view.path / png).is_file():
        unit.images["patch maps on its top images"] = png
    elif store.table(view, "sae_latent_patches") is not None:
        unit.missing.append(f"patch-map picture: drawn for the first --maps latents only; the table above has "
                            f"latent {latent}'s patch codes")
    if "patch maps (code per patch of its top images)" in unit.tables:
        unit.missing.append("patch maps leave out the CLS token; the image-level code (max activation, top images) "
                            "is the maximum over every token, CLS included")
    unit.missing.append("feature visualisation and attribution: the SAE audit records none per latent")
    return unit


register(UnitKind("latent", "sae", ("latent",), _latent_index, _latent_read))
