"""Quality of a trained SAE on one layer, in one streamed pass over an image source.

- FVU (fraction of variance unexplained): ``sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`` over
  every row (Gao et al. 2024 report normalised MSE, the same quantity);
- L0: mean number of active latents per row;
- dead fraction: share of latents that never fire on the source;
- spliced zero-shot accuracy: the layer replaced by the reconstruction (:func:`spliced`) vs clean,
  on the images with a ``label`` among the zero-shot classes.

The pass also keeps, per image, the SAE codes (sparse; the maximum over rows for ``tokens=all``)
and the layer's neurons (position-averaged), which the planted-truth scoring and the latent
explorer read. Memory: the sparse codes (k values per image) and N x d neurons.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from clipaudit.hooks import Layer, neurons, run_with_cache

from clipaudit.probes.sae import SparseAutoencoder, check_layer_tokens, rows_of, rows_per_image
from clipaudit.probes.sae_edit import spliced


@dataclass
class SAEPass:
    """What one pass measured. ``codes`` is a scipy CSR (N images, m latents); ``neurons`` (N, d)."""

    fvu: float
    l0: float
    dead_fraction: float
    fire_counts: np.ndarray
    codes: object
    neurons: np.ndarray
    ids: list[str]
    clean_correct: np.ndarray | None
    spliced_correct: np.ndarray | None
    classes: list[str]
    embeddings: np.ndarray | None = None


def image_codes(codes: torch.Tensor, per: int) -> torch.Tensor:
    """(B * per, m) row codes -> (B, m) per image: the maximum over an image's rows."""
    return codes if per == 1 else codes.view(-1, per, codes.shape[1]).amax(1)


def measure(model, source, layer: Layer, sae: SparseAutoencoder, tokens: str,
            classes: Sequence[str] | None = None, image_batch: int = 128,
            progress: Callable | None = None, rank: int = 0, world_size: int = 1) -> SAEPass:
    """Stream ``source`` once through ``model`` and measure ``sae`` on ``layer`` (see module doc).

    Args:
        classes: zero-shot classes for the accuracies (None or empty: no accuracy measured).
        rank, world_size: under torchrun each rank measures its shard of the source and every
            rank gets the merged pass, in source order (equal to the one-process pass).

    Returns:
        :class:`SAEPass`.
    """
    from scipy import sparse

    check_layer_tokens(layer, tokens)
    per = rows_per_image(layer, tokens)
    head = model.classifier(list(classes)) if classes else None
    sq_err, sum_x, sum_xx, n_rows, active = 0.0, None, 0.0, 0, 0
    fires = torch.zeros(sae.n_latents, dtype=torch.long)
    code_parts, neuron_parts, emb_parts, ids, clean, spl = [], [], [], [], [], []
    scored_ids: list[str] = []
    batches = (source.shard(rank, world_size) if world_size > 1 else source).batches(model, image_batch)
    for batch in (progress(batches, desc="measure SAE") if progress else batches):
        with torch.no_grad():
            emb, cache = run_with_cache(model, batch.pixels, layer)
            rows = rows_of(cache[layer.path], layer, tokens).float().to(sae.mean.device)
            codes = sae.encode(rows)
            recon = sae.decode(codes)
        sq_err += float((recon - rows).pow(2).sum())
        sum_x = rows.sum(0) if sum_x is None else sum_x + rows.sum(0)
        sum_xx += float(rows.pow(2).sum())
        n_rows += len(rows)
        active += int((codes > 0).sum())
        fires += (codes > 0).sum(0).cpu()
        img = image_codes(codes, per).cpu().numpy()
        code_parts.append(sparse.csr_matrix(img))
        neuron_parts.append(neurons(cache[layer.path], layer.layout, "mean").float().cpu().numpy())
        ids += batch.ids
        emb_parts.append(emb.float().cpu().numpy())
        if head is not None:
            truth = batch.meta["label"].fillna("").astype(str).tolist() if "label" in batch.meta else [""] * len(batch.ids)
            with torch.no_grad():
                clean_pred = head.logits_from_embeddings(emb).argmax(-1).cpu().tolist()
                with spliced(model, layer, sae, tokens):
                    spl_pred = head(batch.pixels).argmax(-1).cpu().tolist()
            for i, t, c, s in zip(batch.ids, truth, clean_pred, spl_pred):
                if t in classes:
                    clean.append(classes[c] == t)
                    spl.append(classes[s] == t)
                    scored_ids.append(str(i))
    if world_size > 1:
        from clipaudit.distributed import gather

        parts = gather({"sq_err": sq_err, "sum_x": None if sum_x is None else sum_x.cpu(), "sum_xx": sum_xx,
                        "n_rows": n_rows, "active": active, "fires": fires, "codes": code_parts,
                        "neurons": neuron_parts, "emb": emb_parts, "ids": ids, "clean": clean, "spl": spl,
                        "scored": scored_ids})
        sq_err, sum_xx = sum(q["sq_err"] for q in parts), sum(q["sum_xx"] for q in parts)
        n_rows, active = sum(q["n_rows"] for q in parts), sum(q["active"] for q in parts)
        sum_x = sum(q["sum_x"] for q in parts if q["sum_x"] is not None)
        fires = sum(q["fires"] for q in parts)
        ids = [i for q in parts for i in q["ids"]]
        if ids:  # back to source order
            order = {str(i): n for n, i in enumerate(source.items["id"].astype(str))}
            by_image = np.argsort([order[str(i)] for i in ids], kind="stable")
            ids = [ids[i] for i in by_image]
            code_parts = [sparse.vstack([c for q in parts for c in q["codes"]]).tocsr()[by_image]]
            neuron_parts = [np.concatenate([a for q in parts for a in q["neurons"]])[by_image]]
            emb_parts = [np.concatenate([a for q in parts for a in q["emb"]])[by_image]]
            scored_ids = [i for q in parts for i in q["scored"]]
            by_scored = np.argsort([order[i] for i in scored_ids], kind="stable")
            clean = list(np.array([v for q in parts for v in q["clean"]], bool)[by_scored])
            spl = list(np.array([v for q in parts for v in q["spl"]], bool)[by_scored])
    if n_rows == 0:
        from clipaudit.errors import ClipauditError
        raise ClipauditError("the image source gave no images to measure the SAE on")
    total_var = sum_xx - float(sum_x.pow(2).sum()) / n_rows
    return SAEPass(fvu=sq_err / max(total_var, 1e-12), l0=active / n_rows,
                   dead_fraction=float((fires == 0).float().mean()), fire_counts=fires.numpy(),
                   codes=sparse.vstack(code_parts).tocsr(), neurons=np.concatenate(neuron_parts), ids=ids,
                   clean_correct=np.array(clean, bool) if head is not None else None,
                   spliced_correct=np.array(spl, bool) if head is not None else None, classes=list(classes or []),
                   embeddings=np.concatenate(emb_parts))


def top_positions(p: SAEPass, k: int) -> torch.Tensor:
    """(m, k) image positions per latent, strongest first; -1 where a latent fired on fewer images."""
    codes = p.codes.tocsc()
    out = torch.full((codes.shape[1], k), -1, dtype=torch.long)
    for j in range(codes.shape[1]):
        col = codes[:, j]
        order = np.argsort(-col.data, kind="stable")[:k]
        out[j, :len(order)] = torch.from_numpy(col.indices[order].astype(np.int64))
    return out


def latent_labels(model, p: SAEPass, k: int = 50, concepts: list[str] | None = None) -> pd.DataFrame:
    """CLIP-Dissect SoftWPMI labels per latent (:func:`clipaudit.probes.labels.soft_wpmi`, latents as
    units, the shipped concept set unless ``concepts`` is given, and :class:`~clipaudit.probes.labels.LabelConfig` defaults)."""
    from clipaudit.probes.labels import LabelConfig, concept_probs, embed_concepts, label_neurons, read_concepts, soft_wpmi

    cfg = LabelConfig()
    concepts = read_concepts() if concepts is None else list(concepts)
    probs = concept_probs(torch.from_numpy(p.embeddings), embed_concepts(model, concepts), cfg.temperature)
    scores = soft_wpmi(probs, top_positions(p, k), cfg.lam)
    table = label_neurons(scores, concepts, 3).rename(columns={"neuron": "latent"})
    return table[["latent", "label", "label_score", "labels"]]


def latent_table(p: SAEPass, top: int = 8) -> pd.DataFrame:
    """One row per latent: firing rate, mean and max activation over images, top image ids, and the
    activation quantiles (10/50/90%) over the images it fires on (the explorer's histogram)."""
    codes = p.codes.tocsc()
    n = codes.shape[0]
    rows = []
    for j in range(codes.shape[1]):
        col = codes[:, j]
        vals, idx = col.data, col.indices
        order = np.argsort(-vals, kind="stable")[:top]
        q = np.quantile(vals, [0.1, 0.5, 0.9]) if len(vals) else [0.0, 0.0, 0.0]
        rows.append({"latent": j, "fire_rate": len(vals) / max(n, 1), "mean_activation": float(vals.sum() / max(n, 1)),
                     "max_activation": float(vals.max()) if len(vals) else 0.0, "q10": float(q[0]),
                     "q50": float(q[1]), "q90": float(q[2]), "top_images": " ".join(p.ids[i] for i in idx[order])})
    return pd.DataFrame(rows)


def latent_profile(p: SAEPass, bins: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each latent's activations over the images it fires on: examples across quantiles and a
    histogram (the explorer's views; :mod:`clipaudit.probes.profile`'s rules with latents as units).

    Zeros are left out: a TopK latent is zero on most images, and quantiles over all images would
    all be 0. A latent that never fires has no rows.

    Returns:
        (quantile examples: latent, quantile, value, id, activation; histogram: latent, bin_low,
        bin_high, count).
    """
    from clipaudit.probes.profile import histograms, quantile_examples

    codes = p.codes.tocsc()
    quant, hist = [], []
    for j in range(codes.shape[1]):
        col = codes[:, j]
        if col.nnz == 0:
            continue
        vals = col.data[:, None].astype(np.float64)
        quant.append(quantile_examples(vals, [p.ids[i] for i in col.indices]).assign(neuron=j))
        hist.append(histograms(vals, bins).assign(neuron=j))
    qcols, hcols = ["latent", "quantile", "value", "id", "activation"], ["latent", "bin_low", "bin_high", "count"]
    if not quant:
        return pd.DataFrame(columns=qcols), pd.DataFrame(columns=hcols)
    return (pd.concat(quant, ignore_index=True).rename(columns={"neuron": "latent"})[qcols],
            pd.concat(hist, ignore_index=True).rename(columns={"neuron": "latent"})[hcols])


def patch_grid(layer: Layer, per: int) -> tuple[int, int, int] | None:
    """(first patch row, grid rows, grid cols) of a ``tokens=all`` layer's rows per image, or None
    when the rows have no place (one row per image): ViT tokens drop the CLS token (row 0) when the
    rest is a square grid; conv maps are their (H, W) positions."""
    if per == 1:
        return None
    if layer.layout == "nchw":
        return 0, int(layer.shape[2]), int(layer.shape[3])
    side = int(round((per - 1) ** 0.5))
    if side * side == per - 1:
        return 1, side, side
    side = int(round(per ** 0.5))
    return (0, side, side) if side * side == per else None


def patch_maps(model, source, layer: Layer, sae: SparseAutoencoder, p: SAEPass, top: int = 4,
               latents: Sequence[int] | None = None, image_batch: int = 64,
               progress: Callable | None = None) -> pd.DataFrame:
    """Where on its top images each latent fires: its code on every patch (ViT) or position (conv
    map) of a ``tokens=all`` SAE, for each latent's ``top`` images (a second pass over just those).

    Args:
        p: the measuring pass (its per-image codes pick the top images).
        latents: which latents (default: all that fire).

    Returns:
        latent, rank (of the image among the latent's top), id, row, col, activation; only the
        nonzero entries. Empty (with those columns) when the layer's rows have no grid.
    """
    columns = ["latent", "rank", "id", "row", "col", "activation"]
    per = rows_per_image(layer, sae.config.tokens)
    grid = patch_grid(layer, per)
    if grid is None:
        return pd.DataFrame(columns=columns)
    first, gh, gw = grid
    tops = top_positions(p, top).numpy()  # (m, top)
    chosen = np.flatnonzero(p.fire_counts > 0) if latents is None else np.asarray(list(latents), dtype=int)
    wanted: dict[str, list[tuple[int, int]]] = {}
    for j in chosen:
        for rank, pos in enumerate(tops[j]):
            if pos >= 0:
                wanted.setdefault(p.ids[pos], []).append((int(j), rank))
    if not wanted:
        return pd.DataFrame(columns=columns)
    subset = source.subset(source.items["id"].astype(str).isin(wanted).to_numpy())
    parts = []
    batches = subset.batches(model, image_batch)
    for batch in (progress(batches, desc="SAE patch maps") if progress else batches):
        with torch.no_grad():
            _, cache = run_with_cache(model, batch.pixels, layer, stop_at=True)
            codes = sae.encode(rows_of(cache[layer.path], layer, "all").float().to(sae.mean.device))
        codes = codes.view(len(batch.ids), per, -1)[:, first:first + gh * gw].cpu()  # (B, patches, m)
        for b, image_id in enumerate(batch.ids):
            pairs = wanted.get(str(image_id), [])
            if not pairs:
                continue
            lat = torch.tensor([j for j, _ in pairs])
            vals = codes[b][:, lat]  # (patches, n)
            t, i = vals.nonzero(as_tuple=True)
            ranks = np.array([r for _, r in pairs])
            parts.append(pd.DataFrame({"latent": lat[i].numpy(), "rank": ranks[i.numpy()], "id": str(image_id),
                                       "row": (t // gw).numpy(), "col": (t % gw).numpy(),
                                       "activation": vals[t, i].numpy().astype(float)}))
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True).sort_values(["latent", "rank", "row", "col"]).reset_index(drop=True)


def patch_overlays(model, source, maps: pd.DataFrame, latents: Sequence[int], grid: tuple[int, int]
                   ) -> dict[int, list]:
    """latent -> its top images (rank order) with its patch map (:func:`patch_maps`) laid over each,
    upscaled to the image (nearest) and coloured by :func:`clipaudit.probes.attribution.overlay`."""
    from clipaudit.probes.attribution import overlay

    gh, gw = grid
    part = maps[maps["latent"].isin(list(latents))]
    ids = list(dict.fromkeys(part["id"].astype(str)))
    if not ids:
        return {}
    subset = source.subset(source.items["id"].astype(str).isin(ids).to_numpy())
    pixels = {}
    for batch in subset.batches(model, 64):
        for i, image_id in enumerate(batch.ids):
            pixels[str(image_id)] = batch.pixels[i].cpu()
    out: dict[int, list] = {}
    for j in latents:
        rows = part[part["latent"] == j]
        images = []
        for _, g in rows.groupby("rank", sort=True):
            image_id = str(g["id"].iloc[0])
            if image_id not in pixels:
                continue
            heat = torch.zeros(gh, gw)
            r, c = (torch.tensor(np.array(g[k], dtype=np.int64)) for k in ("row", "col"))
            heat[r, c] = torch.tensor(np.array(g["activation"], dtype=np.float32))
            px = pixels[image_id]
            up = torch.nn.functional.interpolate(heat[None, None], size=tuple(px.shape[-2:]), mode="nearest")
            images += overlay(px[None], up, percentile=100.0)  # pixels are [0, 1] RGB
        if images:
            out[int(j)] = images
    return out


__all__ = ["SAEPass", "image_codes", "latent_labels", "latent_profile", "latent_table", "measure", "patch_grid",
           "patch_maps", "patch_overlays", "top_positions"]
