"""The ``heads`` audit: decompose the image embedding into layers, heads and tokens; score each head
for reading written words; ablate heads; label them with TextSpan; optionally select a
training-free typographic defence (a head mask every audit can load with ``--ablate-heads``).

The science lives in :mod:`clipaudit.probes.decompose`, :mod:`clipaudit.probes.head_ablation`,
:mod:`clipaudit.probes.heads` and :mod:`clipaudit.probes.textspan`; this module runs them in order
and writes every table and summary value through the sink.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from clipaudit.attacks.typographic import TextStyle, check_style
from clipaudit.audits import Audit, Headline
from clipaudit.contract import AuditContract, SummaryKey, TableSpec, _c
from clipaudit.data import ImageSource
from clipaudit.errors import ClipauditError
from clipaudit.probes.decompose import decompose, n_heads
from clipaudit.probes.head_ablation import HeadMask, all_heads, head_means, write_mask
from clipaudit.probes.heads import (defend_typographic, direct_attribution, evaluate, head_sweep, layer_curve,
                                    random_sets_test, reading_attribution, reading_scores, typo_set)
from clipaudit.probes.textspan import default_concepts, text_span
from clipaudit.result import Result
from clipaudit.stats import spearman

NAME = "heads"
DEFENCES = ("typographic",)
MASK_FILE = "head_mask.json"

_RATE = "clean_accuracy:float clean_ci_low:float clean_ci_high:float attack_success_rate:float ci_low:float " \
        "ci_high:float n:int attacked_accuracy:float attacked_ci_low:float attacked_ci_high:float " \
        "reading_effect_drop:float"

CONTRACT = AuditContract(
    NAME, doc="Residual decomposition into layers, heads and tokens (Gandelsman et al. 2024); reading heads "
              "and a typographic head-ablation defence (Hufe et al. 2026).",
    tables=(
        TableSpec("heads_attribution", _c("component:str layer:int head:int class:str contribution:float "
                                          "contribution_std:float"),
                  "mean direct contribution of each component to each zero-shot class logit", key=("component", "class")),
        TableSpec("heads_layer_curve", _c("k:int layers_kept:str accuracy:float ci_low:float ci_high:float n:int"),
                  "accuracy when all but the last k layers' direct effects are mean-ablated", key=("k",)),
        TableSpec("heads_scores", _c("layer:int head:int typographic_score:float word_token_share:float "
                                     "direct_effect:float"),
                  "per head: share of the query token's attention on the word's tokens, and its direct effect "
                  "on logit(target) - logit(true) on attacked images", key=("layer", "head")),
        TableSpec("heads_ablation", _c("layer:int head:int " + _RATE),
                  "each head ablated alone: clean accuracy, attack success, attacked accuracy (95% Wilson CIs)",
                  key=("layer", "head")),
        TableSpec("heads_textspan", _c("layer:int head:int rank:int text:str variance_explained:float "
                                       "cumulative:float"),
                  "TextSpan: per head, the concept texts that explain most of its output variance", key=("layer", "head", "rank")),
        TableSpec("heads_defence", _c("step:int layer:int head:int typographic_score:float kept:bool "
                                      "clean_accuracy:float attack_success_rate:float attacked_accuracy:float"),
                  "the greedy defence's steps on the selection images (only with --defend)", key=("step",)),
        TableSpec("heads_random_sets", _c("heads:str attacked_accuracy:float attack_success_rate:float"),
                  "random head sets of the defence's size, on the report images (only with --defend)", key=("heads",)),
        TableSpec("heads_token_maps", _c("layer:int head:int image:int row:int col:int contribution:float"),
                  "spatial maps of the top reading heads (--maps): direct contribution to logit(target) - "
                  "logit(true) per image token (row, col of the patch / position grid) on the first attacked images"),
    ),
    images=("head_map_<layer>_<head>",),
    summary=(
        SummaryKey("decomposition_max_rel_error", "float", "largest relative error of the summed parts vs "
                   "encode_images over all images", True),
        SummaryKey("n_images", "int", "images", True),
        SummaryKey("n_layers", "int", "attention layers", True),
        SummaryKey("n_heads", "int", "heads per attention layer", True),
        SummaryKey("target", "str", "the written word / target class", True),
        SummaryKey("clean_accuracy", "float", "zero-shot accuracy, unablated (report images)", True),
        SummaryKey("attack_success_rate", "float", "typographic success, unablated (report images)", True),
        SummaryKey("attack_success_ci", "list", "its 95% Wilson CI"),
        SummaryKey("attacked_accuracy", "float", "accuracy on attacked images, unablated (report images)", True),
        SummaryKey("faithfulness_spearman", "float", "Spearman between heads' direct effects and single-head "
                   "ablation effects on the reading effect (over the heads swept)"),
        SummaryKey("n_swept_heads", "int", "heads in the single-head ablation sweep (all, or --sweep-layers')"),
        SummaryKey("top_reading_heads", "list", "heads by typographic score, best first (layer.head)"),
        SummaryKey("defended_clean_accuracy", "float", "with the defence's heads ablated (report images)"),
        SummaryKey("defended_attack_success_rate", "float", "with the defence's heads ablated (report images)"),
        SummaryKey("defended_attack_success_ci", "list", "its 95% Wilson CI"),
        SummaryKey("defended_attacked_accuracy", "float", "with the defence's heads ablated (report images)"),
        SummaryKey("heads_ablated", "list", "the defence's heads (layer.head); [] without --defend"),
        SummaryKey("random_sets_p", "float", "permutation p: random head sets of the same size reach the "
                   "defence's attacked accuracy"),
        SummaryKey("mask_file", "str", "the head mask written for --ablate-heads (run-folder relative)"),
        SummaryKey("ablation_mode", "str", "mean or zero"),
        SummaryKey("n_select", "int", "images the defence selected on"),
        SummaryKey("n_report", "int", "held-out images the defended figures come from"),
    ),
)


@dataclass(frozen=True)
class HeadsConfig:
    """What ``clipaudit heads`` measures; each field is one flag.

    Attributes:
        target: the word written on the images (a class; added to the classes when missing).
        classes: class names (empty: the toy classes / class folders).
        concepts: TextSpan concept texts (empty: :func:`~clipaudit.probes.textspan.default_concepts`).
        position, size, style: how the word is drawn (:class:`~clipaudit.attacks.typographic.TextStyle`).
        mode: ``mean`` or ``zero`` ablation.
        defend: None or ``typographic``.
        budget: largest clean-accuracy drop the defence may cost, in [0, 1].
        select_fraction: share of images the defence selects on; the rest report its figures.
        random_sets: random head sets for the permutation test.
        textspan_texts, textspan_rank: TextSpan picks per head and principal rank (0: full).
        maps: top reading heads whose spatial maps (token contributions) are saved (0: none).
        sweep_layers: the single-head ablation sweep covers the last N attention layers (0: all);
            for large models, where the sweep costs one forward per head.
        batch_size: images per forward.
        seed: rendering and random head sets.
    """

    target: str = "pizza"
    classes: tuple[str, ...] = ()
    concepts: tuple[str, ...] = ()
    position: str = "random"
    size: int | None = None
    style: str = "note"
    mode: str = "mean"
    defend: str | None = None
    budget: float = 0.01
    select_fraction: float = 0.5
    random_sets: int = 30
    textspan_texts: int = 5
    textspan_rank: int = 0
    maps: int = 4
    sweep_layers: int = 0
    batch_size: int = 64
    seed: int = 0

    def validate(self) -> "HeadsConfig":
        if not 0.0 <= float(self.budget) <= 1.0:
            raise ClipauditError(f"--budget must be a clean-accuracy drop in [0, 1], got {self.budget}")
        if self.defend is not None and self.defend not in DEFENCES:
            raise ClipauditError(f"unknown defence {self.defend!r}; valid: {', '.join(DEFENCES)}")
        if self.mode not in ("mean", "zero"):
            raise ClipauditError(f"unknown ablation mode {self.mode!r}; valid: mean, zero")
        if not 0.0 < float(self.select_fraction) < 1.0:
            raise ClipauditError(f"--select-fraction must be in (0, 1), got {self.select_fraction}")
        if not str(self.target).strip():
            raise ClipauditError("--target is empty; pass a class name such as pizza")
        if self.batch_size < 1:
            raise ClipauditError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.maps < 0:
            raise ClipauditError(f"--maps must be >= 0 heads, got {self.maps}")
        if self.sweep_layers < 0:
            raise ClipauditError(f"--sweep-layers must be >= 0 (0: all layers), got {self.sweep_layers}")
        check_style(self.text_style())
        return self

    def text_style(self) -> TextStyle:
        return TextStyle(style=self.style, size=self.size, position=self.position)


def check_sweep_layers(model, sweep_layers: int) -> None:
    """Refuse ``--sweep-layers`` beyond the model's attention layers, naming how many it has."""
    layers = len({l for l, _ in all_heads(model)})
    if sweep_layers > layers:
        raise ClipauditError(f"--sweep-layers {sweep_layers}: {model.name} has {layers} attention layer(s); "
                             f"pass 1..{layers}, or 0 for all")


def _load(model, source: ImageSource, batch_size: int, progress) -> tuple[torch.Tensor, list[str]]:
    pixels, labels = [], []
    n_batches = (len(source) + batch_size - 1) // batch_size
    for batch in progress(source.batches(model, batch_size), total=n_batches, desc="images"):
        pixels.append(batch.pixels)
        labels += batch.meta["label"].fillna("").astype(str).tolist() if "label" in batch.meta else [""] * len(batch.ids)
    if not pixels:
        raise ClipauditError("no image could be decoded; see skipped.csv")
    return torch.cat(pixels), labels


def _classes(model, source: ImageSource, config: HeadsConfig) -> list[str]:
    from clipaudit.zeroshot import default_classes

    classes = list(config.classes) if config.classes else default_classes(model, source)
    return classes if config.target in classes else classes + [config.target]


def run(model, source: ImageSource, config: HeadsConfig, sink) -> Result:
    config.validate()
    layers, per_layer = n_heads(model)  # refuses towers without heads, naming their layers
    pixels, labels = _load(model, source, config.batch_size, sink.progress)
    classes = _classes(model, source, config)
    head = model.classifier(classes)
    bs = config.batch_size
    err = max(decompose(model, pixels[i:i + bs]).max_rel_error for i in range(0, len(pixels), bs))
    sink.log(f"decomposition: max relative error {err:.2e} over {len(pixels)} images")
    ts = typo_set(model, head, pixels, labels, config.target, config.text_style(), seed=config.seed)
    sink.table("heads_attribution", direct_attribution(model, head, pixels, bs))
    sink.table("heads_layer_curve", layer_curve(model, head, pixels, ts.true_idx, bs))
    means = head_means(model, [pixels[i:i + bs] for i in range(0, len(pixels), bs)]) if config.mode == "mean" else {}
    base_mask = HeadMask(all_heads(model), config.mode, means, model.name, model.weights_hash)
    scores = reading_scores(model, ts, bs).merge(reading_attribution(model, head, ts, bs), on=["layer", "head"])
    sink.table("heads_scores", scores)
    check_sweep_layers(model, config.sweep_layers)
    swept = all_heads(model)
    if config.sweep_layers:
        last = sorted({l for l, _ in swept})[-config.sweep_layers:]
        swept = [(l, h) for l, h in swept if l in last]
    sweep = head_sweep(model, head, ts, base_mask, bs, progress=sink.progress, heads=swept)
    sink.table("heads_ablation", sweep)
    merged = sweep.merge(scores, on=["layer", "head"])
    rho = spearman(merged["direct_effect"], merged["reading_effect_drop"])
    sink.table("heads_textspan", _textspan(model, ts, config, classes))
    top = scores.sort_values("typographic_score", ascending=False)
    from clipaudit.probes.attribution import strip
    from clipaudit.probes.heads import token_maps

    chosen = [(int(r.layer), int(r.head)) for r in top.head(config.maps).itertuples()]
    maps, overlays = token_maps(model, head, ts, chosen)
    sink.table("heads_token_maps", maps)
    for (l, h), ims in overlays.items():
        sink.image(f"head_map_{l}_{h}", strip(ims, title=f"head {l}.{h}: contribution to logit({config.target}) "
                                                         "- logit(true class)"))
    sink.summary(n_swept_heads=int(len(swept)))
    sink.summary(decomposition_max_rel_error=float(err), n_images=int(len(pixels)), n_layers=int(layers),
                 n_heads=int(per_layer), target=config.target, faithfulness_spearman=float(rho),
                 ablation_mode=config.mode,
                 top_reading_heads=[f"{int(r.layer)}.{int(r.head)}" for r in top.head(5).itertuples()])
    report = ts
    summary: dict = {"heads_ablated": []}
    if config.defend == "typographic":
        n_sel = int(round(len(ts) * config.select_fraction))
        if n_sel < 2 or len(ts) - n_sel < 2:
            raise ClipauditError(f"--defend needs at least 4 images to select on and report on; got {len(ts)}")
        select, report = ts.split(n_sel)
        sel_scores = reading_scores(model, select, bs)
        mask, steps = defend_typographic(model, head, select, base_mask, sel_scores, config.budget, bs,
                                         progress=sink.progress)
        sink.table("heads_defence", steps)
        ev = evaluate(model, head, report, mask, bs)
        summary.update(defended_clean_accuracy=ev.clean_accuracy.rate,
                       defended_attack_success_rate=ev.attack_success.rate,
                       defended_attack_success_ci=[ev.attack_success.lo, ev.attack_success.hi],
                       defended_attacked_accuracy=ev.attacked_accuracy.rate,
                       heads_ablated=[f"{l}.{h}" for l, h in mask.heads], n_select=n_sel, n_report=len(report))
        if mask.heads:
            p, draws = random_sets_test(model, head, report, base_mask, mask.heads, config.random_sets, config.seed,
                                        bs, progress=sink.progress)
            sink.table("heads_random_sets", draws)
            summary["random_sets_p"] = p
        if sink.run is not None:
            sink.run.write_text(MASK_FILE, write_mask(mask))
            summary["mask_file"] = MASK_FILE
    base = evaluate(model, head, report, None, bs)
    sink.summary(clean_accuracy=base.clean_accuracy.rate, attack_success_rate=base.attack_success.rate,
                 attack_success_ci=[base.attack_success.lo, base.attack_success.hi],
                 attacked_accuracy=base.attacked_accuracy.rate, **summary)
    return sink.result


def _textspan(model, ts, config: HeadsConfig, classes: list[str]) -> pd.DataFrame:
    concepts = list(config.concepts) or default_concepts(classes)
    text_emb = model.encode_texts(concepts).double()
    probe = torch.cat([ts.clean, ts.attacked])
    parts = []
    bs = config.batch_size
    for i in range(0, len(probe), bs):
        d = decompose(model, probe[i:i + bs])
        parts.append((d.heads + d.head_extra).cpu())
    outs = torch.cat(parts)  # (N, L, H, D)
    rows = []
    for l in range(outs.shape[1]):
        for h in range(outs.shape[2]):
            df = text_span(outs[:, l, h].numpy(), text_emb.cpu().numpy(), concepts, config.textspan_texts,
                           config.textspan_rank or None)
            rows.append(df.assign(layer=l, head=h))
    out = pd.concat(rows, ignore_index=True)
    return out[["layer", "head", "rank", "text", "variance_explained", "cumulative"]]


AUDIT = Audit(
    name=NAME, config=HeadsConfig, run=run, contract=CONTRACT, page="clipaudit.dashboard.page_heads", cli="clipaudit.probes.heads_cli", plan=None,
    description="residual decomposition, reading heads and a head-ablation typographic defence",
    headlines=(Headline("decomposition_max_rel_error", "decomposition error (relative)"),
               Headline("attack_success_rate", "typographic success (unablated)", "attack_success_ci"),
               Headline("defended_attack_success_rate", "typographic success (defended)", "defended_attack_success_ci")),
    limitations={"L-typographic": ("defended_attack_success_rate", "attack_success_rate")},
)

__all__ = ["AUDIT", "CONTRACT", "HeadsConfig", "run"]
