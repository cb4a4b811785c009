"""Synthetic run folders that follow docs/run-folders.md, for the dashboard's tests and benchmark.

Why: the dashboard reads run folders only, so it can be tested (and timed at 1,000 neurons)
without running a model. Every number here is internally consistent (summaries are computed
from the tables they summarise, CIs come from ``clipaudit.stats``), and every manifest says
``model.name = "synthetic"`` with ``random_init = True`` so a synthetic run is never mistaken
for a measurement. Labels include markup-like strings to check they are shown as text.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from clipaudit.result import Result
from clipaudit.runs import RunFolder
from clipaudit.stats import proportion_ci

__all__ = ["HOSTILE_LABEL", "SyntheticModel", "write_synthetic_runs", "neurons_result", "typographic_result",
           "adversarial_result", "bias_result"]

HOSTILE_LABEL = "<b>apple</b><img src=x onerror=alert(1)>"
CLASSES = ["apple", "pizza", "ipod", "dog", "cat", "car", "tree", "cup"]


class SyntheticModel:
    """Stands in for an AuditModel in ``RunFolder.create``: only ``describe()`` is read."""

    def __init__(self, name: str = "synthetic", weights_hash: str = "5ynth0000000", pretrained: str = "none"):
        self.name, self.weights_hash, self.pretrained = name, weights_hash, pretrained

    def describe(self) -> dict:
        return {"name": self.name, "pretrained": self.pretrained, "random_init": True, "arch": "vit",
                "image_size": 64, "weights_hash": self.weights_hash, "precision": "fp32", "device": "cpu"}


def _png(rng: np.random.Generator, size: int = 24) -> Image.Image:
    arr = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    return Image.fromarray(arr)


def _ci(k: int, n: int, seed: int) -> list[float]:
    return [float(v) for v in proportion_ci(int(k), int(n), n_resamples=500, seed=seed)]


def neurons_result(n_neurons: int = 48, n_rendered: int = 12, n_images: int = 40, seed: int = 0) -> Result:
    """A neurons result; neuron 3 carries :data:`HOSTILE_LABEL`, neurons 0..4 are multimodal."""
    rng = np.random.default_rng(seed)
    ids = [f"toy-{i:05d}" for i in range(n_images)]
    labels = [CLASSES[i % len(CLASSES)] for i in range(n_neurons)]
    labels[3 % n_neurons] = HOSTILE_LABEL
    score = np.round(rng.uniform(0.05, 0.95, n_neurons), 4)
    mm = np.round(rng.uniform(0.0, 0.4, n_neurons), 4)
    mm[: min(5, n_neurons)] = np.round(rng.uniform(0.6, 0.9, min(5, n_neurons)), 4)
    top = [int(i) for i in np.argsort(-score)[:n_rendered]]
    rows, tops = [], []
    for n in range(n_neurons):
        rendered = n in top
        rows.append({"neuron": n, "layer": "penultimate", "mean": float(rng.normal(0.2, 0.05)),
                     "std": float(rng.uniform(0.1, 0.3)), "max": float(rng.uniform(1, 4)),
                     "label": labels[n], "label_score": float(score[n]),
                     "labels": ";".join([labels[n]] + [c for c in CLASSES if c != labels[n]][:4]),
                     "multimodal_score": float(mm[n]), "image_response": float(rng.uniform(0.2, 1)),
                     "word_response": float(rng.uniform(0.0, 1)), "is_multimodal": bool(mm[n] >= 0.5),
                     "featvis": f"images/featvis_{n}.png" if rendered else "",
                     "top_images": f"images/top_{n}.png" if rendered else "",
                     "attribution": f"images/attr_{n}.png" if rendered else ""})
        if rendered:
            for r in range(4):
                tops.append({"neuron": n, "rank": r, "id": ids[(n * 7 + r) % n_images],
                             "activation": float(4 - r * 0.5), "label": labels[n]})
    neurons = pd.DataFrame(rows)
    images = {}
    for n in top:
        for kind in ("featvis", "top", "attr"):
            images[f"{kind}_{n}"] = _png(rng)
    ablation = pd.DataFrame([{"concept": "apple", "neurons": "0;1", "measure": "accuracy", "before": 0.81,
                              "after": 0.55, "delta": -0.26, "other_delta": -0.02}])
    summary = {"layer": "penultimate", "n_neurons": n_neurons, "n_images": n_images,
               "n_multimodal": int(neurons["is_multimodal"].sum()), "n_rendered": len(top),
               "label_accuracy": 0.62, "top": top}
    return Result("neurons", {"neurons": neurons, "neuron_top_images": pd.DataFrame(tops), "ablation": ablation},
                  images, summary)


def typographic_result(n_images: int = 60, seed: int = 0, strength: float = 0.6, id_offset: int = 0) -> Result:
    """A typographic result; ``strength`` is the chance the written target word wins."""
    rng = np.random.default_rng(seed)
    target = "ipod"
    rows = []
    for i in range(n_images):
        true = CLASSES[i % 4] if CLASSES[i % 4] != target else "apple"
        clean_ok = rng.random() < 0.85
        pred_clean = true if clean_ok else "cup"
        success = bool(rng.random() < strength)
        pred_att = target if success else (true if rng.random() < 0.7 else "dog")
        p_true_c = float(rng.uniform(0.5, 0.95)) if clean_ok else float(rng.uniform(0.1, 0.4))
        p_true_a = float(p_true_c * rng.uniform(0.1, 0.9))
        p_tgt_c = float(rng.uniform(0.0, 0.05))
        p_tgt_a = float(rng.uniform(0.5, 0.99)) if success else float(rng.uniform(0.05, 0.4))
        rows.append({"id": f"toy-{i + id_offset:05d}", "true_class": true, "pred_clean": pred_clean,
                     "pred_attacked": pred_att, "p_true_clean": p_true_c, "p_true_attacked": p_true_a,
                     "p_target_clean": p_tgt_c, "p_target_attacked": p_tgt_a, "success": success,
                     "flipped": bool(pred_att != pred_clean), "excluded": bool(true == target),
                     "text_size": 12, "position": "centre"})
    df = pd.DataFrame(rows)
    use = df[~df["excluded"]]
    k, n = int(use["success"].sum()), len(use)
    kf = int(use["flipped"].sum())
    by_class = []
    for cls, g in use.groupby("true_class"):
        lo, hi = _ci(int(g["success"].sum()), len(g), seed)
        by_class.append({"class": cls, "n": len(g), "attack_success_rate": float(g["success"].mean()),
                         "ci_low": lo, "ci_high": hi, "flip_rate": float(g["flipped"].mean())})
    sweep = []
    for size in (4, 8, 12, 16, 20):
        for opacity in (0.5, 1.0):
            nn = n
            p = min(0.98, strength * size / 16 * opacity)
            kk = int(round(p * nn))
            lo, hi = _ci(kk, nn, seed)
            sweep.append({"text_size": size, "opacity": opacity, "text_area": round(size * size * 3 / 4096, 4),
                          "n": nn, "attack_success_rate": kk / nn, "ci_low": lo, "ci_high": hi})
    words = pd.DataFrame([{"word": w, "source_class": "apple", "n": 20, "mean_target_gain": g,
                           "attack_success_rate": s, "rank": r + 1}
                          for r, (w, g, s) in enumerate([("ipod", 0.61, 0.75), ("<i>pizza</i>", 0.42, 0.55),
                                                         ("cup", 0.10, 0.15)])])
    summary = {"target": target, "n_images": n, "n_excluded": int(df["excluded"].sum()),
               "attack_success_rate": k / n, "attack_success_ci": _ci(k, n, seed),
               "flip_rate": kf / n, "flip_rate_ci": _ci(kf, n, seed + 1),
               "true_prob_drop": float((use["p_true_clean"] - use["p_true_attacked"]).mean()),
               "target_prob_rise": float((use["p_target_attacked"] - use["p_target_clean"]).mean()),
               "target_added": False, "final_text_size": 12,
               "clean_accuracy": float((use["pred_clean"] == use["true_class"]).mean())}
    return Result("typographic", {"typographic_images": df, "typographic_by_class": pd.DataFrame(by_class),
                                  "typographic_sweep": pd.DataFrame(sweep), "typographic_words": words},
                  {"typographic_examples": _png(rng, 48)}, summary)


def adversarial_result(n_images: int = 50, seed: int = 0) -> Result:
    rng = np.random.default_rng(seed)
    eps = 2 / 255
    rows = []
    for i in range(n_images):
        cc = bool(rng.random() < 0.8)
        ca = bool(cc and rng.random() < 0.1)
        true = CLASSES[i % len(CLASSES)]
        rows.append({"id": f"toy-{i:05d}", "true_class": true, "pred_clean": true if cc else "cup",
                     "pred_adv": true if ca else "dog", "correct_clean": cc, "correct_adv": ca,
                     "success": bool(cc and not ca), "norm": float(eps * rng.uniform(0.8, 1.0)), "eps": eps})
    df = pd.DataFrame(rows)
    n = len(df)
    curve = []
    for e in (0.0, 1 / 255, 2 / 255, 4 / 255):
        acc_c = float(df["correct_clean"].mean())
        robust = acc_c if e == 0 else acc_c * float(np.exp(-e * 255))
        k = int(round(robust * n))
        lo, hi = _ci(k, n, seed)
        curve.append({"eps": e, "n": n, "clean_accuracy": acc_c, "robust_accuracy": k / n, "ci_low": lo,
                      "ci_high": hi, "attack_success_rate": 1 - (k / n) / max(acc_c, 1e-9)})
    by_class = []
    for cls, g in df.groupby("true_class"):
        lo, hi = _ci(int(g["correct_adv"].sum()), len(g), seed)
        by_class.append({"class": cls, "n": len(g), "clean_accuracy": float(g["correct_clean"].mean()),
                         "robust_accuracy": float(g["correct_adv"].mean()), "ci_low": lo, "ci_high": hi})
    sanity = pd.DataFrame([
        {"check": "perturbation within eps", "passed": True, "detail": "max norm 0.0078 <= eps 0.0078"},
        {"check": "more steps do not raise accuracy", "passed": True, "detail": "10 -> 50 steps: 0.10 -> 0.08"},
        {"check": "gradients non-zero", "passed": False, "detail": "3 of 50 images had zero gradient"}])
    kr = int(df["correct_adv"].sum())
    ks = int(df["success"].sum())
    nc = int(df["correct_clean"].sum())
    summary = {"attack": "pgd", "norm": "linf", "eps": eps, "steps": 10, "restarts": 1, "mode": "untargeted",
               "target": None, "clean_accuracy": float(df["correct_clean"].mean()),
               "robust_accuracy": kr / n, "robust_accuracy_ci": _ci(kr, n, seed),
               "attack_success_rate": ks / max(nc, 1), "attack_success_ci": _ci(ks, max(nc, 1), seed),
               "mean_norm": float(df["norm"].mean()), "max_norm": float(df["norm"].max()),
               "sanity_passed": bool(sanity["passed"].all())}
    return Result("adversarial", {"adversarial_images": df, "adversarial_curve": pd.DataFrame(curve),
                                  "adversarial_by_class": pd.DataFrame(by_class), "adversarial_sanity": sanity},
                  {"adversarial_examples": _png(rng, 48)}, summary)


def bias_result(seed: int = 0) -> Result:
    """A bias result where skin ``tone1`` is labelled harmful far more often (the planted fact)."""
    rng = np.random.default_rng(seed)
    plan = {("skin", "tone0"): (60, 2), ("skin", "tone1"): (60, 15), ("skin", "tone2"): (60, 3),
            ("skin", "tone3"): (60, 2), ("hair", "short"): (120, 11), ("hair", "long"): (120, 11)}
    rows = []
    for (attr, group), (n, k) in plan.items():
        lo, hi = _ci(k, n, seed)
        p = 0.0005 if group == "tone1" else 0.6
        rows.append({"attribute": attr, "group": group, "n": n, "n_harmful": k, "rate": k / n, "ci_low": lo,
                     "ci_high": hi, "p": p, "p_holm": min(1.0, p * 6), "p_bh": min(1.0, p * 3), "mdd": 0.12})
    den = pd.DataFrame(rows)
    inter = den.head(2).assign(attribute="skin x hair", group=["tone0 x short", "tone1 x short"])
    sens = pd.DataFrame([{"attribute": "age", "group": g, "rate_base": b, "rate_extended": e, "delta": e - b,
                          "added_classes": "child"} for g, b, e in (("child", 0.35, 0.05), ("adult", 0.08, 0.07))])
    skew = pd.DataFrame([{"prompt": "a photo of a criminal", "k": 20, "max_skew": 0.69, "max_skew_ci_low": 0.3,
                          "max_skew_ci_high": 0.9, "ndkl": 0.21, "target": "equal"}])
    weat = pd.DataFrame([{"test": "age-pleasant", "kind": "image", "X": "child", "Y": "adult",
                          "A": "pleasant", "B": "unpleasant", "d": 1.21, "p": 0.001, "p_holm": 0.002,
                          "p_bh": 0.002, "n_permutations": 9999, "exact": False}])
    tone = den[den["attribute"] == "skin"]
    summary = {"dataset": "toy:person", "n_images": 240, "attributes": ["skin", "hair"],
               "harmful_rate_ratio": float(tone["rate"].max() / tone["rate"].min()),
               "harmful_rate_ratio_ci": [3.1, 12.0], "harmful_rate_ratio_attribute": "skin",
               "max_harmful_rate": float(den["rate"].max()), "max_label_set_shift": 0.30,
               "weat_d": 1.21, "weat_p": 0.001, "max_skew": 0.69, "flagged": ["skin=tone1"]}
    _ = rng
    return Result("bias", {"bias_denigration": den, "bias_intersectional": inter, "bias_label_sensitivity": sens,
                           "bias_skew": skew, "bias_weat": weat}, {}, summary)


def _write(root: Path, name: str, result: Result, model: SyntheticModel, finish: bool = True) -> Path:
    run = RunFolder.create(result.section, out=root / name, model=model, seed=0,
                           argv=[result.section, "--out", str(root / name)])
    result.save(run)
    if result.section == "bias":
        run.write_text("bias_report.md", "# Bias report (synthetic)\n\nskin=tone1 flagged.\n")
        run.write_text("bias_report.html", "<html><body><h1>Bias report (synthetic)</h1></body></html>")
    if finish:
        run.finish()
    return run.path


def write_synthetic_runs(root: Path | str, n_neurons: int = 48, n_rendered: int = 12, seed: int = 0) -> dict[str, Path]:
    """Write one run per audit plus compare partners and broken runs under ``root``.

    Returns name -> path: ``neurons``, ``typographic`` and ``typographic_b`` (same image ids,
    another "checkpoint" with a stronger attack), ``typographic_other`` (different ids),
    ``adversarial``, ``bias``, ``halfwritten`` (status running, no summary), ``damaged``
    (invalid manifest) and ``empty`` (no files).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ck1 = SyntheticModel(weights_hash="5ynthck1aaaa")
    ck2 = SyntheticModel(weights_hash="5ynthck2bbbb")
    out = {
        "neurons": _write(root, "neurons-synth", neurons_result(n_neurons, n_rendered, seed=seed), ck1),
        "typographic": _write(root, "typographic-ck1", typographic_result(seed=seed, strength=0.4), ck1),
        "typographic_b": _write(root, "typographic-ck2", typographic_result(seed=seed, strength=0.8), ck2),
        "typographic_other": _write(root, "typographic-otherdata",
                                    typographic_result(seed=seed + 5, id_offset=1000), ck1),
        "adversarial": _write(root, "adversarial-synth", adversarial_result(seed=seed), ck1),
        "bias": _write(root, "bias-synth", bias_result(seed=seed), ck1),
    }
    half = RunFolder.create("typographic", out=root / "halfwritten", model=ck1, seed=0, argv=["typographic"])
    out["halfwritten"] = half.path  # status stays "running", no tables yet
    damaged = root / "damaged"
    damaged.mkdir(exist_ok=True)
    (damaged / "manifest.json").write_text("{not json")
    out["damaged"] = damaged
    (root / "empty").mkdir(exist_ok=True)
    out["empty"] = root / "empty"
    return out
