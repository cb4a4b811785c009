"""``clipaudit limitations``: the CLIP model card's limitations and the paper's robustness,
probe and prompt claims, each turned into a number for one model on one image set.

Reads one tagged :class:`~clipaudit.data.ImageSource` (see
:mod:`clipaudit.probes.limitation_sources`): ``classify`` images by ``domain`` (the base set,
controls, shifts), ``count`` scenes and ``digits``. Every image is encoded once
(:mod:`clipaudit.probes.features`); each measurement is its own module:

- distribution shift and effective robustness: :mod:`clipaudit.probes.shift`;
- linear probe, k-shot curve, "zero-shot is worth k shots", probe under shift:
  :mod:`clipaudit.probes.linear_probe`;
- prompt engineering: :mod:`clipaudit.probes.prompts`;
- counting: :mod:`clipaudit.probes.counting`; digits: :mod:`clipaudit.probes.digits`;
- fine-grained classes (toy colours): :mod:`clipaudit.probes.finegrained`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clipaudit.audits import Audit, Headline, PairedMetric, column
from clipaudit.contract import AuditContract, SummaryKey, TableSpec, _c
from clipaudit.errors import ClipauditError
from clipaudit.probes.linear_probe import C_GRID
from clipaudit.result import Result

NAME = "limitations"
_CI = "n:int accuracy:float ci_low:float ci_high:float"

CONTRACT = AuditContract(
    NAME,
    doc="Model-card limitations measured: distribution shift (zero-shot and linear probe, effective robustness), "
        "k-shot probes, prompt engineering, counting, handwritten digits, fine-grained classes.",
    tables=(
        TableSpec("limitations_images", _c("id:str domain:str label:str pred:str correct:bool"),
                  "zero-shot prediction per classify image", key=("id",)),
        TableSpec("limitations_shift", _c(f"domain:str role:str {_CI} correct:int drop:float drop_ci_low:float "
                                          "drop_ci_high:float flagged:bool"),
                  "zero-shot accuracy per domain (Wilson 95% interval) and the drop from the base domain "
                  "(Newcombe interval); flagged = the drop's interval lies above zero", key=("domain",)),
        TableSpec("limitations_probe_shift", _c("domain:str n:int zero_shot_accuracy:float zero_shot_ci_low:float "
                                                "zero_shot_ci_high:float probe_accuracy:float probe_ci_low:float "
                                                "probe_ci_high:float effective_robustness:float? "
                                                "probe_effective_robustness:float?"),
                  "zero-shot beside the linear probe fit on the base domain, per domain (base: its test split); "
                  "effective robustness against the base-trained probes' logit-linear trend (Taori et al. 2020)",
                  key=("domain",)),
        TableSpec("limitations_kshot", _c(f"k:int {_CI} accuracy_sd:float repeats:int"),
                  "k-shot linear probe accuracy on the base test split (pooled Wilson interval over repeats)",
                  key=("k",)),
        TableSpec("limitations_prompts", _c(f"prompt_set:str domain:str {_CI} gain:float gain_ci_low:float "
                                            "gain_ci_high:float templates:int"),
                  "zero-shot accuracy per prompt set and domain; gain over the bare class name with a paired "
                  "bootstrap interval", key=("prompt_set", "domain")),
        TableSpec("limitations_tasks", _c(f"task:str method:str {_CI} chance:float above_chance:bool p_value:float"),
                  "counting, digits and fine-grained zero-shot / linear-probe accuracy against chance "
                  "(exact binomial p)", key=("task", "method")),
    ),
    summary=tuple(SummaryKey(k, kind, doc, req) for k, kind, doc, req in (
        ("n_images", "int", "images encoded", True),
        ("n_skipped", "int", "images that could not be decoded", False),
        ("base_domain", "str", "the in-distribution domain", True),
        ("n_classes", "int", "zero-shot classes", True),
        ("templates", "list", "zero-shot templates", False),
        ("base_accuracy", "float", "zero-shot accuracy on the base domain", True),
        ("base_accuracy_ci", "list", "95% Wilson interval", False),
        ("domains", "list", "every classify domain, base first", False),
        ("worst_shift", "str", "the shifted domain with the largest drop", False),
        ("worst_shift_accuracy", "float", "its zero-shot accuracy", False),
        ("worst_shift_drop", "float", "base minus worst shifted accuracy", False),
        ("worst_shift_drop_ci", "list", "95% Newcombe interval of that drop", False),
        ("shifts_flagged", "list", "shift domains whose drop interval lies above zero", False),
        ("controls_flagged", "list", "control domains flagged (should be empty)", False),
        ("mean_shift_accuracy", "float", "mean zero-shot accuracy over shift domains", False),
        ("mean_effective_robustness", "float", "zero-shot effective robustness, mean over shift domains", False),
        ("probe_mean_effective_robustness", "float", "the full probe's effective robustness, mean over shifts", False),
        ("effective_robustness_baseline", "str", "what the logit-linear baseline was fit on", False),
        ("zero_shot_test_accuracy", "float", "zero-shot on the base test split", False),
        ("zero_shot_test_ci", "list", "95% interval", False),
        ("probe_accuracy", "float", "linear probe on the base test split", False),
        ("probe_ci", "list", "95% interval", False),
        ("probe_C", "float", "inverse regularisation chosen on validation", False),
        ("probe_mean_shift_accuracy", "float", "linear probe, mean over shift domains", False),
        ("zero_shot_worth_shots", "float", "k-shot probe size matching zero-shot (log2 interpolation)", False),
        ("zero_shot_worth_note", "str", "how the shots figure was read", False),
        ("shots", "list", "k values of the curve", False),
        ("prompt_gain_photo", "float", "'a photo of a {}.' minus the bare name, base domain", False),
        ("prompt_gain_photo_ci", "list", "paired bootstrap 95% interval", False),
        ("prompt_gain_ensemble", "float", "template ensemble minus the bare name, base domain", False),
        ("prompt_gain_ensemble_ci", "list", "paired bootstrap 95% interval", False),
        ("prompt_gain_ensemble_shift", "float", "ensemble minus bare name, mean over shift domains", False),
        ("count_zero_shot_accuracy", "float", "zero-shot count accuracy (count prompts)", False),
        ("count_zero_shot_ci", "list", "95% interval", False),
        ("count_chance", "float", "chance for counting", False),
        ("count_probe_accuracy", "float", "linear probe for the count", False),
        ("count_probe_ci", "list", "95% interval", False),
        ("digits_zero_shot_accuracy", "float", "zero-shot handwritten digit accuracy", False),
        ("digits_zero_shot_ci", "list", "95% interval", False),
        ("digits_chance", "float", "chance for digits", False),
        ("digits_probe_accuracy", "float", "linear probe on the digits", False),
        ("digits_probe_ci", "list", "95% interval", False),
        ("coarse_accuracy", "float", "zero-shot class accuracy on the fine-grained images", False),
        ("fine_grained_accuracy", "float", "zero-shot (colour, class) accuracy", False),
        ("fine_grained_ci", "list", "95% interval", False),
        ("fine_grained_chance", "float", "chance among (colour, class) pairs", False),
        ("within_class_accuracy", "float", "colour read with the class given", False),
        ("random_init", "bool", "the model has random-init weights", False),
    )),
    images=("limitations_shift", "limitations_kshot", "limitations_prompts"),
)


@dataclass(frozen=True)
class LimitationsConfig:
    """What the measurements need (image folders and sizes live in the CLI).

    Attributes:
        base_domain: the in-distribution ``domain`` of classify images.
        control_domains: domains that resample the base distribution (must not be flagged).
        classes: zero-shot classes; empty = the base domain's labels.
        templates: zero-shot templates for the shift and probe comparisons.
        shots: k values of the k-shot curve.
        repeats: k-shot draws per k.
        probe_split: (train pool, validation) fractions of the base domain; the rest tests.
        c_grid: candidate C values for the probe (chosen on validation).
        prompts: measure prompt sets (bare / photo / ensemble).
        fine_grained: measure colour-specific classes when the images carry ``colour``.
        batch_size: images per forward pass.
        seed: splits and k-shot draws.
    """

    base_domain: str = "clean"
    control_domains: tuple[str, ...] = ("control",)
    classes: tuple[str, ...] = ()
    templates: tuple[str, ...] = ("a photo of a {}.",)
    shots: tuple[int, ...] = (1, 2, 4, 8, 16)
    repeats: int = 3
    probe_split: tuple[float, float] = (0.5, 0.2)
    c_grid: tuple[float, ...] = C_GRID
    prompts: bool = True
    fine_grained: bool = True
    batch_size: int = 64
    seed: int = 0


def _ci(row) -> list[float]:
    return [float(row["ci_low"]), float(row["ci_high"])]


def _classify_frame(items: pd.DataFrame, base: str) -> pd.Series:
    task = items["task"].astype(str) if "task" in items else pd.Series("classify", index=items.index)
    return task.replace("", "classify") == "classify"


def _check_classes(labels: pd.Series, domains: pd.Series, classes: list[str], base: str) -> None:
    if len(classes) < 2:
        raise ClipauditError(f"the limitations audit needs at least 2 classes, got {len(classes)}"
                             f"{': ' + classes[0] if classes else ''}")
    for domain in pd.unique(domains):
        missing = sorted(set(labels[domains == domain].astype(str)) - set(classes))
        if missing:
            raise ClipauditError(f"domain {domain!r} has classes missing from the base set {base!r}: "
                                 f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")


def run(model, source, config: LimitationsConfig, sink) -> Result:
    from clipaudit.probes.features import extract_features, zero_shot_logits

    feats = extract_features(model, source, config.batch_size, sink.progress)
    if source.skipped:
        sink.table("skipped", source.skipped_table())
    items = feats.items
    if "domain" not in items:
        items["domain"] = config.base_domain
    items["domain"] = items["domain"].astype(str).replace("", config.base_domain)
    sink.summary(n_images=len(feats), n_skipped=len(source.skipped), base_domain=config.base_domain,
                 random_init=bool(getattr(model, "random_init", False)))
    is_cls = _classify_frame(items, config.base_domain).to_numpy()
    if is_cls.any():
        cls = feats.select(is_cls)
        _classify(model, cls, config, sink, zero_shot_logits)
    _tasks(model, feats, is_cls, config, sink)
    return sink.result


def _classify(model, cls, config: LimitationsConfig, sink, zero_shot_logits) -> None:
    from clipaudit.probes.shift import accuracy_by_domain, shift_table

    items, base = cls.items, config.base_domain
    domains, labels = items["domain"].astype(str), items["label"].astype(str)
    if base not in set(domains):
        raise ClipauditError(f"no images in the base domain {base!r}; domains present: {', '.join(pd.unique(domains))}")
    classes = list(config.classes) or sorted(set(labels[domains == base]))
    _check_classes(labels, domains, classes, base)
    order = [base] + [d for d in pd.unique(domains) if d != base]
    pred = np.asarray(classes, dtype=object)[zero_shot_logits(model, cls.x, classes, config.templates).argmax(1)]
    correct = pred == labels.to_numpy(dtype=object)
    sink.table("limitations_images", pd.DataFrame({"id": items["id"].astype(str), "domain": domains, "label": labels,
                                                   "pred": pred.astype(str), "correct": correct}))
    acc = accuracy_by_domain(correct, domains)
    acc = acc.set_index("domain").loc[order].reset_index()
    table = shift_table(acc, base, config.control_domains)
    sink.table("limitations_shift", table)
    b = table.iloc[0]
    shifts = table[table["role"] == "shift"]
    summary: dict = {"n_classes": len(classes), "templates": list(config.templates), "domains": order,
                     "base_accuracy": float(b["accuracy"]), "base_accuracy_ci": _ci(b),
                     "shifts_flagged": shifts.loc[shifts["flagged"], "domain"].tolist(),
                     "controls_flagged": table.loc[(table["role"] == "control") & table["flagged"], "domain"].tolist()}
    if len(shifts):
        w = shifts.sort_values("drop", ascending=False).iloc[0]
        summary.update(worst_shift=str(w["domain"]), worst_shift_accuracy=float(w["accuracy"]),
                       worst_shift_drop=float(w["drop"]),
                       worst_shift_drop_ci=[float(w["drop_ci_low"]), float(w["drop_ci_high"])],
                       mean_shift_accuracy=float(shifts["accuracy"].mean()))
    sink.summary(summary)
    _probe(cls, correct, classes, order, config, sink)
    if config.prompts:
        _prompts(model, cls, classes, config, sink)


def _probe(cls, zs_correct: np.ndarray, classes: list[str], order: list[str], config: LimitationsConfig, sink) -> None:
    from clipaudit.probes import linear_probe as lp
    from clipaudit.probes.shift import effective_robustness, logit_fit
    from clipaudit.stats import rate_ci

    items, base = cls.items, config.base_domain
    domains, y = items["domain"].astype(str).to_numpy(), items["label"].astype(str).to_numpy()
    base_idx = np.flatnonzero(domains == base)
    fr = config.probe_split
    pool, val, test = (base_idx[p] for p in lp.stratified_split(y[base_idx], [fr[0], fr[1], max(1e-9, 1 - sum(fr))],
                                                                    seed=config.seed))
    if len(test) == 0 or len(val) == 0:
        raise ClipauditError(f"base domain {base!r} has too few images ({len(base_idx)}) to split for the linear probe")
    x = cls.x
    fit = lp.fit_probe(x[pool], y[pool], x[val], y[val], config.c_grid)
    kshots = lp.kshot_probes(x[pool], y[pool], x[val], y[val], config.shots, config.repeats, config.seed,
                             config.c_grid)
    curve = lp.summarise_curve(lp.score_probes(kshots, x[test], y[test]))
    sink.table("limitations_kshot", curve)
    zs_test = rate_ci(int(zs_correct[test].sum()), len(test))
    worth, note = lp.shots_worth(curve, zs_test.rate)
    # per-domain accuracy of every base-trained probe (the effective-robustness baselines)
    eval_sets = {d: (test if d == base else np.flatnonzero(domains == d)) for d in order}
    probes = [fit] + [f for _k, _r, f in kshots]
    base_accs = np.array([p.accuracy(x[test], y[test]) for p in probes])
    rows = []
    for d in order:
        idx = eval_sets[d]
        zs = rate_ci(int(zs_correct[idx].sum()), len(idx))
        pr_ok = fit.predict(x[idx]) == y[idx]
        pr = rate_ci(int(pr_ok.sum()), len(idx))
        row = {"domain": d, "n": len(idx), "zero_shot_accuracy": zs.rate, "zero_shot_ci_low": zs.lo,
               "zero_shot_ci_high": zs.hi, "probe_accuracy": pr.rate, "probe_ci_low": pr.lo, "probe_ci_high": pr.hi,
               "effective_robustness": np.nan, "probe_effective_robustness": np.nan}
        if d != base:
            accs = np.array([p.accuracy(x[idx], y[idx]) for p in probes])
            try:
                slope, icpt = logit_fit(base_accs, accs, len(test), len(idx))
                row["effective_robustness"] = effective_robustness(zs_test.rate, zs.rate, slope, icpt, len(test))
                row["probe_effective_robustness"] = effective_robustness(base_accs[0], pr.rate, slope, icpt, len(test))
            except ClipauditError:
                pass
        rows.append(row)
    table = pd.DataFrame(rows)
    sink.table("limitations_probe_shift", table)
    shift_rows = table[~table["domain"].isin([base, *config.control_domains])]
    sink.summary(zero_shot_test_accuracy=zs_test.rate, zero_shot_test_ci=[zs_test.lo, zs_test.hi],
                 probe_accuracy=float(table.iloc[0]["probe_accuracy"]),
                 probe_ci=[float(table.iloc[0]["probe_ci_low"]), float(table.iloc[0]["probe_ci_high"])],
                 probe_C=fit.C, zero_shot_worth_shots=worth, zero_shot_worth_note=note,
                 shots=[int(k) for k in curve["k"]],
                 probe_mean_shift_accuracy=float(shift_rows["probe_accuracy"].mean()) if len(shift_rows) else None,
                 mean_effective_robustness=_nanmean(shift_rows["effective_robustness"]),
                 probe_mean_effective_robustness=_nanmean(shift_rows["probe_effective_robustness"]),
                 effective_robustness_baseline=(
                     f"logit-linear fit over {len(probes)} linear probes trained on {base!r} features "
                     f"(k-shot k={','.join(map(str, sorted(set(config.shots))))} x {config.repeats} draws, and the "
                     "full probe)"))
    sink.image("limitations_shift", _shift_figure(table, base))
    sink.image("limitations_kshot", _kshot_figure(curve, zs_test))


def _nanmean(s: pd.Series) -> float | None:
    v = pd.to_numeric(s, errors="coerce").dropna()
    return float(v.mean()) if len(v) else None


def _prompts(model, cls, classes: list[str], config: LimitationsConfig, sink) -> None:
    from clipaudit.probes.prompts import PROMPT_SETS, prompt_gains

    items = cls.items
    table = prompt_gains(model, cls.x, items["label"].astype(str), items["domain"].astype(str), classes,
                         PROMPT_SETS, seed=config.seed)
    sink.table("limitations_prompts", table)
    base = table[table["domain"] == config.base_domain].set_index("prompt_set")
    shifted = table[~table["domain"].isin([config.base_domain, *config.control_domains])]
    ens_shift = shifted[shifted["prompt_set"] == "ensemble"]["gain"]
    sink.summary(prompt_gain_photo=float(base.loc["photo", "gain"]),
                 prompt_gain_photo_ci=[float(base.loc["photo", "gain_ci_low"]), float(base.loc["photo", "gain_ci_high"])],
                 prompt_gain_ensemble=float(base.loc["ensemble", "gain"]),
                 prompt_gain_ensemble_ci=[float(base.loc["ensemble", "gain_ci_low"]),
                                          float(base.loc["ensemble", "gain_ci_high"])],
                 prompt_gain_ensemble_shift=float(ens_shift.mean()) if len(ens_shift) else None)
    sink.image("limitations_prompts", _prompt_figure(table))


def _tasks(model, feats, is_cls: np.ndarray, config: LimitationsConfig, sink) -> None:
    from clipaudit.probes.counting import count_table, versus_chance
    from clipaudit.probes.digits import DIGIT_CLASSES, DIGIT_TEMPLATES
    from clipaudit.probes.features import zero_shot_correct
    from clipaudit.probes.linear_probe import holdout_probe

    items = feats.items
    task = items["task"].astype(str) if "task" in items else pd.Series("classify", index=items.index)
    frames, summary = [], {}
    count = (task == "count").to_numpy()
    if count.any():
        c = feats.select(count)
        table, _ = count_table(model, c.x, c.items["label"].astype(str), c.items["count"].astype(int), config.seed)
        frames.append(table)
        zs, pr = table.iloc[0], table.iloc[1]
        summary.update(count_zero_shot_accuracy=float(zs["accuracy"]), count_zero_shot_ci=_ci(zs),
                       count_chance=float(zs["chance"]), count_probe_accuracy=float(pr["accuracy"]),
                       count_probe_ci=_ci(pr))
    digits = (task == "digits").to_numpy()
    if digits.any():
        d = feats.select(digits)
        y = d.items["label"].astype(str).to_numpy()
        zs = versus_chance("digits", "zero_shot", zero_shot_correct(model, d.x, y, DIGIT_CLASSES, DIGIT_TEMPLATES),
                           1 / len(DIGIT_CLASSES))
        fit, _test, ok = holdout_probe(d.x, y, seed=config.seed, c_grid=config.c_grid)
        pr = {**versus_chance("digits", "linear_probe", ok, 1 / len(DIGIT_CLASSES)), "C": fit.C}
        frames.append(pd.DataFrame([zs, pr]))
        summary.update(digits_zero_shot_accuracy=zs["accuracy"], digits_zero_shot_ci=[zs["ci_low"], zs["ci_high"]],
                       digits_chance=zs["chance"], digits_probe_accuracy=pr["accuracy"],
                       digits_probe_ci=[pr["ci_low"], pr["ci_high"]])
    fine = _fine_grained(model, feats.select(is_cls), config)
    if fine is not None:
        frames.append(fine)
        rows = fine.set_index("method")
        summary.update(coarse_accuracy=float(rows.loc["coarse", "accuracy"]),
                       fine_grained_accuracy=float(rows.loc["fine", "accuracy"]), fine_grained_ci=_ci(rows.loc["fine"]),
                       fine_grained_chance=float(rows.loc["fine", "chance"]),
                       within_class_accuracy=float(rows.loc["within_class", "accuracy"]))
    if frames:
        sink.table("limitations_tasks", pd.concat(frames, ignore_index=True))
        sink.summary(summary)


def _fine_grained(model, cls, config: LimitationsConfig) -> pd.DataFrame | None:
    """Colour-specific classes on the base domain, when its images are toy objects with colours."""
    from clipaudit.probes.finegrained import fine_grained_table
    from clipaudit.toy.world import CLASS_COLOURS

    if not config.fine_grained or len(cls) == 0 or "colour" not in cls.items:
        return None
    base = cls.select(cls.items["domain"].astype(str) == config.base_domain)
    labels = base.items["label"].astype(str)
    if len(base) == 0 or not set(labels) <= set(CLASS_COLOURS):
        return None
    variants = {c: CLASS_COLOURS[c] for c in sorted(set(labels))}
    return fine_grained_table(model, base.x, labels, base.items["colour"].astype(str), variants)


# -- figures ----------------------------------------------------------------------------------

def _shift_figure(table: pd.DataFrame, base: str):
    from clipaudit.figures import _pyplot, detach

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(table) + 2), 3.4))
    pos = np.arange(len(table))
    for off, col, lab in ((-0.18, "zero_shot", "zero-shot"), (0.18, "probe", "linear probe")):
        acc = table[f"{col}_accuracy"].to_numpy()
        err = np.vstack([acc - table[f"{col}_ci_low"], table[f"{col}_ci_high"] - acc])
        ax.bar(pos + off, acc, width=0.36, yerr=err, capsize=3, label=lab)
    ax.set_xticks(pos, [d + (" (base)" if d == base else "") for d in table["domain"]], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95% CI)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return detach(fig)


def _kshot_figure(curve: pd.DataFrame, zs) -> object:
    from clipaudit.figures import _pyplot, detach

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.errorbar(curve["k"], curve["accuracy"], yerr=[curve["accuracy"] - curve["ci_low"],
                                                    curve["ci_high"] - curve["accuracy"]], marker="o",
                capsize=3, label="k-shot linear probe")
    ax.axhline(zs.rate, color="k", ls="--", label="zero-shot")
    ax.axhspan(zs.lo, zs.hi, color="k", alpha=0.08)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("labelled images per class (k)")
    ax.set_ylabel("base test accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return detach(fig)


def _prompt_figure(table: pd.DataFrame):
    from clipaudit.figures import _pyplot, detach

    plt = _pyplot()
    pivot = table.pivot(index="domain", columns="prompt_set", values="accuracy")
    pivot = pivot.loc[pd.unique(table["domain"])]
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(pivot) + 2), 3.4))
    pos = np.arange(len(pivot))
    width = 0.8 / max(1, len(pivot.columns))
    for i, name in enumerate(pivot.columns):
        ax.bar(pos + (i - (len(pivot.columns) - 1) / 2) * width, pivot[name], width=width, label=name)
    ax.set_xticks(pos, list(pivot.index), rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("zero-shot accuracy")
    ax.legend(fontsize=8, title="prompts")
    fig.tight_layout()
    return detach(fig)


def plan(args) -> list[str]:
    return [NAME, "--quick"] if getattr(args, "quick", False) else [NAME]


AUDIT = Audit(
    name=NAME, config=LimitationsConfig, run=run, contract=CONTRACT, cli="clipaudit.probes.limitations_cli",
    plan=plan, page="clipaudit.dashboard.page_limitations",
    description="model-card limitations: distribution shift, linear probes, prompts, counting, digits, fine-grained",
    headlines=(Headline("base_accuracy", "zero-shot accuracy, base domain", "base_accuracy_ci"),
               Headline("worst_shift_drop", "largest accuracy drop under shift", "worst_shift_drop_ci"),
               Headline("mean_effective_robustness", "zero-shot effective robustness (mean over shifts)"),
               Headline("zero_shot_worth_shots", "zero-shot is worth k labelled shots per class"),
               Headline("count_zero_shot_accuracy", "counting, zero-shot", "count_zero_shot_ci"),
               Headline("digits_zero_shot_accuracy", "handwritten digits, zero-shot", "digits_zero_shot_ci")),
    limitations={"L-fine-grained": ("fine_grained_accuracy", "count_zero_shot_accuracy"),
                 "L-abstract": ("count_zero_shot_accuracy", "count_probe_accuracy"),
                 "L-ood": ("digits_zero_shot_accuracy", "digits_probe_accuracy"),
                 "L-shift": ("worst_shift_drop", "mean_effective_robustness")},
    paired=(PairedMetric(NAME, "limitations_images", "zero_shot_correct", column("correct")),),
)

__all__ = ["AUDIT", "CONTRACT", "LimitationsConfig", "run"]
