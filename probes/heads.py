"""What the heads do: direct logit attribution, layer and head ablation, typographic reading
scores and a training-free typographic defence.

Each function is one measurement, callable from a notebook, returning tables or tensors:

- :func:`direct_attribution`: each component's direct contribution to each zero-shot logit
  (the decomposition of :mod:`clipaudit.probes.decompose` projected on the class embeddings).
- :func:`layer_curve`: accuracy when the direct effects of all but the last k layers are
  mean-ablated (Gandelsman et al. 2024, section 3.2: the late attention layers carry it).
- :func:`typo_set` / :func:`evaluate`: clean accuracy, typographic attack success and accuracy
  on attacked images, with Wilson intervals (``clipaudit.stats.rate_ci``), under any head mask.
  Success is defined as in :mod:`clipaudit.attacks.typographic_audit`: the attacked prediction
  is the target, over images whose true class is not the target.
- :func:`reading_scores`: per head, the share of the query token's attention that lands on the
  tokens where the renderer actually drew the word (the alpha layer of
  :func:`clipaudit.attacks.typographic.render`, never a guessed region).
- :func:`head_sweep`: every head ablated alone.
- :func:`defend_typographic`: greedy selection (by reading score; a head is kept only when
  ablating it lowers attack success; heads that would cost more than ``budget`` clean accuracy
  are skipped) in the spirit of Dyslexify (Hufe et al., ICLR 2026).
- :func:`random_sets_test`: the selected set against random head sets of the same size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from clipaudit.attacks.typographic import TextStyle, render
from clipaudit.errors import ClipauditError
from clipaudit.model import ZeroShotHead
from clipaudit.probes.decompose import Decomposition, decompose, project
from clipaudit.probes.head_ablation import Head, HeadMask, ablate_heads, all_heads
from clipaudit.stats import RateCI, rate_ci


# ----------------------------------------------------------------------- attribution

def _logits_parts(model, head: ZeroShotHead, d: Decomposition) -> tuple[list[str], torch.Tensor]:
    names, comps = d.components()
    return names, project(comps, d, head.weights, model.logit_scale)  # (B, K, C)


def direct_attribution(model, head: ZeroShotHead, pixels: torch.Tensor, batch_size: int = 64) -> pd.DataFrame:
    """Mean direct contribution of each component to each class logit.

    Returns:
        long table: component, layer (-1 for embed/post_bias), head (-1 for non-heads), class,
        contribution (mean over images, logit units), contribution_std.
    """
    sums, sq, n, names = None, None, 0, []
    for i in range(0, len(pixels), batch_size):
        d = decompose(model, pixels[i:i + batch_size])
        names, per = _logits_parts(model, head, d)
        s, q = per.sum(0).cpu(), (per ** 2).sum(0).cpu()
        sums, sq = (s, q) if sums is None else (sums + s, sq + q)
        n += per.shape[0]
    mean = sums / n
    std = (sq / n - mean ** 2).clamp_min(0).sqrt()
    rows = []
    for k, name in enumerate(names):
        layer, hd = _parse_component(name)
        for c, cls in enumerate(head.classnames):
            rows.append({"component": name, "layer": layer, "head": hd, "class": cls,
                         "contribution": float(mean[k, c]), "contribution_std": float(std[k, c])})
    return pd.DataFrame(rows)


def _parse_component(name: str) -> tuple[int, int]:
    if not name.startswith("L"):
        return -1, -1
    layer, _, rest = name[1:].partition(".")
    return int(layer), int(rest[1:]) if rest.startswith("H") else -1


def layer_curve(model, head: ZeroShotHead, pixels: torch.Tensor, true_idx: np.ndarray,
                batch_size: int = 64) -> pd.DataFrame:
    """Zero-shot accuracy when the direct effects of every layer except the last ``k`` are
    replaced by their mean over ``pixels`` (k = 0 .. L; k = L is the model's own accuracy).

    Returns: table k, layers_kept, accuracy, ci_low, ci_high, n.
    """
    parts = []
    names: list[str] = []
    for i in range(0, len(pixels), batch_size):
        d = decompose(model, pixels[i:i + batch_size])
        names, per = _logits_parts(model, head, d)
        parts.append(per.cpu())
    per = torch.cat(parts)  # (N, K, C)
    layer_of = np.array([_parse_component(n)[0] for n in names])
    n_layers = int(layer_of.max()) + 1
    mean = per.mean(0, keepdim=True)
    has = true_idx >= 0
    rows = []
    for k in range(n_layers + 1):
        ablate = torch.from_numpy((layer_of >= 0) & (layer_of < n_layers - k))
        logits = torch.where(ablate[None, :, None], mean, per).sum(1)
        hit = int((logits.argmax(1).numpy()[has] == true_idx[has]).sum())
        r = rate_ci(hit, int(has.sum()))
        rows.append({"k": k, "layers_kept": ",".join(str(l) for l in range(n_layers - k, n_layers)) or "none",
                     "accuracy": r.rate, "ci_low": r.lo, "ci_high": r.hi, "n": r.n})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------ typography

@dataclass
class TypoSet:
    """Clean and attacked images with what the attack needs to be scored.

    Attributes:
        clean, attacked: (N, 3, S, S) pixels in [0, 1].
        true_idx: (N,) class index of each image's true class (-1: not in the class list).
        word_tokens: (N, T) bool, the tokens (ViT patches / ResNet pooling positions, row by row)
            that hold any pixel the renderer drew.
        target: the written word / target class; target_idx its index.
    """

    clean: torch.Tensor
    attacked: torch.Tensor
    true_idx: np.ndarray
    word_tokens: torch.Tensor
    target: str
    target_idx: int

    def __len__(self) -> int:
        return int(self.clean.shape[0])

    @property
    def scored(self) -> np.ndarray:
        """Images whose true class is known and is not the target (the success denominator)."""
        return (self.true_idx >= 0) & (self.true_idx != self.target_idx)

    def split(self, n_first: int) -> tuple["TypoSet", "TypoSet"]:
        a, b = slice(0, n_first), slice(n_first, None)
        return (TypoSet(self.clean[a], self.attacked[a], self.true_idx[a], self.word_tokens[a], self.target,
                        self.target_idx),
                TypoSet(self.clean[b], self.attacked[b], self.true_idx[b], self.word_tokens[b], self.target,
                        self.target_idx))


def word_alpha(pixels: torch.Tensor, word: str, style: TextStyle, seed: int = 0,
               keys: Sequence[int] | None = None) -> torch.Tensor:
    """(B, S, S) the renderer's effective alpha for each image (0 where nothing was drawn).

    Read off the renderer itself: it composites ``p * (1 - a) + ink * a``, so rendering onto
    all-ones and all-zeros images gives ``a = 1 - (R(1) - R(0))`` exactly.
    """
    ones = render(torch.ones_like(pixels), word, style, seed=seed, keys=keys).pixels
    zeros = render(torch.zeros_like(pixels), word, style, seed=seed, keys=keys).pixels
    return (1.0 - (ones - zeros)).mean(1).clamp(0, 1)


def tokens_under(alpha: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, rows*cols) bool: the grid cells (row by row) holding any drawn pixel of ``alpha``."""
    b, s, _ = alpha.shape
    rows, cols = grid
    ph, pw = s // rows, s // cols
    cells = alpha[:, : rows * ph, : cols * pw].reshape(b, rows, ph, cols, pw).amax((2, 4))
    return (cells > 1e-6).flatten(1)


def _grid(model) -> tuple[int, int]:
    visual = model.model.visual
    if hasattr(visual, "grid_size"):
        g = visual.grid_size
        return int(g[0]), int(g[1])
    cfg = getattr(model, "hf_config", {}).get("vision_config") if hasattr(model, "hf_config") else None
    if cfg:  # transformers: square patch grid
        side = int(cfg.get("image_size", model.image_size)) // int(cfg.get("patch_size", 1) or 1)
        return side, side
    side = int(round((visual.attnpool.positional_embedding.shape[0] - 1) ** 0.5))
    return side, side


def typo_set(model, head: ZeroShotHead, pixels: torch.Tensor, labels: Sequence[str], target: str,
             style: TextStyle = TextStyle(), seed: int = 0) -> TypoSet:
    """Render ``target`` onto ``pixels`` and record where it was drawn (see :class:`TypoSet`)."""
    classes = head.classnames
    if target not in classes:
        raise ClipauditError(f"target {target!r} is not among the classes ({', '.join(classes[:8])}...)")
    keys = list(range(len(pixels)))
    attacked = render(pixels, target, style, seed=seed, keys=keys).pixels
    alpha = word_alpha(pixels.cpu(), target, style, seed=seed, keys=keys)
    true_idx = np.array([classes.index(l) if l in classes else -1 for l in labels])
    return TypoSet(pixels, attacked, true_idx, tokens_under(alpha, _grid(model)), target, classes.index(target))


@dataclass
class Evaluation:
    """Zero-shot results on a :class:`TypoSet` under one head mask."""

    clean_pred: np.ndarray
    attacked_pred: np.ndarray
    clean_accuracy: RateCI
    attack_success: RateCI
    attacked_accuracy: RateCI
    reading_effect: np.ndarray  # (N,) logit(target) - logit(true) on attacked images (NaN: unscored)


@torch.no_grad()
def _logits(head: ZeroShotHead, pixels: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([head(pixels[i:i + batch_size]).float().cpu() for i in range(0, len(pixels), batch_size)])


def evaluate(model, head: ZeroShotHead, ts: TypoSet, mask: HeadMask | None = None, batch_size: int = 64,
             clean: bool = True) -> Evaluation:
    """Clean accuracy, attack success and attacked accuracy (with 95% Wilson CIs) under ``mask``.

    ``clean=False`` skips the clean pass (its fields are then NaN-filled).
    """
    with ablate_heads(model, mask):
        adv = _logits(head, ts.attacked, batch_size)
        cl = _logits(head, ts.clean, batch_size) if clean else None
    a_pred = adv.argmax(1).numpy()
    sc = ts.scored
    has = ts.true_idx >= 0
    rows = np.arange(len(ts))
    effect = (adv[:, ts.target_idx] - adv[rows, np.maximum(ts.true_idx, 0)]).numpy()
    effect = np.where(sc, effect, np.nan)
    if cl is not None:
        c_pred = cl.argmax(1).numpy()
        clean_acc = rate_ci(int((c_pred[has] == ts.true_idx[has]).sum()), int(has.sum()))
    else:
        c_pred = np.full(len(ts), -1)
        clean_acc = RateCI(float("nan"), float("nan"), float("nan"), 0, 0)
    return Evaluation(c_pred, a_pred, clean_acc,
                      rate_ci(int((a_pred[sc] == ts.target_idx).sum()), int(sc.sum())),
                      rate_ci(int((a_pred[sc] == ts.true_idx[sc]).sum()), int(sc.sum())), effect)


def reading_scores(model, ts: TypoSet, batch_size: int = 64) -> pd.DataFrame:
    """Per head: mean share of the query token's attention on the word's tokens, on attacked images.

    Returns: table layer, head, typographic_score, word_token_share (share of tokens the word
    covers: what a head attending uniformly would score), n.
    """
    total, n = None, 0
    share = float(ts.word_tokens.float().mean())
    for i in range(0, len(ts), batch_size):
        d = decompose(model, ts.attacked[i:i + batch_size])
        att = d.attention.float().cpu()  # (B, L, H, T_all)
        if d.arch == "vit":
            att = att[..., 1:]  # patches only (CLS is token 0)
        words = ts.word_tokens[i:i + batch_size].float()
        s = (att * words[:, None, None]).sum(-1).sum(0)
        total = s if total is None else total + s
        n += att.shape[0]
    mean = total / n
    return pd.DataFrame([{"layer": l, "head": h, "typographic_score": float(mean[l, h]),
                          "word_token_share": share, "n": n}
                         for l in range(mean.shape[0]) for h in range(mean.shape[1])])


def reading_attribution(model, head: ZeroShotHead, ts: TypoSet, batch_size: int = 64) -> pd.DataFrame:
    """Per head: the direct effect of mean-ablating it on the reading effect, from the decomposition.

    reading effect = logit(target) - logit(true class) on attacked images. A head's direct effect
    is its direct contribution to that difference on attacked images minus its mean contribution
    on the clean images (what mean-ablation would put there). Returns: layer, head, direct_effect.
    """
    sc = ts.scored

    def per_head(pixels: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, len(pixels), batch_size):
            d = decompose(model, pixels[i:i + batch_size])
            out.append(project(d.heads + d.head_extra, d, head.weights, model.logit_scale).cpu())  # (B,L,H,C)
        return torch.cat(out)

    adv, cl = per_head(ts.attacked), per_head(ts.clean)
    idx = torch.from_numpy(np.where(sc)[0])
    true = torch.from_numpy(ts.true_idx[sc])
    diff_adv = adv[idx, ..., ts.target_idx] - adv[idx, ..., :].gather(-1, true.view(-1, 1, 1, 1).expand(
        -1, adv.shape[1], adv.shape[2], 1)).squeeze(-1)
    diff_clean = cl[idx, ..., ts.target_idx] - cl[idx, ..., :].gather(-1, true.view(-1, 1, 1, 1).expand(
        -1, cl.shape[1], cl.shape[2], 1)).squeeze(-1)
    effect = diff_adv.mean(0) - diff_clean.mean(0)
    return pd.DataFrame([{"layer": l, "head": h, "direct_effect": float(effect[l, h])}
                         for l in range(effect.shape[0]) for h in range(effect.shape[1])])


def token_maps(model, head: ZeroShotHead, ts: TypoSet, heads: Sequence[Head], n_images: int = 4
               ) -> tuple[pd.DataFrame, dict[Head, list]]:
    """Spatial maps: each chosen head's direct contribution to the reading effect, split by the
    image token it reads from (Gandelsman et al. 2024, section 4's spatial decomposition).

    For the first ``n_images`` scored attacked images, the head's per-token contribution (ViT:
    patches row by row, CLS left out; ResNet: ``layer4`` positions) projected on
    ``w_target - w_true`` (the written word's logit minus the true class's).

    Returns:
        (table: layer, head, image, row, col, contribution; (layer, head) -> one overlay image per
        attacked image, the positive part of the map upscaled onto it).
    """
    from clipaudit.probes.attribution import overlay

    idx = np.where(ts.scored)[0][:n_images]
    columns = ["layer", "head", "image", "row", "col", "contribution"]
    if len(idx) == 0 or not heads:
        return pd.DataFrame(columns=columns), {}
    pixels = ts.attacked[idx]
    d = decompose(model, pixels.to(model.device), tokens=True)
    rows, cols = d.grid
    toks = d.tokens  # (B, L, H, T, D)
    if d.arch == "vit":
        toks = toks[:, :, :, 1:]  # the patches (CLS carries no place)
    logits = project(toks, d, head.weights, model.logit_scale)  # (B, L, H, T, C)
    true = torch.as_tensor(ts.true_idx[idx], device=logits.device)
    effect = logits[..., ts.target_idx] - logits.gather(-1, true.view(-1, 1, 1, 1, 1).expand(
        *logits.shape[:-1], 1)).squeeze(-1)  # (B, L, H, T)
    frames, images = [], {}
    s = pixels.shape[-1]
    img, r, c = np.meshgrid(idx, np.arange(rows), np.arange(cols), indexing="ij")  # (B, rows, cols) each
    for (l, h) in heads:
        maps = effect[:, int(l), int(h)].reshape(len(idx), rows, cols).float().cpu()
        frames.append(pd.DataFrame({"layer": int(l), "head": int(h), "image": img.ravel().astype(int),
                                    "row": r.ravel(), "col": c.ravel(), "contribution": maps.numpy().ravel()}))
        heat = torch.nn.functional.interpolate(maps.clamp_min(0).unsqueeze(1), size=(s, s), mode="nearest")
        images[(int(l), int(h))] = overlay(pixels.cpu(), heat, percentile=100.0)
    return pd.concat(frames, ignore_index=True), images


def _eval_row(ev: Evaluation, base: Evaluation) -> dict:
    drop = np.nanmean(base.reading_effect - ev.reading_effect)
    return {"clean_accuracy": ev.clean_accuracy.rate, "clean_ci_low": ev.clean_accuracy.lo,
            "clean_ci_high": ev.clean_accuracy.hi,
            "attack_success_rate": ev.attack_success.rate, "ci_low": ev.attack_success.lo,
            "ci_high": ev.attack_success.hi, "n": ev.attack_success.n,
            "attacked_accuracy": ev.attacked_accuracy.rate, "attacked_ci_low": ev.attacked_accuracy.lo,
            "attacked_ci_high": ev.attacked_accuracy.hi, "reading_effect_drop": float(drop)}


def head_sweep(model, head: ZeroShotHead, ts: TypoSet, mask: HeadMask, batch_size: int = 64,
               progress: Callable = lambda it, total=None, desc="": it,
               heads: Sequence[Head] | None = None) -> pd.DataFrame:
    """Every head (or each of ``heads``) ablated alone (``mask`` gives the mode and means; its head
    list is ignored).

    Returns: one row per head (layer, head) with clean accuracy, attack success, attacked
    accuracy (each with CI) and ``reading_effect_drop`` (mean fall of logit(target) -
    logit(true) on attacked images).
    """
    base = evaluate(model, head, ts, None, batch_size)
    rows = []
    heads = all_heads(model) if heads is None else list(heads)
    for l, h in progress(heads, total=len(heads), desc="head sweep"):
        ev = evaluate(model, head, ts, mask.subset([(l, h)]) if mask.mode == "mean" else HeadMask([(l, h)], "zero"),
                      batch_size)
        rows.append({"layer": l, "head": h, **_eval_row(ev, base)})
    return pd.DataFrame(rows)


def defend_typographic(model, head: ZeroShotHead, ts: TypoSet, means_mask: HeadMask, scores: pd.DataFrame,
                       budget: float = 0.01, batch_size: int = 64, max_heads: int | None = None,
                       progress: Callable = lambda it, total=None, desc="": it) -> tuple[HeadMask, pd.DataFrame]:
    """Greedy head selection for a training-free typographic defence.

    Heads are tried in decreasing ``typographic_score``; a head joins the set when ablating the
    set with it lowers attack success and keeps clean accuracy within ``budget`` of the
    unablated model's; otherwise it is skipped.

    Args:
        ts: the selection images (report on other images).
        means_mask: supplies the mode (mean / zero) and each head's mean.
        scores: :func:`reading_scores` output.
        budget: largest clean-accuracy drop allowed, as a fraction in [0, 1].

    Returns:
        (the selected :class:`HeadMask`, one row per head tried: step, layer, head,
        typographic_score, kept, clean_accuracy, attack_success_rate, attacked_accuracy).

    Raises:
        ValueError: ``budget`` outside [0, 1].
    """
    if not 0.0 <= float(budget) <= 1.0:
        raise ValueError(f"budget must be a clean-accuracy drop in [0, 1], got {budget}")
    base = evaluate(model, head, ts, None, batch_size)
    floor = base.clean_accuracy.rate - float(budget) - 1e-12
    order = scores.sort_values("typographic_score", ascending=False)
    chosen: list[Head] = []
    best = base.attack_success.rate
    rows = []
    for step, r in enumerate(progress(list(order.itertuples()), total=len(order), desc="defence")):
        cand = chosen + [(int(r.layer), int(r.head))]
        ev = evaluate(model, head, ts, _mask_for(means_mask, cand), batch_size, clean=False)
        if ev.attack_success.rate < best:  # the clean pass only when the head helps
            ev = evaluate(model, head, ts, _mask_for(means_mask, cand), batch_size)
        keep = ev.attack_success.rate < best and ev.clean_accuracy.rate >= floor
        if keep:
            chosen, best = cand, ev.attack_success.rate
        rows.append({"step": step, "layer": int(r.layer), "head": int(r.head),
                     "typographic_score": float(r.typographic_score), "kept": bool(keep),
                     "clean_accuracy": ev.clean_accuracy.rate, "attack_success_rate": ev.attack_success.rate,
                     "attacked_accuracy": ev.attacked_accuracy.rate})
        if max_heads is not None and len(chosen) >= max_heads:
            break
    return _mask_for(means_mask, chosen), pd.DataFrame(rows)


def _mask_for(means_mask: HeadMask, heads: Sequence[Head]) -> HeadMask:
    if means_mask.mode == "mean":
        return means_mask.subset(heads)
    return HeadMask(list(heads), "zero", model=means_mask.model, weights_hash=means_mask.weights_hash)


def random_sets_test(model, head: ZeroShotHead, ts: TypoSet, means_mask: HeadMask, selected: Sequence[Head],
                     n_sets: int = 50, seed: int = 0, batch_size: int = 64,
                     progress: Callable = lambda it, total=None, desc="": it) -> tuple[float, pd.DataFrame]:
    """Is the selected set better than random head sets of the same size?

    Draws ``n_sets`` distinct random sets (all of them when fewer exist), measures attacked
    accuracy under each, and returns the one-sided permutation p-value
    ``(1 + #{random >= selected}) / (1 + n)`` with the table of draws (set, attacked_accuracy,
    attack_success_rate).
    """
    heads = all_heads(model)
    k = len(selected)
    if k == 0:
        raise ValueError("random_sets_test needs a non-empty selected set")
    rng = np.random.default_rng(seed)
    sel = tuple(sorted(selected))
    seen: set[tuple] = {sel}
    from math import comb

    n_sets = min(n_sets, comb(len(heads), k) - 1)
    sets = []
    while len(sets) < n_sets:
        s = tuple(sorted(heads[i] for i in rng.choice(len(heads), k, replace=False)))
        if s not in seen:
            seen.add(s)
            sets.append(s)
    obs = evaluate(model, head, ts, _mask_for(means_mask, sel), batch_size, clean=False).attacked_accuracy.rate
    rows = []
    for s in progress(sets, total=len(sets), desc="random head sets"):
        ev = evaluate(model, head, ts, _mask_for(means_mask, s), batch_size, clean=False)
        rows.append({"heads": ",".join(f"{l}.{h}" for l, h in s), "attacked_accuracy": ev.attacked_accuracy.rate,
                     "attack_success_rate": ev.attack_success.rate})
    df = pd.DataFrame(rows)
    p = (1 + int((df["attacked_accuracy"] >= obs).sum())) / (1 + len(df)) if len(df) else float("nan")
    return float(p), df


__all__ = ["Evaluation", "TypoSet", "bias_heads", "defend_typographic", "direct_attribution", "evaluate", "head_sweep",
           "layer_curve", "random_sets_test", "reading_attribution", "reading_scores", "tokens_under",
           "typo_set", "word_alpha"]


def _group_gap(values: np.ndarray, flags: np.ndarray, axis: int = 1) -> np.ndarray:
    f = flags.astype(float)
    n1 = np.maximum(f.sum(axis), 1)
    n0 = np.maximum((1 - f).sum(axis), 1)
    return (values * f).sum(axis) / n1 - (values * (1 - f)).sum(axis) / n0


def bias_heads(model, pixels: torch.Tensor, in_group: np.ndarray, labels: Sequence[str], harmful: str,
               batch_size: int = 64, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Which heads carry the direct effect separating a group's harmful-label logit from the rest's.

    Per image, a head's direct contribution to logit(harmful) minus the mean of the other labels'
    logits (zero-shot over ``labels``); per head, the gap between the group's mean and the rest's,
    with a 95% bootstrap CI (images resampled with their group flag) and a two-sided permutation
    p-value, Holm-adjusted over heads (``clipaudit.stats``). ``flagged``: Holm p < 0.05 and the CI
    excludes 0. A last row (layer -1) is the sum over all heads.

    Args:
        in_group: (N,) bool, True for the group under test.
        labels: the label set (must contain ``harmful``).

    Returns: table layer, head, gap, ci_low, ci_high, p, p_holm, flagged.
    """
    from clipaudit.stats import adjust_pvalues, bootstrap_ci, permutation_test

    labels = list(labels)
    if harmful not in labels:
        raise ClipauditError(f"harmful label {harmful!r} is not in the label set ({', '.join(labels)})")
    flags = np.asarray(in_group, dtype=bool)
    if flags.all() or not flags.any():
        raise ClipauditError("bias_heads needs images both in and out of the group")
    head = model.classifier(labels)
    j = labels.index(harmful)
    others = [i for i in range(len(labels)) if i != j]
    parts = []
    for i in range(0, len(pixels), batch_size):
        d = decompose(model, pixels[i:i + batch_size])
        per = project(d.heads + d.head_extra, d, head.weights, model.logit_scale).cpu()  # (B, L, H, C)
        parts.append((per[..., j] - per[..., others].mean(-1)).numpy())
    vals = np.concatenate(parts)  # (N, L, H)
    rows = []
    series = [((l, h), vals[:, l, h]) for l in range(vals.shape[1]) for h in range(vals.shape[2])]
    series.append(((-1, -1), vals.sum((1, 2))))
    for k, ((l, h), v) in enumerate(series):
        lo, hi = bootstrap_ci([v, flags], _group_gap, n_resamples=n_resamples, seed=seed + k)
        _, p, _ = permutation_test(v[flags], v[~flags], n_permutations=n_resamples, seed=seed + k)
        rows.append({"layer": l, "head": h, "gap": float(_group_gap(v[None], flags[None])[0]),
                     "ci_low": lo, "ci_high": hi, "p": float(p)})
    df = pd.DataFrame(rows)
    df["p_holm"] = adjust_pvalues(df, "p", "holm").to_numpy()
    df["flagged"] = (df["p_holm"] < 0.05) & ((df["ci_low"] > 0) | (df["ci_high"] < 0))
    return df
