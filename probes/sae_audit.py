"""``clipaudit sae``: train (or load) a sparse autoencoder on one layer, measure its quality and
score its latents against the toy world's planted factors.

Stages: collect + train (:mod:`clipaudit.probes.sae`; skipped with ``load``), one measuring pass
(:mod:`clipaudit.probes.sae_metrics`: FVU, L0, dead fraction, clean vs spliced zero-shot
accuracy, per-image codes), the latent table (the explorer's data), and, when the source carries
the toy world's metadata, the planted-factor table (:mod:`clipaudit.probes.planted`): SAE
latents vs the layer's neurons vs a linear-probe ceiling, per factor with CIs.

The weights go to ``sae/weights.safetensors`` and ``sae/config.json`` in the run folder (through
``ResultSink.file``, so they are also in the returned Result's ``files``), and ``--load RUN``
reuses them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clipaudit.audits import Audit, Headline
from clipaudit.distributed import distributed_context
from clipaudit.contract import AuditContract, SummaryKey, TableSpec, _c
from clipaudit.errors import ClipauditError
from clipaudit.hooks import resolve_layer
from clipaudit.result import Result

from clipaudit.probes import planted
from clipaudit.probes.sae import (CONFIG, WEIGHTS, SAEConfig, activation_rows, check_layer_tokens, load_sae_run,
                                  rows_per_image, sae_bytes, sae_meta, train_sae)
from clipaudit.probes.sae_metrics import (latent_labels, latent_profile, latent_table, measure, patch_grid, patch_maps,
                                          patch_overlays)

NAME = "sae"
MIN_IMAGES = 32

_RECALL = "planted_factor_recall neuron_factor_recall linear_probe_factor_recall".split()

CONTRACT = AuditContract(
    NAME, doc="A sparse autoencoder on one layer: quality, latents, and recovery of the toy world's planted factors.",
    tables=(
        TableSpec("sae_training", _c("step:int mse:float aux:float l0:float dead:int"),
                  "training curve: normalised MSE, AuxK loss, active latents per row, dead latents (not with --load)"),
        TableSpec("sae_latents", _c("latent:int fire_rate:float mean_activation:float max_activation:float "
                                    "q10:float q50:float q90:float top_images:str label:str? label_score:float? "
                                    "labels:str?"),
                  "one row per latent: share of images it fires on, activations (quantiles over the images it "
                  "fires on), top image ids, SoftWPMI labels", key=("latent",)),
        TableSpec("sae_latent_quantiles", _c("latent:int quantile:float value:float id:str activation:float"),
                  "per latent and quantile of its nonzero activations: the image closest to it", key=("latent", "quantile")),
        TableSpec("sae_latent_histogram", _c("latent:int bin_low:float bin_high:float count:int"),
                  "per latent: histogram of its nonzero activations over the images"),
        TableSpec("sae_latent_patches", _c("latent:int rank:int id:str row:int col:int activation:float"),
                  "--tokens all on a ViT token or conv-map layer: each firing latent's code on every patch "
                  "(position) of its top images, nonzero entries only; rank orders the images"),
        TableSpec("sae_factors", _c("factor:str group:str domain:str n_pos:int n_neg:int latent:int "
                                    "latent_auroc:float latent_ci_low:float latent_ci_high:float neuron:int "
                                    "neuron_auroc:float neuron_ci_low:float neuron_ci_high:float probe_auroc:float "
                                    "probe_ci_low:float probe_ci_high:float"),
                  "per planted factor (toy sources): best latent / neuron chosen on one half, held-out AUROC with a "
                  "bootstrap CI; the linear probe on the whole layer as the ceiling", key=("factor",)),
    ),
    images=("sae_patches_<latent>",),
    files=(WEIGHTS, CONFIG),
    summary=(
        SummaryKey("layer", "str", "layer path", True),
        SummaryKey("n_images", "int", "images measured", True),
        SummaryKey("latents", "int", "dictionary size", True),
        SummaryKey("k", "int", "active latents per row"),
        SummaryKey("variant", "str", "topk | batchtopk | matryoshka"),
        SummaryKey("tokens", "str", "rows per image: mean | cls | all"),
        SummaryKey("loaded_from", "str", "run folder the SAE was loaded from (--load)"),
        SummaryKey("loaded_weights_sha256", "str", "SHA-256 of the loaded SAE's weights file (--load)"),
        SummaryKey("measured_on_training_images", "bool", "the figures are measured on the SAE's own training "
                   "images (in-sample; None: unknown)"),
        SummaryKey("fvu", "float", "fraction of variance unexplained", True),
        SummaryKey("l0", "float", "mean active latents per row", True),
        SummaryKey("dead_fraction", "float", "share of latents never active on the source", True),
        SummaryKey("clean_accuracy", "float", "zero-shot accuracy of the model as it is"),
        SummaryKey("spliced_accuracy", "float", "zero-shot accuracy with the layer replaced by the reconstruction"),
        SummaryKey("n_accuracy_images", "int", "images with a label among the zero-shot classes"),
        SummaryKey("n_factors", "int", "planted factors scored"),
        SummaryKey("recall_threshold", "float", "held-out AUROC at which a factor counts as recovered"),
        *(SummaryKey(k, "float", f"share of factors recovered ({k.split('_')[0]})") for k in _RECALL),
        *(SummaryKey(f"{k}_ci", "list", "Wilson 95% CI") for k in _RECALL),
    ),
)


@dataclass(frozen=True)
class SAEAuditConfig:
    """The science of one ``clipaudit sae`` run; each field is the CLI flag of the same name.

    Args:
        layer: alias or path (``penultimate``, ``block:N``...).
        sae: the SAE and its training (:class:`~clipaudit.probes.sae.SAEConfig`).
        load: a run folder whose SAE is reused instead of training (None: train).
        classes: zero-shot classes for the accuracies (empty: the toy's object classes when the
            source is the toy world, else the source's labels).
        recall_threshold: held-out AUROC at which a factor counts as recovered.
        min_positives: factors with fewer positives (or negatives) in their domain are not scored.
        labels: SoftWPMI concept labels per latent (CLIP-Dissect, the shipped concept set).
        bins: histogram bins per latent.
        patch_top: top images per latent whose patch maps are kept (``tokens=all`` only).
        maps: latents drawn as patch-map PNGs (the best latent of each planted factor first).
    """

    layer: str = "penultimate"
    sae: SAEConfig = SAEConfig()
    load: str | None = None
    classes: tuple[str, ...] = ()
    recall_threshold: float = 0.9
    min_positives: int = 20
    labels: bool = True
    bins: int = 20
    patch_top: int = 4
    maps: int = 8


def _classes(source, config: SAEAuditConfig) -> list[str]:
    if config.classes:
        return list(config.classes)
    items = source.items
    if "kind" in items.columns:
        from clipaudit.toy.world import OBJECT_CLASSES

        return list(OBJECT_CLASSES)
    if "label" in items.columns:
        return sorted({str(v) for v in items["label"].fillna("") if str(v)})
    return []


def check_inputs(model, source, config: SAEAuditConfig):
    """Validate before any model work; returns the resolved layer."""
    if config.load is None:
        config.sae.validate()
    layer = resolve_layer(model, config.layer)
    check_layer_tokens(layer, config.sae.tokens)
    if len(source) < MIN_IMAGES:
        raise ClipauditError(f"{len(source)} images are too few to {'measure' if config.load else 'train'} an SAE "
                             f"on {layer.path}; pass at least {MIN_IMAGES} (--images toy:N or a larger folder)")
    for name, value, low in (("--bins", config.bins, 1), ("--patch-top", config.patch_top, 1), ("--maps", config.maps, 0)):
        if value < low:
            raise ClipauditError(f"{name} must be >= {low}, got {value}")
    if not 0.5 < config.recall_threshold <= 1:
        raise ClipauditError(f"--recall-threshold must be in (0.5, 1], got {config.recall_threshold}")
    return layer


def same_images(trained_on: dict | None, data: dict | None) -> bool | None:
    """Whether the measuring images are the SAE's training images (None: unknown). Toy scenes
    ``toy:N`` of one seed are the same scenes in the same order whatever N, so one seed and one
    image spec means the same images (or a prefix of them)."""
    if not trained_on or not data or "images" not in trained_on or "images" not in data:
        return None
    base = lambda spec: str(spec).split(":")[0] if str(spec).startswith("toy") else str(spec)
    return base(trained_on["images"]) == base(data["images"]) and trained_on.get("seed") == data.get("seed")


def run(model, source, config: SAEAuditConfig, sink, data: dict | None = None) -> Result:
    """Train or load the SAE, measure it, write its tables and summary (see module doc).

    Under torchrun (a ``torch.distributed`` group) collection, training and the measuring pass
    are data-parallel; every rank ends with the same SAE and pass, and the caller writes on rank 0.

    Args:
        data: how ``source`` was opened (the CLI's ``images``, ``n_images``, ``seed``): saved with
            a trained SAE as ``trained_on``, and compared with it when loading, so the summary
            says whether the figures are measured on the SAE's own training images.

    Raises:
        ClipauditError: bad SAE settings, too few images, an unknown layer, a ``load`` folder with
            no SAE or one from another model or layer.
    """
    layer = check_inputs(model, source, config)
    device = getattr(model, "device", "cpu")
    rank, world = distributed_context()  # torchrun: each rank collects its shard; training averages gradients
    if config.load is not None:
        sae, meta = load_sae_run(config.load, model=model, layer=layer, device=device)
        sink.log(f"loaded the SAE from {config.load}")
        in_sample = same_images(meta.get("trained_on"), data)
    else:
        cfg = config.sae
        sink.log(f"training a {cfg.variant} SAE ({cfg.latents} latents, k={cfg.k}) on {layer.path}, "
                 f"{len(source) * rows_per_image(layer, cfg.tokens)} rows per epoch")
        sae, log = train_sae(lambda: (r for r, _ in activation_rows(model, source, layer, cfg.tokens, cfg.image_batch,
                                                                    rank=rank, world_size=world)),
                             layer.n_neurons, cfg, device=device, progress=sink.progress)
        sink.file(WEIGHTS, sae_bytes(sae))
        meta = sae_meta(sae, model, layer) | ({"trained_on": dict(data)} if data else {})
        sink.file(CONFIG, json.dumps(meta, indent=2).encode())
        in_sample = True
        sink.table("sae_training", pd.DataFrame(log.steps, columns=["step", "mse", "aux", "l0", "dead"]))
    tokens = sae.config.tokens
    classes = _classes(source, config)
    p = measure(model, source, layer, sae, tokens, classes=classes, image_batch=sae.config.image_batch,
                progress=sink.progress, rank=rank, world_size=world)
    latents = latent_table(p)
    if config.labels:
        latents = latents.merge(latent_labels(model, p), on="latent", how="left")
    sink.table("sae_latents", latents)
    quantiles, histogram = latent_profile(p, config.bins)
    sink.table("sae_latent_quantiles", quantiles)
    sink.table("sae_latent_histogram", histogram)
    summary = {"layer": layer.path, "n_images": len(p.ids), "latents": sae.n_latents, "k": sae.config.k,
               "variant": sae.config.variant, "tokens": tokens, "fvu": p.fvu, "l0": p.l0,
               "dead_fraction": p.dead_fraction, "recall_threshold": config.recall_threshold}
    if config.load is not None:
        summary["loaded_from"] = str(config.load)
        summary["loaded_weights_sha256"] = meta["weights_sha256"]
    summary["measured_on_training_images"] = in_sample
    if p.clean_correct is not None and len(p.clean_correct):
        summary.update(clean_accuracy=float(p.clean_correct.mean()), spliced_accuracy=float(p.spliced_correct.mean()),
                       n_accuracy_images=int(len(p.clean_correct)))
    sink.summary(summary)
    best: list[int] = []
    if "kind" in source.items.columns:
        factors = planted.planted_factors(source.items.set_index(source.items["id"].astype(str)).loc[p.ids]
                                          .reset_index(drop=True), config.min_positives)
        if factors:
            table = factor_table(p, factors, sae.n_latents, config.sae.seed)
            sink.table("sae_factors", table)
            sink.summary(factor_summary(table, config.recall_threshold))
            best = [int(v) for v in table.sort_values("latent_auroc", ascending=False)["latent"]]
    named = {int(r.latent): str(r.label) for r in latents.itertuples()
             if isinstance(getattr(r, "label", None), str) and r.label}
    if "sae_factors" in sink.result.tables:  # a planted factor it recovers names a latent
        for r in sink.result.tables["sae_factors"].sort_values("latent_auroc").itertuples():
            if r.latent_auroc >= config.recall_threshold:
                named[int(r.latent)] = f"{r.factor} (AUROC {r.latent_auroc:.2f})"
    _patches(model, source, layer, sae, p, config, best, named, sink)
    return sink.result


def _patches(model, source, layer, sae, p, config: SAEAuditConfig, first: list[int], labels: dict[int, str],
             sink) -> None:
    """Patch maps of a ``tokens=all`` SAE: the table for every firing latent, PNGs for ``maps`` of
    them (the planted factors' best latents first, then by maximum activation), titled with the
    latent's id and label."""
    grid = patch_grid(layer, rows_per_image(layer, sae.config.tokens))
    if grid is None:
        return
    maps = patch_maps(model, source, layer, sae, p, config.patch_top, progress=sink.progress)
    sink.table("sae_latent_patches", maps)
    by_max = np.argsort(-p.codes.max(0).toarray().ravel(), kind="stable")
    chosen = [j for j in dict.fromkeys([*first, *by_max.tolist()]) if p.fire_counts[j] > 0][:config.maps]
    from clipaudit.probes.attribution import strip

    for j, images in patch_overlays(model, source, maps, chosen, grid[1:]).items():
        name = labels.get(j, "")
        sink.image(f"sae_patches_{j}", strip(images, title=f"latent {j}" + (f": {name}" if name else "")))


def factor_table(p, factors, n_latents: int, seed: int = 0) -> pd.DataFrame:
    """SAE latents, neurons and the linear probe scored on each factor (one row per factor)."""
    return pd.concat([planted.factor_frame(factors),
                      planted.score_units(planted.sparse_units(p.codes), factors, n_latents, seed, "latent"),
                      planted.score_units(planted.dense_units(p.neurons), factors, p.neurons.shape[1], seed, "neuron"),
                      planted.linear_probe_scores(p.neurons, factors, seed)], axis=1)


def factor_summary(table: pd.DataFrame, threshold: float) -> dict:
    out: dict = {"n_factors": int(len(table))}
    for key, col in zip(_RECALL, ("latent_auroc", "neuron_auroc", "probe_auroc")):
        value, lo, hi = planted.recall(table[col], threshold)
        out[key], out[f"{key}_ci"] = value, [lo, hi]
    return out


AUDIT = Audit(
    name=NAME, config=SAEAuditConfig, run=run, contract=CONTRACT, cli="clipaudit.probes.sae_cli", plan=None,
    page="clipaudit.dashboard.page_sae",
    description="sparse autoencoder on a layer: FVU, L0, spliced accuracy, planted-factor recall vs neurons",
    headlines=(Headline("fvu", "SAE fraction of variance unexplained"),
               Headline("planted_factor_recall", "planted factors recovered by one SAE latent",
                        "planted_factor_recall_ci")),
)

__all__ = ["AUDIT", "CONTRACT", "SAEAuditConfig", "check_inputs", "factor_summary", "factor_table", "run"]
