"""The ``neurons`` audit: scan -> labels -> multimodality -> feature vis -> attribution -> ablation.

Why one function over the steps: the CLI and the notebooks get the same result, each stage's
table is written to the run folder as soon as it is finished (Ctrl-C keeps it), and every
input is checked before the first image is scanned, so a typo costs nothing.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch
from PIL import Image

from clipaudit import contract
from clipaudit.audits import Audit, Headline, PairedMetric, column
from clipaudit.data import ImageSource
from clipaudit.distributed import distributed_context
from clipaudit.errors import ClipauditError
from clipaudit.model import in_eval_mode
from clipaudit.hooks import TOKEN_REDUCTIONS, Layer, resolve_layer
from clipaudit.result import Result
from clipaudit.probes.ablation import ABLATIONS, ablation_check
from clipaudit.probes.attribution import attribute, overlay, strip
from clipaudit.probes.featvis import FeatVisConfig, render
from clipaudit.probes.labels import LabelConfig, embed_concepts, label_accuracy, label_scan, read_concepts
from clipaudit.probes.multimodal import (MultimodalConfig, PictureFn, concept_responses, drawing_responses,
                                         multimodality_table,
                                         rank_multimodal, source_pictures)
from clipaudit.probes.scan import ScanResult, scan

SECTION = "neurons"


MIN_JUDGE_N = 20
"""One sample-size rule for the neurons audit: a rate over fewer cases than this (label accuracy
over class-dominated neurons), or a scan of fewer probe images than this (or than ``k``), is
reported with a warning that n is too small to judge, never as a bare figure."""


def too_few_note(n: int) -> str:
    """``""`` when ``n`` >= :data:`MIN_JUDGE_N`, else ``", n too small to judge (< 20)"``-style text."""
    return "" if n >= MIN_JUDGE_N else f", n too small to judge (< {MIN_JUDGE_N})"


def probe_set_warning(n_images: int, k: int) -> str | None:
    """The warning for a probe set too small for labels and multimodal selection, or None."""
    need = max(MIN_JUDGE_N, k)
    if n_images >= need:
        return None
    return (f"only {n_images} probe image(s), fewer than {need} (the --k {k} top images per neuron and "
            f"{MIN_JUDGE_N} to judge): SoftWPMI labels, and the multimodal neurons checked at them, rest on "
            f"too few images to judge; scan more images (--n-images or a larger --images source)")


def unique_neurons(ids: list[int]) -> tuple[list[int], list[int]]:
    """(ids in first-seen order without repeats, the ids that were repeated)."""
    seen = list(dict.fromkeys(int(i) for i in ids))
    repeated = sorted({int(i) for i in ids if list(ids).count(i) > 1})
    return seen, repeated


@dataclass(frozen=True)
class NeuronsConfig:
    """Every knob of the audit; each field is one ``clipaudit neurons`` flag.

    Attributes:
        layer: ``--layer`` alias or dotted path.
        neurons: ``--neurons`` explicit neuron ids (else the top multimodal ones); repeats are
            rendered once.
        top: ``--top`` neurons selected by multimodality for rendering.
        concepts: ``--concepts`` concept file (default: the shipped set).
        steps: ``--steps`` feature-visualisation steps.
        batch: ``--batch`` images per forward in the scan.
        k: ``--k`` top images kept per neuron.
        tokens: ``--tokens`` token reduction on ViT layers.
        per_neuron: ``--per-neuron`` feature-vis images per neuron (diversity when > 1).
        diversity: ``--diversity`` weight of the diversity term.
        attribution: ``--no-attribution`` turns it off.
        attribution_images: ``--attribution-images`` top images attributed per neuron.
        ablate: ``--ablate`` zero | mean | None.
        n_words: ``--n-words`` word renders per concept (multimodality).
        n_pictures: ``--n-pictures`` pictures per concept (multimodality, ablation).
        seed: ``--seed``.
        profile_n: ``--profile-n`` images for examples per activation quantile and histograms (0: off).
        profile_bins: ``--profile-bins`` histogram bins.
        text_words: ``--text-words`` concept words for text feature visualisation (0: off).
    """

    layer: str = "penultimate"
    neurons: list[int] | None = None
    top: int = 16
    concepts: str | None = None
    steps: int = 512
    batch: int = 64
    k: int = 50
    tokens: str = "mean"
    per_neuron: int = 1
    diversity: float = 0.0
    attribution: bool = True
    attribution_images: int = 4
    ablate: str | None = None
    n_words: int = 16
    n_pictures: int = 16
    seed: int = 0
    label: LabelConfig = field(default_factory=LabelConfig)
    profile_n: int = 256
    profile_bins: int = 20
    text_words: int = 300

    def validate(self) -> None:
        """Raise :class:`ClipauditError` on any bad value, before work starts."""
        if self.steps < 1:
            raise ClipauditError(f"--steps must be >= 1 (feature-visualisation optimiser steps), got {self.steps}")
        if self.batch < 1:
            raise ClipauditError(f"--batch must be >= 1, got {self.batch}")
        if self.k < 1:
            raise ClipauditError(f"--k must be >= 1 top images per neuron, got {self.k}")
        if self.top < 1:
            raise ClipauditError(f"--top must be >= 1, got {self.top}")
        if self.tokens not in TOKEN_REDUCTIONS:
            raise ClipauditError(f"--tokens {self.tokens!r} is not valid; use {', '.join(TOKEN_REDUCTIONS)}")
        if self.ablate is not None and self.ablate not in ABLATIONS:
            raise ClipauditError(f"--ablate {self.ablate!r} is not valid; use {', '.join(ABLATIONS)}")
        if self.per_neuron < 1:
            raise ClipauditError(f"--per-neuron must be >= 1, got {self.per_neuron}")
        if self.n_words < 2 or self.n_pictures < 2:
            raise ClipauditError("--n-words and --n-pictures must be >= 2")
        if self.profile_n < 0 or self.text_words < 0:
            raise ClipauditError("--profile-n and --text-words must be >= 0 (0 turns them off)")
        if self.profile_bins < 1:
            raise ClipauditError(f"--profile-bins must be >= 1, got {self.profile_bins}")


def picture_source(model, source: ImageSource) -> tuple[list[str], PictureFn] | None:
    """Concepts we can show as pictures, and how: a source that draws its own (the toy world:
    ``source.pictures`` over ``source.classnames``), else a labelled folder/CSV's own images,
    else the model's world when it has one (the toy's object classes); otherwise None and
    multimodality cannot be measured."""
    if source.pictures is not None and source.classnames:
        return list(source.classnames), source.pictures
    if "label" in source.items:
        labels = sorted({str(v) for v in source.items["label"] if str(v)})
        if len(labels) >= 2:
            return labels, source_pictures(source)
    if getattr(model, "pictures", None) is not None and getattr(model, "classnames", None):
        return list(model.classnames), model.pictures
    return None


def load_positions(model, source: ImageSource, positions: list[int]) -> dict[int, torch.Tensor]:
    """Pixels (3, S, S) of the source images at ``positions`` (skipped ones are absent)."""
    if not positions:
        return {}
    mask = np.zeros(len(source), dtype=bool)
    mask[positions] = True
    sub = ImageSource(source.items[mask], source.loader, source.description, [], source.workers)
    where = {str(i): p for p, i in enumerate(source.ids)}
    out = {}
    for batch in sub.batches(model, 64):
        for i, px in zip(batch.ids, batch.pixels):
            out[where[i]] = px.cpu()
    return out


def _to_pil(px: torch.Tensor) -> Image.Image:
    return Image.fromarray((px.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8))


@in_eval_mode
def audit(model, source: ImageSource, config: NeuronsConfig = NeuronsConfig(), run=None,
          progress: Callable | None = None, log: Callable[[str], None] | None = None) -> Result:
    """Run the neurons audit on ``model`` over the probe images ``source``.

    Returns:
        A :class:`~clipaudit.result.Result` with tables ``neurons``, ``neuron_top_images``,
        ``neuron_multimodality`` (and ``ablation`` with ``config.ablate``), images
        ``featvis_<n>``, ``top_<n>``, ``attr_<n>``, and the ``neurons`` summary section.

    Under ``torchrun`` (a default process group is initialised) the scan runs data-parallel:
    each rank scans its shard and the states merge exactly; the later stages are small and
    run on every rank alike (pass ``run`` on rank 0 only).

    Raises:
        ClipauditError: unknown layer, neuron out of range, bad concept file, bad settings.
    """
    say = log or (lambda _msg: None)
    config.validate()
    layer: Layer = resolve_layer(model, config.layer)
    explicit = layer.check_neurons(config.neurons) if config.neurons else None
    if explicit:
        explicit, repeated = unique_neurons(explicit)
        if repeated:
            say(f"note: --neurons repeats {', '.join(map(str, repeated))}; each neuron is rendered once")
    concepts = read_concepts(config.concepts)
    result = Result(SECTION)

    def save_table(name: str, df: pd.DataFrame) -> None:
        result.tables[name] = df
        if run is not None:
            run.write_table(name, df)

    def save_image(name: str, img) -> str:
        result.images[name] = img
        if run is not None:
            run.write_png(name, img)
        return f"images/{name}.png"

    def save_summary(values: dict) -> None:
        result.summary.update(values)
        if run is not None:
            run.update_summary(values, section=SECTION)

    # 1. scan
    say(f"scanning {len(source)} images at {layer.path} ({layer.layout}, {layer.n_neurons} neurons)")
    rank, world = distributed_context()
    sr: ScanResult = scan(model, source, layer, k=config.k, batch_size=config.batch, tokens=config.tokens,
                          progress=progress, rank=rank, world_size=world)
    table = sr.stats_table()
    save_table("neurons", table)
    save_table("neuron_top_images", sr.top_images_table(source.items, range(layer.n_neurons)))
    directions = sr.text_directions()
    if directions is not None:
        save_table("neuron_text_directions", directions)
    if sr.skipped and run is not None:
        run.write_table("skipped", pd.DataFrame(sr.skipped, columns=["id", "reason"]))
    save_summary({"layer": layer.path, "layout": layer.layout, "n_neurons": layer.n_neurons,
                  "n_images": sr.state.count, "n_skipped": len(sr.skipped)})
    warning = probe_set_warning(int(sr.state.count), config.k)
    if warning:
        say(f"warning: {warning}")
        save_summary({"sample_size_warning": warning})

    # 2. labels
    say(f"labelling with SoftWPMI over {len(concepts)} concepts")
    emb = embed_concepts(model, concepts)
    labels, _ = label_scan(sr, concepts, emb, config.label)
    table = table.merge(labels, on="neuron", how="left")
    save_table("neurons", table)
    acc, n_dom = label_accuracy(labels, sr, source.items, k=config.k) if "label" in source.items \
        else (float("nan"), 0)
    save_summary({"n_concepts": len(concepts), "label_accuracy": acc, "n_class_dominated": n_dom})

    # 2b. the whole activation range (a fixed sample) and the words that excite each neuron
    if config.profile_n:
        from clipaudit.probes.profile import histograms, quantile_examples, sample_activations
        from clipaudit.zeroshot import iterate

        say(f"activation profile on the source's first {min(config.profile_n, len(source))} images")
        acts, ids = sample_activations(model, layer, iterate(source, model, config.batch, None),
                                       config.profile_n, config.tokens, config.batch)
        save_table("neuron_quantile_images", quantile_examples(acts, ids))
        save_table("neuron_histogram", histograms(acts, config.profile_bins))
    if config.text_words:
        from clipaudit.probes.profile import text_features

        words = list(concepts)[:config.text_words]
        say(f"text feature visualisation: {len(words)} words written on plain backgrounds")
        save_table("neuron_text_features", text_features(model, layer, words, seed=config.seed, tokens=config.tokens,
                                                         batch_size=config.batch))

    # 3. multimodality
    pics = picture_source(model, source)
    mm = None
    if pics is not None:
        classes, picture_fn = pics
        say(f"multimodality over {len(classes)} concepts (pictures vs rendered words)")
        mcfg = MultimodalConfig(n_pictures=config.n_pictures, n_words=config.n_words)
        img_r, word_r, kept = concept_responses(model, layer, classes, picture_fn, mcfg, seed=config.seed,
                                                tokens=config.tokens, batch_size=config.batch)
        draw_r = None
        drawable = set(getattr(model, "classnames", None) or ())
        if getattr(model, "drawings", None) is not None and not set(kept) <= drawable:
            say(f"drawing facet skipped: {model.name} cannot draw {', '.join(sorted(set(kept) - drawable)[:5])}")
        elif getattr(model, "drawings", None) is not None:
            say("drawing facet: outline drawings of each concept")
            draw_r = drawing_responses(model, layer, kept, model.drawings, mcfg, seed=config.seed,
                                       tokens=config.tokens, batch_size=config.batch)
        mm = multimodality_table(img_r, word_r, kept, table["label"].tolist(), mcfg, drawing_resp=draw_r)
        table = table.merge(mm, on="neuron", how="left")
        table["multimodal_concept"] = np.where(table["is_multimodal"].astype(bool), table["concept"], "")
        save_table("neurons", table)
        per_concept = mm[mm["is_multimodal"]].groupby("concept").size()
        save_summary({"n_multimodal": int(mm["is_multimodal"].sum()),
                      "multimodal_concepts": {str(k): int(v) for k, v in per_concept.items()},
                      "n_checkable_concepts": len(kept),
                      **({"n_multimodal_drawing": int(mm["is_multimodal_drawing"].sum())} if draw_r is not None else {})})
    else:
        for col in ("concept", "image_response", "word_response", "multimodal_score", "is_multimodal"):
            table[col] = np.nan if col != "is_multimodal" else False
        table["multimodal_concept"] = ""
        save_summary({"n_multimodal": None})

    # 4. selection + feature vis
    if explicit:
        selected = explicit
    elif mm is not None:
        selected = rank_multimodal(mm, config.top)
    else:
        selected = table.sort_values("std", ascending=False)["neuron"].head(config.top).astype(int).tolist()
    say(f"rendering {len(selected)} neurons ({config.steps} steps, one batch)")
    imgs, fv_act = render(model, layer, selected, FeatVisConfig(steps=config.steps, per_neuron=config.per_neuron,
                                                                 diversity=config.diversity, tokens=config.tokens),
                          seed=config.seed)
    table["featvis"] = ""
    table["featvis_activation"] = np.nan
    table["top_images"] = ""
    table["attribution"] = ""
    per = config.per_neuron
    for j, n in enumerate(selected):
        group = [_to_pil(imgs[j * per + i]) for i in range(per)]
        table.loc[table["neuron"] == n, "featvis"] = save_image(f"featvis_{n}", strip(group, scale=2))
        table.loc[table["neuron"] == n, "featvis_activation"] = float(fv_act[j * per:(j + 1) * per].mean())
    save_table("neurons", table)
    save_summary({"top": selected, "n_rendered": len(selected), "steps": config.steps})

    # 5. top images + attribution
    show = 8
    positions = sorted({p for n in selected for p in sr.top_positions(n, show)})
    pix = load_positions(model, source, positions)
    for n in selected:
        tops = [pix[p] for p in sr.top_positions(n, show) if p in pix]
        if not tops:
            continue
        table.loc[table["neuron"] == n, "top_images"] = save_image(f"top_{n}", strip([_to_pil(t) for t in tops]))
        if config.attribution:
            batch = torch.stack(tops[: config.attribution_images])
            attr = attribute(model, layer, n, batch, tokens=config.tokens)
            table.loc[table["neuron"] == n, "attribution"] = save_image(f"attr_{n}", strip(overlay(batch, attr)))
    save_table("neurons", table)

    # 6. causal check
    if config.ablate and mm is not None:
        classes, picture_fn = pics  # type: ignore[misc]
        flagged = mm[mm["is_multimodal"] & mm["neuron"].isin(selected)]
        if flagged.empty:
            flagged = mm[mm["neuron"].isin(selected)]
        groups = {c: g.sort_values("multimodal_score", ascending=False)["neuron"].astype(int).tolist()
                  for c, g in flagged.groupby("concept")}
        say(f"ablating ({config.ablate}) the multimodal neurons of {len(groups)} concepts")
        abl = ablation_check(model, layer, groups, classes, picture_fn, n_eval=config.n_pictures,
                             mode=config.ablate, means=sr.state.mean.float(), seed=config.seed)
        save_table("ablation", abl)
        acc_rows = abl[abl["measure"] == "accuracy"]
        save_summary({"ablation": config.ablate,
                      "ablation_concept_delta": float(acc_rows["delta"].mean()) if len(acc_rows) else None,
                      "ablation_other_delta": float(acc_rows["other_delta"].mean()) if len(acc_rows) else None})
    result.tables["neurons"] = table
    return result


def config_dict(config: NeuronsConfig) -> dict:
    """JSON-ready config for the run manifest."""
    return asdict(config)



# ------------------------------------------------------------------ registry entry (clipaudit.audits)

def run(model, source: ImageSource, config: NeuronsConfig, sink) -> Result:
    """The registry's call shape: :func:`audit` writing through ``sink`` (a ResultSink)."""
    return audit(model, source, config, run=sink, progress=sink.progress, log=sink.log)


def plan(args) -> list[str]:
    """This audit's command line inside ``clipaudit audit`` (``args.quick``: small sizes)."""
    quick = args.quick
    return ["neurons", "--layer", "penultimate", "--top", "8" if quick else "16",
            "--steps", "48" if quick else "512", "--n-images", "256" if quick else "2048",
            "--attribution-images", "2" if quick else "4", "--n-words", "8" if quick else "16",
            "--n-pictures", "8" if quick else "16", "--k", "20" if quick else "50"]


AUDIT = Audit(
    name=SECTION, config=NeuronsConfig, run=run, contract=contract.NEURONS, page="clipaudit.dashboard.page_neurons", cli="clipaudit.probes.cli",
    plan=plan, description="neuron scan, SoftWPMI labels, multimodality, feature vis, attribution",
    headlines=(Headline("n_multimodal", "multimodal neurons"),),
    limitations={"L-typographic": ("n_multimodal",)},
    input_flags="--layer, --images, --n-images and --seed", same_inputs=("layer", "n_images"),
    paired=(PairedMetric(SECTION, "neurons", "multimodal_share", column("is_multimodal")),
            PairedMetric(SECTION, "neurons", "mean_label_score", column("label_score")),
            PairedMetric(SECTION, "neurons", "mean_multimodal_score", column("multimodal_score"))),
)
