"""Measure typographic attacks: success, flips and probability shifts with intervals; dose–
response sweeps over any rendering parameter; a search for the words that push hardest.

Why this shape: a typographic result is only trusted when the same images are measured
before and after (paired), images already of the target class are left out, every rate has
a 95% bootstrap interval, and the dose (text area, size, opacity...) is varied on purpose
rather than left to whatever a dataset happened to contain.

Definitions (per image, over images whose true class is not the target):

- success: the attacked prediction is the target.
- flipped: the attacked prediction differs from the clean one.
- true-class drop: p(true | clean) - p(true | attacked); target rise: p(target | attacked) -
  p(target | clean). The "gain" a word search ranks by is the target rise.

The true class is the source's ``label`` column; images without one fall back to their clean
prediction (``true_class_from`` in the summary says which).
"""
from __future__ import annotations

import difflib
import itertools
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from clipaudit import contract
from clipaudit.audits import Audit, Headline, PairedMetric, column, equals, minus
from clipaudit.attacks.typographic import SWEEPABLE, TextStyle, check_style, render, validate, with_params
from clipaudit.data import ImageSource
from clipaudit.errors import ClipauditError, suggest
from clipaudit.model import AuditModel, ZeroShotHead, in_eval_mode
from clipaudit.result import Result
from clipaudit.stats import bootstrap_ci, grouped_rate_ci, rate_ci, spearman
from clipaudit.distributed import distributed_context, gather
from clipaudit.zeroshot import (iterate, predict_probs, read_templates, read_word_list, require_classes,
                                resolve_classes)

SECTION = "typographic"
MAX_SWEEP_CELLS = 256
_INT_KEYS = {"size", "repeat"}
_FLOAT_KEYS = {"opacity", "rotation"}
_BOOL_KEYS = {"outline"}


@dataclass(frozen=True)
class TypographicConfig:
    """Everything ``clipaudit typographic`` takes; each field is one flag.

    Attributes:
        target: the class the attack should push predictions to (and, by default, the word written).
        word: the text written when it differs from the target (e.g. "$$$" toward "piggy bank",
            or a non-word as a control); None = the target.
        classes: class-list file (None = the default classes); the target is matched to a class
            ignoring case and spacing, added if it names none, refused if it nearly duplicates one.
        templates: prompt-template file (None = "a photo of a {}.").
        style, size, color, opacity, position, repeat, rotation, font, outline: see
            :class:`~clipaudit.attacks.typographic.TextStyle`.
        sweep: ``KEY=V1,V2,...`` specs; the factorial grid over them is measured.
        search_words: None (no search), ``""`` (default candidates) or a word-list file.
        search_n: images used by the word search (the first ones of the source).
        search_max: most candidate words tried; with more, the class names are kept and the
            rest are the words whose text embedding is closest to the target's (0 = no limit).
        batch_size: images per forward pass.
        examples: images shown in the example figure.
        n_resamples: bootstrap resamples for the intervals of mean probability changes (rates get Wilson intervals).
        seed: seeds rendering (random positions, angles) and the bootstrap.
    """

    target: str = "pizza"
    word: str | None = None
    classes: str | None = None
    templates: str | None = None
    style: str = "note"
    size: int | None = None
    color: str | None = None
    opacity: float = 1.0
    position: str = "center"
    repeat: int = 1
    rotation: float = 0.0
    font: str | None = None
    outline: bool = True
    sweep: list[str] = field(default_factory=list)
    search_words: str | None = None
    search_n: int = 64
    search_max: int = 64
    batch_size: int = 64
    examples: int = 4
    n_resamples: int = 2000
    seed: int = 0

    def text_style(self) -> TextStyle:
        return check_style(TextStyle(style=self.style, size=self.size, color=self.color,
                                     opacity=float(self.opacity), position=self.position,
                                     repeat=int(self.repeat), rotation=float(self.rotation),
                                     font=self.font, outline=bool(self.outline)))


# ------------------------------------------------------------------------ parsing

def _cast(key: str, text: str) -> Any:
    t = text.strip()
    if key in ("size",) and t.lower() in ("auto", "none", "default"):
        return None
    if key in ("font", "color") and t.lower() in ("default", "none"):
        return None
    try:
        if key in _INT_KEYS:
            return int(float(t)) if float(t).is_integer() else int(t)
        if key in _FLOAT_KEYS:
            return float(t)
    except ValueError:
        raise ClipauditError(f"sweep value {t!r} for {key} is not a number; e.g. --sweep {key}="
                             f"{'8,12,16' if key in _INT_KEYS else '0.25,0.5,1'}") from None
    if key in _BOOL_KEYS:
        if t.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ClipauditError(f"sweep value {t!r} for {key} must be true or false")
        return t.lower() in ("true", "1", "yes")
    return t


def parse_sweep(specs: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """``["size=8,12", "opacity=0.5,1"]`` -> ``[("size", [8, 12]), ("opacity", [0.5, 1.0])]``.

    Raises:
        ClipauditError: a spec without ``=``, an unknown key, a repeated key, no values, a
            non-numeric value for a numeric key, or a grid over :data:`MAX_SWEEP_CELLS` cells.
    """
    out: list[tuple[str, list[Any]]] = []
    for spec in specs:
        if "=" not in spec:
            raise ClipauditError(f"bad --sweep {spec!r}; write KEY=V1,V2,... with KEY one of "
                                 f"{', '.join(SWEEPABLE)}")
        key, _, values = spec.partition("=")
        key = key.strip().replace("colour", "color")
        if key not in SWEEPABLE:
            raise ClipauditError(f"unknown sweep key {key!r}{suggest(key, SWEEPABLE)} "
                                 f"(valid: {', '.join(SWEEPABLE)})")
        if any(k == key for k, _ in out):
            raise ClipauditError(f"sweep key {key!r} given twice; list all its values in one KEY=V1,V2")
        vals = [_cast(key, v) for v in values.split(",") if v.strip()]
        if not vals:
            raise ClipauditError(f"--sweep {key}= has no values; e.g. --sweep {key}=V1,V2")
        out.append((key, list(dict.fromkeys(vals))))
    cells = int(np.prod([len(v) for _, v in out])) if out else 0
    if cells > MAX_SWEEP_CELLS:
        raise ClipauditError(f"the sweep grid has {cells} cells (over {MAX_SWEEP_CELLS}); sweep fewer values")
    return out


def sweep_cells(base: TextStyle, grid: list[tuple[str, list[Any]]]) -> list[tuple[dict, TextStyle]]:
    """Every combination of the grid as (swept values, full style), each style validated."""
    keys = [k for k, _ in grid]
    cells = []
    for combo in itertools.product(*[v for _, v in grid]):
        params = dict(zip(keys, combo))
        cells.append((params, check_style(with_params(base, **params))))
    return cells


def default_candidate_words(classes: Sequence[str]) -> list[str]:
    """Class names plus the concept set (the probes' concept list when installed, else the toy
    world's vocabulary: colours, everyday words, pleasant/unpleasant words)."""
    words = list(classes)
    try:
        from importlib.resources import files

        text = (files("clipaudit.probes") / "data" / "concepts.txt").read_text(encoding="utf-8")
        concepts = [w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#")]
    except (FileNotFoundError, ModuleNotFoundError, OSError, TypeError):
        concepts = []
    if not concepts:
        from clipaudit.toy.world import COLOURS, FILLER_WORDS, PLEASANT_WORDS, UNPLEASANT_WORDS

        concepts = [*COLOURS, *FILLER_WORDS, *PLEASANT_WORDS, *UNPLEASANT_WORDS]
    return list(dict.fromkeys(words + concepts))


def shortlist(model: AuditModel, words: list[str], target: str, classes: Sequence[str], k: int) -> list[str]:
    """At most ``k`` candidates: class names first, then the words whose text embedding is
    nearest the target's. Why: each word costs one forward pass per image, and a concept set
    holds thousands of words; the nearest ones are the likeliest to push toward the target."""
    if k <= 0 or len(words) <= k:
        return words
    keep = [w for w in words if w in classes][:k]
    rest = [w for w in words if w not in keep]
    if len(keep) < k and rest:
        emb = model.encode_texts(rest)
        t = model.encode_texts([target])[0]
        order = torch.argsort(emb @ t, descending=True).tolist()
        keep += [rest[i] for i in order[: k - len(keep)]]
    return keep


# ---------------------------------------------------------------------- the passes

@dataclass
class _Variant:
    word: str
    style: TextStyle


@dataclass
class _Pass:
    """What one pass over the source measured: clean facts per image and, per variant,
    attacked prediction index, p(true), p(target), text area and final size (each (N,))."""

    ids: list[str]
    meta: pd.DataFrame
    true_class: list[str]
    true_idx: np.ndarray  # (N,) class index or -1
    clean_pred: np.ndarray
    clean_p_true: np.ndarray
    clean_p_target: np.ndarray
    variants: list[dict[str, np.ndarray]]
    examples: list[tuple]  # (clean pixels, clean probs, attacked pixels, attacked probs, true class, id)


def _true_classes(meta: pd.DataFrame, clean_pred: np.ndarray, classes: Sequence[str]) -> list[str]:
    if "label" in meta.columns:
        labels = meta["label"].fillna("").astype(str).tolist()
        return [l if l else classes[int(p)] for l, p in zip(labels, clean_pred)]
    return [classes[int(p)] for p in clean_pred]


def _run_pass(model: AuditModel, head: ZeroShotHead, source: ImageSource, variants: Sequence[_Variant],
              target: str, seed: int, batch_size: int, n_examples: int = 0,
              progress: Callable | None = None, exclude_target: bool = False, desc: str = "typographic") -> _Pass:
    classes = head.classnames
    t_idx = head.index(target)
    position = {str(i): k for k, i in enumerate(source.items["id"].astype(str))}
    ids, metas, true_cls, true_idx = [], [], [], []
    c_pred, c_true, c_target = [], [], []
    outs: list[dict[str, list]] = [{"pred": [], "p_true": [], "p_target": [], "text_area": [], "final_size": []}
                                   for _ in variants]
    examples: list = []
    rank, world = distributed_context()  # under torchrun each process takes a shard
    for batch in iterate(source, model, batch_size, progress, rank=rank, world_size=world, desc=desc):
        clean = predict_probs(head, batch.pixels, batch_size).numpy()
        pred = clean.argmax(1)
        tc = _true_classes(batch.meta, pred, classes)
        keep = np.array([not (exclude_target and t == target) for t in tc])
        if not keep.any():
            continue
        pixels = batch.pixels[torch.from_numpy(keep).to(batch.pixels.device)]
        clean, pred = clean[keep], pred[keep]
        tc = [t for t, k in zip(tc, keep) if k]
        bids = [i for i, k in zip(batch.ids, keep) if k]
        ti = np.array([classes.index(t) if t in classes else -1 for t in tc])
        rows = np.arange(len(ti))
        ids += bids
        metas.append(batch.meta[keep].reset_index(drop=True))
        true_cls += tc
        true_idx.append(ti)
        c_pred.append(pred)
        c_true.append(np.where(ti >= 0, clean[rows, np.maximum(ti, 0)], np.nan))
        c_target.append(clean[:, t_idx])
        keys = [position.get(i, 0) for i in bids]
        for v, out in zip(variants, outs):
            r = render(pixels, v.word, v.style, seed=seed, keys=keys)
            adv = predict_probs(head, r.pixels, batch_size).numpy()
            out["pred"].append(adv.argmax(1))
            out["p_true"].append(np.where(ti >= 0, adv[rows, np.maximum(ti, 0)], np.nan))
            out["p_target"].append(adv[:, t_idx])
            out["text_area"].append(np.array([f["text_area"] for f in r.facts]))
            out["final_size"].append(np.array([f["final_size"] for f in r.facts]))
            if out is outs[0] and len(examples) < n_examples:
                for j in range(len(bids)):
                    if len(examples) >= n_examples:
                        break
                    if tc[j] != target:
                        examples.append((pixels[j].cpu(), clean[j], r.pixels[j].cpu(), adv[j], tc[j], bids[j]))

    def cat(parts: list) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0)

    local = _Pass(ids, pd.concat(metas, ignore_index=True) if metas else pd.DataFrame(), true_cls,
                  cat(true_idx).astype(int), cat(c_pred).astype(int), cat(c_true), cat(c_target),
                  [{k: cat(v) for k, v in out.items()} for out in outs], examples)
    return local if world == 1 else _merge_passes(gather(local), position, n_examples, target)


def _merge_passes(parts: list[_Pass], position: dict[str, int], n_examples: int, target: str) -> _Pass:
    """The shards' passes as one, in source order: exactly what one process would have measured."""
    ids = [i for p in parts for i in p.ids]
    order = np.argsort([position[i] for i in ids], kind="stable")

    def arr(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts])[order]

    variants = [{k: np.concatenate([p.variants[v][k] for p in parts])[order] for k in parts[0].variants[v]}
                for v in range(len(parts[0].variants))]
    examples = sorted((e for p in parts for e in p.examples), key=lambda e: position[e[5]])[:n_examples]
    metas = [p.meta for p in parts if not p.meta.empty]
    meta = pd.concat(metas, ignore_index=True).iloc[order].reset_index(drop=True) if metas else pd.DataFrame()
    true_class = [c for p in parts for c in p.true_class]
    return _Pass([ids[i] for i in order], meta, [true_class[i] for i in order], arr("true_idx"),
                 arr("clean_pred"), arr("clean_p_true"), arr("clean_p_target"), variants, examples)


# ---------------------------------------------------------------------- statistics

def _rate(flags: np.ndarray) -> tuple[float, float, float]:
    """A success/flip rate with its Wilson interval (:func:`clipaudit.stats.rate_ci`)."""
    r = rate_ci(int(np.sum(flags)), int(len(flags)))
    return r.rate, r.lo, r.hi


def _mean_ci(values: np.ndarray, n_resamples: int, seed: int) -> tuple[float, float, float]:
    v = values[~np.isnan(values)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    lo, hi = bootstrap_ci(v, np.mean, n_resamples=n_resamples, seed=seed)
    return float(v.mean()), lo, hi


def _grouped(groups: Sequence[str], flags: np.ndarray) -> pd.DataFrame:
    """Rate per group with Wilson intervals (:func:`clipaudit.stats.grouped_rate_ci`)."""
    return grouped_rate_ci(groups, flags)[["group", "n", "rate", "ci_low", "ci_high"]]


# ---------------------------------------------------------------------- stages

def _main_stage(p: _Pass, classes: Sequence[str], target: str, style: TextStyle,
                cfg: TypographicConfig) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    v = p.variants[0]
    excluded = np.array([t == target for t in p.true_class], dtype=bool)
    success = v["pred"] == classes.index(target)
    flipped = v["pred"] != p.clean_pred
    images = pd.DataFrame({
        "id": p.ids, "true_class": p.true_class,
        "pred_clean": [classes[i] for i in p.clean_pred], "pred_attacked": [classes[i] for i in v["pred"]],
        "p_true_clean": p.clean_p_true, "p_true_attacked": v["p_true"],
        "p_target_clean": p.clean_p_target, "p_target_attacked": v["p_target"],
        "success": success, "flipped": flipped, "excluded": excluded,
        "text_area": v["text_area"], "final_size": v["final_size"].astype(int),
        **{f"render_{k}": [val] * len(p.ids) for k, val in style.as_dict().items()},
    })
    inc = ~excluded
    rate, lo, hi = _rate(success[inc])
    frate, flo, fhi = _rate(flipped[inc])
    drop, dlo, dhi = _mean_ci((p.clean_p_true - v["p_true"])[inc], cfg.n_resamples, cfg.seed + 2)
    rise, rlo, rhi = _mean_ci((v["p_target"] - p.clean_p_target)[inc], cfg.n_resamples, cfg.seed + 3)
    has_true = p.true_idx >= 0
    clean_acc = float(np.mean(p.clean_pred[has_true] == p.true_idx[has_true])) if has_true.any() else float("nan")
    adv_acc = float(np.mean(v["pred"][has_true & inc] == p.true_idx[has_true & inc])) if (has_true & inc).any() \
        else float("nan")
    grouped = _grouped(np.array(p.true_class)[inc], success[inc])
    flips = pd.DataFrame({"group": np.array(p.true_class)[inc], "f": flipped[inc]}).groupby("group")["f"].mean()
    by_class = pd.DataFrame({"class": grouped["group"], "n": grouped["n"],
                             "attack_success_rate": grouped["rate"], "ci_low": grouped["ci_low"],
                             "ci_high": grouped["ci_high"],
                             "flip_rate": grouped["group"].map(flips).to_numpy()})
    sizes = v["final_size"][inc] if inc.any() else v["final_size"]
    summary = {
        "n_images": int(inc.sum()), "n_excluded": int(excluded.sum()),
        "attack_success_rate": rate, "attack_success_ci": [lo, hi],
        "flip_rate": frate, "flip_rate_ci": [flo, fhi],
        "true_prob_drop": drop, "true_prob_drop_ci": [dlo, dhi],
        "target_prob_rise": rise, "target_prob_rise_ci": [rlo, rhi],
        "clean_accuracy": clean_acc, "attacked_accuracy": adv_acc,
        "final_text_size": int(np.median(sizes)) if len(sizes) else None,
        "text_area": float(np.mean(v["text_area"])) if len(v["text_area"]) else float("nan"),
    }
    return summary, images, by_class


def _sweep_stage(p: _Pass, cells: list[tuple[dict, TextStyle]], classes: Sequence[str], target: str,
                 cfg: TypographicConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    t_idx = classes.index(target)
    inc = np.array([t != target for t in p.true_class], dtype=bool)
    rows, long = [], []
    for c, ((params, _), v) in enumerate(zip(cells, p.variants)):
        succ = (v["pred"] == t_idx)[inc]
        rate, lo, hi = _rate(succ)
        gain = (v["p_target"] - p.clean_p_target)[inc]
        rows.append({**{k: ("default" if val is None else val) for k, val in params.items()},
                     "final_size": float(np.median(v["final_size"][inc])) if inc.any() else float("nan"),
                     "text_area": float(np.mean(v["text_area"][inc])) if inc.any() else float("nan"),
                     "n": int(inc.sum()), "attack_success_rate": rate, "ci_low": lo, "ci_high": hi,
                     "flip_rate": float(np.mean((v["pred"] != p.clean_pred)[inc])) if inc.any() else float("nan"),
                     "mean_target_gain": float(np.mean(gain)) if len(gain) else float("nan")})
        long.append(pd.DataFrame({"cell": c, "text_area": v["text_area"][inc], "success": succ,
                                  **{k: [("default" if val is None else val)] * int(inc.sum())
                                     for k, val in params.items()}}))
    sweep = pd.DataFrame(rows)
    per = pd.concat(long, ignore_index=True) if long else pd.DataFrame()
    dose_rows, spearmans = [], {}
    for key in [k for k in cells[0][0]] if cells else []:
        g = _grouped(per[key].astype(str), per["success"].to_numpy())
        order = list(dict.fromkeys(str("default" if c[0][key] is None else c[0][key]) for c in cells))
        g = g.set_index("group").loc[order].reset_index()
        for _, r in g.iterrows():
            dose_rows.append({"param": key, "value": r["group"], "n": int(r["n"]), "attack_success_rate": r["rate"],
                              "ci_low": r["ci_low"], "ci_high": r["ci_high"]})
        try:
            numeric = [float(x) for x in order]
            spearmans[key] = spearman(numeric, g["rate"].to_numpy())
        except ValueError:
            pass
    if len(per) and per["text_area"].nunique() > 1:
        bins = pd.qcut(per["text_area"], q=min(6, per["text_area"].nunique()), duplicates="drop")
        g = _grouped(bins.astype(str), per["success"].to_numpy())
        mids = per.groupby(bins.astype(str), observed=True)["text_area"].mean()
        g["mid"] = g["group"].map(mids)
        for _, r in g.sort_values("mid").iterrows():
            dose_rows.append({"param": "text_area", "value": f"{r['mid']:.2f}", "n": int(r["n"]),
                              "attack_success_rate": r["rate"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]})
        spearmans["text_area"] = spearman(sweep["text_area"], sweep["attack_success_rate"])
    return sweep, pd.DataFrame(dose_rows, columns=["param", "value", "n", "attack_success_rate", "ci_low", "ci_high"]), \
        {k: (None if np.isnan(v) else v) for k, v in spearmans.items()}


def _words_stage(p: _Pass, words: list[str], classes: Sequence[str], target: str,
                 cfg: TypographicConfig) -> pd.DataFrame:
    t_idx = classes.index(target)
    inc = np.array([t != target for t in p.true_class], dtype=bool)
    src = np.array(p.true_class)[inc]
    rows = []
    for w, v in zip(words, p.variants):
        gain = (v["p_target"] - p.clean_p_target)[inc]
        succ = (v["pred"] == t_idx)[inc]
        rate, lo, hi = _rate(succ)
        rows.append({"word": w, "source_class": "all", "n": int(inc.sum()), "mean_target_gain": float(gain.mean()),
                     "attack_success_rate": rate, "ci_low": lo, "ci_high": hi})
        for cls in sorted(set(src)):
            m = src == cls
            rows.append({"word": w, "source_class": cls, "n": int(m.sum()),
                         "mean_target_gain": float(gain[m].mean()), "attack_success_rate": float(succ[m].mean()),
                         "ci_low": float("nan"), "ci_high": float("nan")})
    df = pd.DataFrame(rows)
    if df.empty:
        return df.assign(rank=pd.Series(dtype=int))
    df["rank"] = df.groupby("source_class")["mean_target_gain"].rank(ascending=False, method="min").astype(int)
    return df.sort_values(["source_class", "rank"], key=lambda s: s if s.name == "rank" else
                          s.map(lambda x: "" if x == "all" else x)).reset_index(drop=True)


# ---------------------------------------------------------------------- figures

def examples_figure(p: _Pass, classes: Sequence[str], target: str, word: str):
    """Rows of (clean | attacked) images with their top-5 class probabilities."""
    from clipaudit.figures import image_prob_grid, to_uint8_image

    rows = []
    for clean_px, clean_pr, adv_px, adv_pr, true, _ in p.examples:
        rows.append([(f"clean (true {true}): {classes[int(clean_pr.argmax())]}", to_uint8_image(clean_px), clean_pr),
                     (f"with '{word}': {classes[int(adv_pr.argmax())]}", to_uint8_image(adv_px), adv_pr)])
    return image_prob_grid(rows, classes, k=5, highlight=[target])


def dose_figure(dose: pd.DataFrame):
    """Success rate (with 95% CI) against text area and each swept parameter."""
    from clipaudit.figures import _pyplot, detach

    plt = _pyplot()
    params = list(dict.fromkeys(dose["param"]))
    fig, axes = plt.subplots(1, len(params), figsize=(3.2 * len(params), 2.8), squeeze=False)
    for ax, key in zip(axes[0], params):
        d = dose[dose["param"] == key]
        x = np.arange(len(d))
        y = d["attack_success_rate"].to_numpy(float)
        err = np.vstack([y - d["ci_low"].to_numpy(float), d["ci_high"].to_numpy(float) - y])
        ax.errorbar(x, y, yerr=np.clip(err, 0, None), marker="o", capsize=3)
        ax.set_xticks(x, d["value"].astype(str), fontsize=7, rotation=30)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("text area (% of image)" if key == "text_area" else key, fontsize=8)
        ax.set_ylabel("attack success rate", fontsize=8)
    fig.tight_layout()
    return detach(fig)


# ---------------------------------------------------------------------- the audit

def check_target(target: str | None) -> str:
    """The target class word, stripped; an empty one is a clear error (the CLI calls this
    before loading the model, :func:`prepare` for library callers)."""
    target = (target or "").strip()
    if not target:
        raise ClipauditError("--target is empty; pass the class word to write, e.g. --target pizza")
    return target


def match_target(target: str, classes: Sequence[str]) -> str:
    """The class the target names: an existing class when the two differ only in case or
    spacing (``" Apple "`` -> ``apple``), else ``target`` itself (a new class to add).

    Why: a near-duplicate class splits the target's probability mass with the class it
    duplicates, so success would read 0% while images flip to the original.

    Raises:
        ClipauditError: the target is not a class but is a near-duplicate of one (a plural,
            or a spelling within difflib ratio 0.85); the message names the class to use and
            how to add the target anyway (list it in a ``--classes`` file).
    """
    key = " ".join(target.split()).casefold()
    folded = {" ".join(c.split()).casefold(): c for c in classes}
    if key in folded:
        return folded[key]
    near = [c for f, c in folded.items()
            if f in (key + "s", key + "es") or key in (f + "s", f + "es")
            or difflib.SequenceMatcher(None, key, f).ratio() >= 0.85]
    if near:
        raise ClipauditError(f"--target {target!r} is not a class but is close to {', '.join(map(repr, near))}; "
                             f"did you mean --target {near[0]!r}? (to add it as a new class anyway, list it "
                             f"in a --classes file)")
    return target


def prepare(model: AuditModel, source: ImageSource | None, config: TypographicConfig):
    """Validate everything before model work: (target class, word, style, class list, added,
    templates, sweep cells, candidate words or None, skipped words).

    The target is matched to an existing class ignoring case and spacing (see
    :func:`match_target`); the word written defaults to the target as typed (stripped).
    """
    typed = check_target(config.target)
    word = typed if config.word is None else config.word
    if not word.strip():
        raise ClipauditError("--word is empty; leave it out to write the target, or pass the text to write")
    style = config.text_style()
    validate(word, style, model.image_size)
    cells = sweep_cells(style, parse_sweep(config.sweep)) if config.sweep else []
    for params, cell_style in cells:
        try:
            validate(word, cell_style, model.image_size)
        except ClipauditError as err:
            raise ClipauditError(f"sweep cell {params}: {err}") from None
    classes, _ = resolve_classes(model, config.classes, source)
    target = match_target(typed, classes)
    added = [] if target in classes else [target]
    classes = require_classes(classes + added, "typographic attack success")
    templates = read_templates(config.templates)
    words, skipped_words = None, []
    if config.search_words is not None:
        cand = read_word_list(config.search_words, "word") if config.search_words else default_candidate_words(classes)
        words = []
        for w in cand:
            try:
                validate(w, style, model.image_size)
                words.append(w)
            except ClipauditError as err:
                skipped_words.append((w, str(err)))
        if not words:
            raise ClipauditError("no candidate word can be drawn with this style; use shorter words or another --font")
        words = shortlist(model, words, target, classes, config.search_max)
    if config.batch_size < 1:
        raise ClipauditError(f"--batch-size must be >= 1, got {config.batch_size}")
    return target, word, style, classes, added, templates, cells, words, skipped_words


@in_eval_mode
def audit(model: AuditModel, source: ImageSource, config: TypographicConfig, run=None,
          progress: Callable | None = None) -> Result:
    """Write ``config.target`` on every image and measure what the zero-shot head does.

    Stages (each saved to ``run`` as soon as it finishes): the main attack (per-image table,
    per-class table, summary, example figure); the sweep (with ``config.sweep``); the word
    search (with ``config.search_words``). Tables and keys follow docs/run-folders.md.

    Args:
        model: the CLIP under audit.
        source: images with an optional ``label`` column (the true class).
        config: see :class:`TypographicConfig`.
        run: a RunFolder to save into stage by stage (None: only return the Result).
        progress: wraps the batch iterator (e.g. ``clipaudit.cli.progress``).

    Returns:
        Result with tables typographic_images, typographic_by_class [, typographic_sweep,
        typographic_dose] [, typographic_words] and image typographic_examples.

    Raises:
        ClipauditError: empty target, a target or sweep cell that cannot be drawn, unknown
            font, class file or sweep key.
    """
    target, word, style, classes, added, templates, cells, words, skipped_words = prepare(model, source, config)
    head = model.classifier(classes, templates)
    result = Result(SECTION)

    def keep(tables: dict, images: dict | None = None, summary: dict | None = None) -> None:
        part = Result(SECTION, tables, images or {}, summary or {})
        result.tables.update(part.tables)
        result.images.update(part.images)
        result.summary.update(part.summary)
        if run is not None:
            part.save(run)

    main = _run_pass(model, head, source, [_Variant(word, style)], target, config.seed, config.batch_size,
                     n_examples=config.examples, progress=progress)
    if not main.ids:
        raise ClipauditError("no image could be read from the source; see skipped.csv for why")
    summary, images, by_class = _main_stage(main, classes, target, style, config)
    labelled = "label" in main.meta.columns and main.meta["label"].astype(str).str.len().gt(0).all()
    summary = {"target": target, "word": word, **summary, "target_added": bool(added), "classes": len(classes),
               "true_class_from": "label" if labelled else "clean_prediction (where no label)",
               "style": style.as_dict(), "random_init": model.random_init}
    summary["example_ids"] = [e[5] for e in main.examples]
    imgs = {"typographic_examples": examples_figure(main, classes, target, word)} if main.examples else {}
    keep({"typographic_images": images, "typographic_by_class": by_class}, imgs, summary)

    if cells:
        sp = _run_pass(model, head, source, [_Variant(word, s) for _, s in cells], target, config.seed,
                       config.batch_size, progress=progress, exclude_target=True, desc="sweep")
        sweep, dose, rhos = _sweep_stage(sp, cells, classes, target, config)
        keep({"typographic_sweep": sweep, "typographic_dose": dose},
             {"typographic_dose": dose_figure(dose)} if len(dose) else {},
             {"sweep_cells": len(cells), "sweep_spearman": rhos})

    if words is not None:
        sub = source.subset(np.arange(len(source)) < max(1, config.search_n))
        wp = _run_pass(model, head, sub, [_Variant(w, style) for w in words], target, config.seed,
                       config.batch_size, progress=progress, exclude_target=True, desc="word search")
        table = _words_stage(wp, words, classes, target, config)
        overall = table[table["source_class"] == "all"].sort_values("rank")
        per_class = table[(table["source_class"] != "all") & (table["rank"] == 1)]
        keep({"typographic_words": table}, None,
             {"best_words": overall["word"].head(5).tolist(),
              "best_word_by_class": dict(zip(per_class["source_class"], per_class["word"])),
              "words_searched": len(words), "words_skipped": [w for w, _ in skipped_words]})
    if run is not None and source.skipped:
        run.write_table("skipped", source.skipped_table())
    return result


def config_dict(config: TypographicConfig) -> dict:
    return asdict(config)


# ------------------------------------------------------------------ registry entry (clipaudit.audits)

def run(model: AuditModel, source: ImageSource, config: TypographicConfig, sink) -> Result:
    """The registry's call shape: :func:`audit` writing through ``sink`` (a ResultSink)."""
    return audit(model, source, config, run=sink, progress=sink.progress)


def plan(args) -> list[str]:
    """This audit's command line inside ``clipaudit audit`` (``args.quick``: small sizes)."""
    return ["typographic", "--target", args.target, "--n-images", "96" if args.quick else "500",
            *([] if args.quick else ["--sweep", "size=6,8,10,12,14", "opacity=0.25,0.5,1"])]


AUDIT = Audit(
    name=SECTION, config=TypographicConfig, run=run, contract=contract.TYPOGRAPHIC,
    page="clipaudit.dashboard.page_typographic", cli="clipaudit.attacks.typographic_cli", plan=plan,
    description="write a target word on every image; success and flip rates, sweeps, word search",
    headlines=(Headline("attack_success_rate", "typographic attack success", "attack_success_ci"),),
    limitations={"L-typographic": ("attack_success_rate", "flip_rate"), "L-english": ("non_latin_checked",)},
    paired=(PairedMetric(SECTION, "typographic_images", "clean_accuracy", equals("pred_clean", "true_class")),
            PairedMetric(SECTION, "typographic_images", "attack_success_rate", column("success")),
            PairedMetric(SECTION, "typographic_images", "flip_rate", column("flipped")),
            PairedMetric(SECTION, "typographic_images", "true_prob_drop", minus("p_true_clean", "p_true_attacked")),
            PairedMetric(SECTION, "typographic_images", "target_prob_rise",
                         minus("p_target_attacked", "p_target_clean"))),
)
