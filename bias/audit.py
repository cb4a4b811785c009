"""``clipaudit bias``: one embedding pass over a demographic dataset, then every probe.

Why one pass: the probes only need image embeddings, metadata and text embeddings, so the
denigration rates, the label-set rerun, retrieval skew and image-WEAT all reuse one (N, D)
array, and the expensive part (the vision tower) runs once per image.

Each table is saved to the run folder as soon as its probe finishes (Ctrl-C keeps it).
"""
from __future__ import annotations

import dataclasses

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from clipaudit import contract
from clipaudit.audits import Audit, Headline, PairedMetric, column
from clipaudit.bias import probes
from clipaudit.bias.labelsets import LabelSet, load_label_set
from clipaudit.data import ImageSource
from clipaudit.distributed import distributed_context, gather
from clipaudit.zeroshot import iterate
from clipaudit.errors import ClipauditError
from clipaudit.model import in_eval_mode
from clipaudit.result import Result
from clipaudit.runs import RunFolder

PROBES = ("denigration", "skew", "weat")
SCOPE_NOTE = ("Scope: clipaudit's bias probe measures how a CLIP model treats images of people from "
              "different groups under a stated label set and prompts. It is not a face, identity or "
              "demographic classifier and must not be used as one; the group labels come from the "
              "dataset's annotations, not from the model. Surveillance, face recognition and any "
              "decision about individuals are out of scope.")


@dataclass(frozen=True)
class BiasConfig:
    """Settings of one bias audit; each field is the CLI flag of the same name."""

    attributes: tuple[str, ...] = ()
    probe: tuple[str, ...] = ("all",)
    labels: str | None = None
    prompts: str | None = None
    k: int = 100
    bootstrap: int = 2000
    permutations: int = 2000
    target: str = "dataset"
    batch_size: int = 64
    alpha: float = 0.05
    seed: int = 0

    def probes(self) -> tuple[str, ...]:
        """The probes to run (``all`` expanded); raises on unknown names."""
        chosen = tuple(dict.fromkeys(p.strip().lower() for p in self.probe if p.strip()))
        bad = [p for p in chosen if p not in PROBES + ("all",)]
        if bad or not chosen:
            raise ClipauditError(f"unknown --probe {', '.join(bad) or '(empty)'}; valid: {', '.join(PROBES)}, all")
        return PROBES if "all" in chosen else chosen

    def validate(self) -> None:
        self.probes()
        if self.bootstrap < 100:
            raise ClipauditError(f"--bootstrap must be >= 100 resamples for a 95% interval, got {self.bootstrap}")
        if self.permutations < 100:
            raise ClipauditError(f"--permutations must be >= 100, got {self.permutations}")
        if self.k < 1:
            raise ClipauditError(f"--k must be >= 1 (the top-k size for retrieval skew), got {self.k}")
        if self.target not in ("dataset", "equal"):
            raise ClipauditError(f"unknown --target {self.target!r}; valid: dataset, equal")
        if not 0 < self.alpha < 1:
            raise ClipauditError(f"--alpha must be in (0, 1), got {self.alpha}")
        if self.batch_size < 1:
            raise ClipauditError(f"--batch-size must be >= 1, got {self.batch_size}")


@dataclass
class Embeddings:
    """Image embeddings (N, D), L2-normalised, aligned with ``meta`` (N rows, ``id`` first)."""

    image: np.ndarray
    meta: pd.DataFrame

    def subset(self, rows: np.ndarray) -> "Embeddings":
        return Embeddings(self.image[rows], self.meta.iloc[rows].reset_index(drop=True))


@torch.no_grad()
def embed_images(model, source: ImageSource, batch_size: int = 64,
                 progress: Callable | None = None) -> Embeddings:
    """Embed every loadable image of ``source`` once (unloadable ones land in ``source.skipped``)."""
    embs, metas = [], []
    rank, world = distributed_context()  # under torchrun each process embeds a shard
    for batch in iterate(source, model, batch_size, progress, rank=rank, world_size=world, desc="bias"):
        embs.append(model.encode_images(batch.pixels).float().cpu().numpy())
        metas.append(batch.meta)
    if world > 1:  # merge the shards back into source order, as one process would have them
        parts = gather((embs, metas, source.skipped))
        position = {str(i): k for k, i in enumerate(source.items["id"].astype(str))}
        embs = [e for part in parts for e in part[0]]
        metas = [m for part in parts for m in part[1]]
        source.skipped[:] = sorted({s for part in parts for s in part[2]}, key=lambda s: position.get(s[0], 0))
        if embs:
            emb_all, meta_all = np.concatenate(embs), pd.concat(metas, ignore_index=True)
            order = np.argsort([position[str(i)] for i in meta_all["id"]], kind="stable")
            embs, metas = [emb_all[order]], [meta_all.iloc[order].reset_index(drop=True)]
    if not embs:
        raise ClipauditError(f"no image of {source.description} could be read "
                             f"({len(source.skipped)} skipped; first: {source.skipped[0][1] if source.skipped else '-'})")
    return Embeddings(np.concatenate(embs), pd.concat(metas, ignore_index=True))


def _text(model, words: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """(len(words), D): each word's template-mean text embedding, renormalised."""
    return model.classifier(list(words), list(templates)).weights.float().cpu().numpy()


def _phrases(model, words: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """(len(words) * len(templates), D): one embedding per phrase (text-WEAT targets)."""
    return model.encode_texts([t.format(w) for w in words for t in templates]).float().cpu().numpy()


def run_denigration(model, emb: Embeddings, label_set: LabelSet, attributes: Sequence[str],
                    cfg: BiasConfig) -> dict[str, pd.DataFrame]:
    """Denigration (per group and intersectional) and the label-set rerun from one embedding set."""
    base_classes = list(label_set.classes)
    ext_classes, added = label_set.extended_classes()
    class_emb = _text(model, ext_classes, label_set.templates)
    pred = probes.zero_shot_predictions(emb.image, class_emb[:len(base_classes)])
    harm = probes.harmful_flags(pred, base_classes, label_set.harmful_classes)
    ext_pred = probes.zero_shot_predictions(emb.image, class_emb)
    ext_harm = probes.harmful_flags(ext_pred, ext_classes, label_set.harmful_classes)
    kw = dict(n_bootstrap=cfg.bootstrap, alpha=cfg.alpha, seed=cfg.seed)
    predictions = emb.meta[["id", *attributes]].copy()
    predictions["pred"] = [base_classes[i] for i in pred]
    predictions["harmful"] = harm
    predictions["pred_extended"] = [ext_classes[i] for i in ext_pred]
    predictions["harmful_extended"] = ext_harm
    return {
        "bias_predictions": predictions,
        "bias_denigration": probes.denigration(harm, emb.meta, attributes, **kw),
        "bias_intersectional": probes.intersectional(harm, emb.meta, attributes, **kw)
        if len(attributes) > 1 else pd.DataFrame(columns=probes.DENIGRATION_COLUMNS),
        "bias_label_sensitivity": probes.label_sensitivity(harm, ext_harm, ext_pred, emb.meta, attributes,
                                                           ext_classes, added),
    }


def run_skew(model, emb: Embeddings, label_set: LabelSet, attributes: Sequence[str], cfg: BiasConfig) -> pd.DataFrame:
    if not label_set.skew_concepts:
        return pd.DataFrame()
    prompts = list(label_set.skew_concepts)
    sims = emb.image @ _text(model, prompts, label_set.skew_templates).T
    return probes.retrieval_skew(sims, prompts, emb.meta, attributes, k=cfg.k, target=cfg.target,
                                 n_bootstrap=cfg.bootstrap, alpha=cfg.alpha, seed=cfg.seed)


def run_weat(model, emb: Embeddings, label_set: LabelSet, cfg: BiasConfig) -> pd.DataFrame:
    rows = []
    for i, test in enumerate(label_set.weat):
        a, b = _text(model, test.a, test.templates), _text(model, test.b, test.templates)
        if test.kind == "image":
            if test.attribute not in emb.meta.columns:
                continue  # e.g. the FairFace defaults on a CSV without 'race'
            rows.append(probes.image_weat(test, emb.image, emb.meta, a, b, cfg.permutations, cfg.seed + i))
        else:
            rows.append(probes.text_weat(test, _phrases(model, test.x, test.target_templates),
                                         _phrases(model, test.y or (), test.target_templates) if test.y else
                                         np.zeros((0, a.shape[1])), a, b, cfg.permutations, cfg.seed + i))
    return probes.adjust_weat(rows)


def _finite(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def headline(tables: dict[str, pd.DataFrame], alpha: float = 0.05) -> dict:
    """The summary's headline disparities from the finished tables."""
    out: dict = {}
    den = tables.get("bias_denigration")
    if den is not None and len(den):
        ratios = den["rate_ratio"].replace([np.inf], np.nan)
        top = den.loc[ratios.idxmax()] if ratios.notna().any() else den.loc[den["rate"].idxmax()]
        worst = den.loc[den["rate"].idxmax()]
        out.update({
            "harmful_rate_ratio": _finite(top["rate_ratio"]),
            "harmful_rate_ratio_ci": [_finite(top["ratio_ci_low"]), _finite(top["ratio_ci_high"])],
            "harmful_rate_ratio_attribute": str(top["attribute"]),
            "harmful_rate_ratio_group": str(top["group"]),
            "harmful_rate_ratio_p_holm": _finite(top["p_holm"]),
            "max_harmful_rate": float(worst["rate"]),
            "max_harmful_rate_ci": [float(worst["ci_low"]), float(worst["ci_high"])],
            "max_harmful_rate_group": f"{worst['attribute']}={worst['group']}",
            "flagged": [f"{r.attribute}={r.group}" for r in den.itertuples() if r.p_holm < alpha],
        })
        inter = tables.get("bias_intersectional")
        if inter is not None and len(inter):
            out["flagged_intersectional"] = [f"{r.attribute}={r.group}" for r in inter.itertuples() if r.p_holm < alpha]
    sens = tables.get("bias_label_sensitivity")
    if sens is not None and len(sens):
        row = sens.loc[sens["delta"].abs().idxmax()]
        out.update({"max_label_set_shift": float(row["delta"]),
                    "max_label_set_shift_group": f"{row['attribute']}={row['group']}",
                    "added_classes": str(row["added_classes"]).split(";") if row["added_classes"] else []})
    weat = tables.get("bias_weat")
    if weat is not None and len(weat) and weat["d"].notna().any():
        row = weat.loc[weat["d"].abs().idxmax()]
        out.update({"weat_d": float(row["d"]), "weat_p": _finite(row["p_holm"]), "weat_test": str(row["test"])})
    skew = tables.get("bias_skew")
    if skew is not None and len(skew):
        per_attr = skew.groupby("attribute")["max_skew"].mean()
        out.update({"max_skew": float(per_attr.max()), "max_skew_attribute": str(per_attr.idxmax()),
                    "max_skew_k": int(skew["k"].max()),
                    "max_skew_prompt": str(skew.loc[skew["max_skew"].idxmax(), "prompt"])})
    return out


@in_eval_mode
def audit(model, source: ImageSource, config: BiasConfig | None = None,
          run: RunFolder | None = None, progress: Callable | None = None) -> Result:
    """Run the chosen bias probes on ``source`` with ``model``.

    Args:
        model: an :class:`~clipaudit.model.AuditModel`.
        source: an :class:`~clipaudit.data.ImageSource` whose ``attributes`` name its group
            columns (as :func:`open_dataset` returns it; ``config.attributes`` overrides).
        config: :class:`BiasConfig`.
        run: when given, each table is written as soon as its probe finishes.

    Returns:
        ``Result`` with section ``bias``: tables ``bias_predictions``, ``bias_denigration``,
        ``bias_intersectional``, ``bias_label_sensitivity``, ``bias_skew``, ``bias_weat``
        (those of the chosen probes) and the headline summary of ``docs/run-folders.md``.

    Example:
        >>> res = audit(load_model("toy"), open_dataset("toy:400"), BiasConfig(probe=("weat",)))
        >>> res.tables["bias_weat"][["test", "d", "p_holm"]]
    """
    cfg = config or BiasConfig()
    cfg.validate()
    if source is None:
        raise ClipauditError("the bias audit needs an image source with group attributes: "
                             "clipaudit.bias.open_dataset('toy:400') or your own (see open_dataset)")
    if cfg.attributes:  # the config names the group columns: they win over the source's defaults
        missing = [a for a in cfg.attributes if a not in source.items.columns]
        if missing:
            raise ClipauditError(f"attribute(s) {', '.join(missing)} are not columns of {source.description}; "
                                 f"columns: {', '.join(c for c in source.items.columns if c != 'id')}")
        source = dataclasses.replace(source, attributes=tuple(cfg.attributes))
    if not source.attributes:
        raise ClipauditError(f"{source.description} names no group attributes: set config.attributes "
                             "(--attributes), e.g. gender,age")
    layout = source.layout or "source"
    label_set = load_label_set("toy" if layout == "toy" else "fairface", cfg.labels, cfg.prompts)
    chosen = cfg.probes()
    attrs = list(source.attributes)

    emb = embed_images(model, source, cfg.batch_size, progress)
    result = Result("bias")
    summary = {"dataset": source.description, "layout": layout, "dataset_hash": source.content_hash(),
               "n_images": int(len(emb.meta)), "n_skipped": len(source.skipped), "attributes": attrs,
               "probes": list(chosen), "label_set": label_set.describe(), "k": cfg.k, "bootstrap": cfg.bootstrap,
               "permutations": cfg.permutations, "target": cfg.target, "seed": cfg.seed, "alpha": cfg.alpha,
               "model_hash": getattr(model, "weights_hash", None), "scope_note": SCOPE_NOTE}
    if source.skipped:
        result.tables["skipped"] = source.skipped_table()

    def finish(name: str, df: pd.DataFrame) -> None:
        result.tables[name] = df
        if run is not None:
            run.write_table(name, df)
            run.update_summary({**summary, **headline(result.tables, cfg.alpha)}, section="bias")

    if run is not None and "skipped" in result.tables:
        run.write_table("skipped", result.tables["skipped"])
    if "denigration" in chosen:
        for name, df in run_denigration(model, emb, label_set, attrs, cfg).items():
            finish(name, df)
    if "skew" in chosen:
        finish("bias_skew", run_skew(model, emb, label_set, attrs, cfg))
    if "weat" in chosen:
        finish("bias_weat", run_weat(model, emb, label_set, cfg))
    result.summary = {**summary, **headline(result.tables, cfg.alpha)}
    return result


def config_dict(cfg: BiasConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


# ------------------------------------------------------------------ registry entry (clipaudit.audits)

def run(model, source, config: BiasConfig, sink) -> Result:
    """The registry's call shape: :func:`audit` writing through ``sink`` (a ResultSink)."""
    return audit(model, source, config, run=sink, progress=sink.progress)


def plan(args) -> list[str]:
    """This audit's command line inside ``clipaudit audit`` (``args.quick``: small sizes)."""
    return ["bias", "--images", "toy", "--n-images", "400" if args.quick else "2000",
            "--bootstrap", "500" if args.quick else "2000"]


AUDIT = Audit(
    name="bias", config=BiasConfig, run=run, contract=contract.BIAS, page="clipaudit.dashboard.page_bias", cli="clipaudit.bias.cli", plan=plan,
    description="harmful labels per group, label-set sensitivity, retrieval skew, WEAT",
    headlines=(Headline("harmful_rate_ratio", "harmful-label rate ratio", "harmful_rate_ratio_ci"),
               Headline("weat_d", "WEAT effect size d")),
    limitations={"L-bias": ("max_label_set_shift", "weat_d", "max_skew"),
                 "L-denigration": ("harmful_rate_ratio", "max_harmful_rate"),
                 "L-data-skew": ("max_skew",)},
    input_flags="--images, --n-images and --seed",
    paired=(PairedMetric("bias", "bias_predictions", "harmful_rate", column("harmful")),
            PairedMetric("bias", "bias_predictions", "harmful_rate_extended", column("harmful_extended"))),
)
