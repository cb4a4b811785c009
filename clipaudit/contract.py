"""The run-folder contract: every table and summary key an audit may write, machine-checked.

Why one declaration: the dashboard, ``clipaudit diff``, the reports and the model card read run
folders written by audits they do not import. This module is the single statement of what they
may rely on: :class:`~clipaudit.sink.ResultSink` validates every table and summary it writes
against it (a missing column or a wrong type is a bug caught where it is made, not a blank
dashboard card later), ``docs/run-folders.md`` is generated from it (:func:`render_markdown`),
and one test runs every registered audit and checks the folder it leaves.

Columns list what readers need; audits may add more (source metadata, render parameters).
A new audit declares its own :class:`AuditContract` in its module and hands it to the registry
(:mod:`clipaudit.audits`); the shipped audits' contracts live here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import pandas as pd

from clipaudit.errors import ClipauditError

KINDS = ("int", "float", "number", "bool", "str", "any")


class ContractError(ClipauditError):
    """An audit wrote something the run-folder contract does not allow (a bug in the audit)."""


@dataclass(frozen=True)
class Column:
    """One column: ``kind`` is int | float | number (int or float) | bool | str | any."""

    name: str
    kind: str = "any"
    doc: str = ""
    required: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name!r}: kind {self.kind!r} not in {KINDS}")


@dataclass(frozen=True)
class TableSpec:
    """A table ``<name>.csv`` + ``<name>.parquet``; ``key`` columns identify a row (for pairing)."""

    name: str
    columns: tuple[Column, ...]
    doc: str = ""
    key: tuple[str, ...] = ()
    extra_columns: bool = True
    #: a bool column whose True rows are outside every per-item metric (diff drops them in both runs)
    exclude: str | None = None


@dataclass(frozen=True)
class SummaryKey:
    """One key of the audit's ``summary.json`` section; ``kind`` as for :class:`Column`, or list/dict."""

    name: str
    kind: str = "any"
    doc: str = ""
    required: bool = False


@dataclass(frozen=True)
class AuditContract:
    """What one audit writes: its tables, images (name patterns) and summary section."""

    section: str
    tables: tuple[TableSpec, ...]
    summary: tuple[SummaryKey, ...] = ()
    images: tuple[str, ...] = ()
    doc: str = ""
    #: other files (relative paths, e.g. ``sae/weights.safetensors``) written through ``ResultSink.file``
    files: tuple[str, ...] = ()

    def table(self, name: str) -> TableSpec:
        for spec in self.tables:
            if spec.name == name:
                return spec
        raise ContractError(f"audit {self.section!r} declares no table {name!r}; declared: "
                            f"{', '.join(t.name for t in self.tables)} (add it to its AuditContract)")

    def has_table(self, name: str) -> bool:
        return any(t.name == name for t in self.tables)


def _c(spec: str) -> tuple[Column, ...]:
    """'name:kind name2:kind ...' -> columns (compact declarations below); a trailing ? = optional."""
    cols = []
    for item in spec.split():
        name, _, kind = item.partition(":")
        required = not kind.endswith("?")
        cols.append(Column(name, kind.rstrip("?") or "any", required=required))
    return tuple(cols)


# -- the columns shared by every audit --------------------------------------------------------

SKIPPED = TableSpec("skipped", _c("id:str reason:str"),
                    "inputs that could not be decoded, one row each (written only when some were skipped)")

_RATE_CI = "n:int ci_low:float ci_high:float"


# -- validation --------------------------------------------------------------------------------

def _kind_ok(series: pd.Series, kind: str) -> bool:
    if kind == "any" or len(series) == 0:
        return True
    if kind == "bool":
        return pd.api.types.is_bool_dtype(series) or set(series.dropna().unique()) <= {0, 1, True, False}
    if kind == "int":
        return pd.api.types.is_integer_dtype(series) or pd.api.types.is_bool_dtype(series)
    if kind in ("float", "number"):
        return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if kind == "str":
        values = series.dropna()
        return pd.api.types.is_string_dtype(series) or pd.api.types.is_object_dtype(series) and \
            all(isinstance(v, str) for v in values)
    return True


def check_table(contract: AuditContract | None, name: str, df: pd.DataFrame) -> None:
    """Raise :class:`ContractError` when ``df`` may not be written as table ``name``.

    The common ``skipped`` table is allowed for every audit.
    """
    if not isinstance(df, pd.DataFrame):
        raise ContractError(f"table {name!r} must be a pandas DataFrame, got {type(df).__name__}")
    if contract is None:
        return
    spec = SKIPPED if name == SKIPPED.name else contract.table(name)
    missing = [c.name for c in spec.columns if c.required and c.name not in df.columns]
    if missing:
        raise ContractError(f"{contract.section} table {name!r} lacks required column(s) {', '.join(missing)}")
    for col in spec.columns:
        if col.name in df.columns and not _kind_ok(df[col.name], col.kind):
            raise ContractError(f"{contract.section} table {name!r} column {col.name!r} has dtype "
                                f"{df[col.name].dtype}, the contract says {col.kind}")
    if not spec.extra_columns:
        extra = sorted(set(df.columns) - {c.name for c in spec.columns})
        if extra:
            raise ContractError(f"{contract.section} table {name!r} has undeclared column(s) {', '.join(extra)}")


def check_file(contract: AuditContract | None, name: str) -> None:
    """Raise :class:`ContractError` when ``name`` is not one of the contract's declared files."""
    if contract is not None and name not in contract.files:
        raise ContractError(f"audit {contract.section!r} declares no file {name!r}; declared: "
                            f"{', '.join(contract.files) or 'none'} (add it to its AuditContract)")


_JSON_KINDS = {"int": (int,), "float": (int, float), "number": (int, float), "bool": (bool,),
               "str": (str,), "list": (list, tuple), "dict": (dict,)}


def check_summary(contract: AuditContract | None, values: dict[str, Any]) -> None:
    """Raise :class:`ContractError` for an undeclared summary key or a value of the wrong kind.

    ``None`` (a figure that could not be measured) is always allowed.
    """
    if contract is None:
        return
    declared = {k.name: k for k in contract.summary}
    for key, value in values.items():
        if key not in declared:
            raise ContractError(f"{contract.section} summary key {key!r} is not declared in its contract")
        kinds = _JSON_KINDS.get(declared[key].kind)
        if value is None or kinds is None:
            continue
        if declared[key].kind in ("int", "float", "number") and isinstance(value, bool):
            raise ContractError(f"{contract.section} summary {key!r} is a bool, the contract says {declared[key].kind}")
        if declared[key].kind in ("float", "number"):
            try:
                float(value)
                continue
            except (TypeError, ValueError):
                pass
        if declared[key].kind == "int" and hasattr(value, "__index__"):
            continue
        if declared[key].kind == "bool" and type(value).__name__ == "bool_":
            continue
        if declared[key].kind == "str" and isinstance(value, str):
            continue
        if not isinstance(value, kinds):
            raise ContractError(f"{contract.section} summary {key!r} is {type(value).__name__}, "
                                f"the contract says {declared[key].kind}")


def check_folder(path, contracts: Iterable[AuditContract]) -> list[str]:
    """Problems with a finished run folder against ``contracts`` (empty list = conforms).

    Checks every declared table present in the folder (CSV and Parquet both), every summary
    section and its required keys.
    """
    import json
    from pathlib import Path

    path = Path(path)
    problems: list[str] = []
    summary = json.loads((path / "summary.json").read_text()) if (path / "summary.json").is_file() else {}
    manifest = json.loads((path / "manifest.json").read_text())
    for contract in contracts:
        section = summary.get(contract.section)
        if not isinstance(section, dict):
            problems.append(f"summary.json has no {contract.section!r} section")
            continue
        for key in contract.summary:
            if key.required and key.name not in section:
                problems.append(f"summary {contract.section}.{key.name} is missing")
        try:
            check_summary(contract, section)
        except ContractError as err:
            problems.append(str(err))
        if contract.section not in (manifest.get("configs") or {}):
            problems.append(f"manifest.json has no configs[{contract.section!r}]")
        for spec in contract.tables:
            csv, pq = path / f"{spec.name}.csv", path / f"{spec.name}.parquet"
            if not csv.is_file():
                continue
            if not pq.is_file():
                problems.append(f"{spec.name}.csv has no Parquet twin")
                continue
            try:
                check_table(contract, spec.name, pd.read_parquet(pq))
            except ContractError as err:
                problems.append(str(err))
    return problems


# -- the shipped audits' contracts ----------------------------------------------------------------

NEURONS = AuditContract(
    "neurons",
    doc="Neuron discovery: streaming top-k scan, SoftWPMI labels, multimodality, feature vis, attribution.",
    tables=(
        TableSpec("neurons", _c(
            "neuron:int layer:str mean:float std:float max:number label:str? label_score:float? labels:str? "
            "concept:any? image_response:number? word_response:number? multimodal_score:number? "
            "is_multimodal:bool? multimodal_concept:any? featvis:str? top_images:str? attribution:str? "
            "drawing_response:number? drawing_z:number? is_multimodal_drawing:bool?"),
            "one row per neuron of the layer; image paths are relative to the run folder ('' when not rendered)",
            key=("neuron",)),
        TableSpec("neuron_top_images", _c("neuron:int rank:int id:str activation:float"),
                  "the k images that excite each neuron most (+ the source's metadata columns)",
                  key=("neuron", "rank")),
        TableSpec("neuron_quantile_images", _c("neuron:int quantile:float value:float id:str activation:float"),
                  "per neuron and quantile of its activations over a fixed sample (--profile-n): the sample image "
                  "closest to it", key=("neuron", "quantile")),
        TableSpec("neuron_text_directions", _c("neuron:int e0:float"),
                  "per neuron: its direction in the joint space (normalised mean embedding of its top images; "
                  "columns e0..e{D-1}), for search by embedding", key=("neuron",)),
        TableSpec("neuron_histogram", _c("neuron:int bin_low:float bin_high:float count:int"),
                  "per neuron: activation histogram over the same sample"),
        TableSpec("neuron_text_features", _c("neuron:int rank:int word:str activation:float"),
                  "per neuron: the concept words that excite it most when written on plain backgrounds",
                  key=("neuron", "rank")),
        TableSpec("ablation", _c("concept:str neurons:str measure:str before:float after:float delta:float "
                                 "other_delta:float"),
                  "causal check (with --ablate): accuracy / typographic success before and after ablation"),
        TableSpec("attribution_convergence", _c("neuron:int delta:float"),
                  "integrated-gradients completeness error per attributed neuron (when written)"),
    ),
    summary=(
        SummaryKey("layer", "str", "resolved layer path", True),
        SummaryKey("layout", "str", "nchw | nld | lnd"),
        SummaryKey("n_neurons", "int", "neurons in the layer", True),
        SummaryKey("n_images", "int", "probe images scanned", True),
        SummaryKey("n_skipped", "int", "probe images that could not be decoded"),
        SummaryKey("n_concepts", "int", "concepts offered to SoftWPMI"),
        SummaryKey("label_accuracy", "float", "sources with a label column: share of class-dominated neurons labelled with their class"),
        SummaryKey("n_class_dominated", "int", "sources with a label column: neurons whose top images are mostly one class"),
        SummaryKey("n_multimodal", "int", "neurons that respond to a concept's pictures and written word"),
        SummaryKey("multimodal_concepts", "dict", "concept -> multimodal neurons"),
        SummaryKey("n_multimodal_drawing", "int", "models that can draw their concepts (toy): multimodal neurons whose "
                   "concept also stands out on outline drawings (photo, drawing and word)"),
        SummaryKey("n_checkable_concepts", "int", "concepts with both pictures and words"),
        SummaryKey("top", "list", "neurons rendered", True),
        SummaryKey("n_rendered", "int", "feature visualisations rendered"),
        SummaryKey("steps", "int", "feature-visualisation steps"),
        SummaryKey("ablation", "str", "zero | mean"),
        SummaryKey("ablation_concept_delta", "float", "mean accuracy change of the ablated concept"),
        SummaryKey("ablation_other_delta", "float", "mean accuracy change of the other concepts"),
        SummaryKey("sample_size_warning", "str", "set when the probe set is too small to judge"),
        SummaryKey("attribution_max_rel_delta", "float", "largest IG completeness error relative to the attribution sum"),
    ),
    images=("featvis_<neuron>", "top_<neuron>", "attr_<neuron>"),
)

TYPOGRAPHIC = AuditContract(
    "typographic",
    doc="Typographic attack: write a target word on every image and measure success and flips.",
    tables=(
        TableSpec("typographic_images", _c(
            "id:str true_class:str pred_clean:str pred_attacked:str p_true_clean:number p_true_attacked:number "
            "p_target_clean:number p_target_attacked:number success:bool flipped:bool excluded:bool"),
            "one row per image (+ the render parameters); excluded = the image's true class is the target",
            key=("id",), exclude="excluded"),
        TableSpec("typographic_by_class", _c(f"class:str {_RATE_CI} attack_success_rate:float flip_rate:float"),
                  "success per true class with its 95% interval"),
        TableSpec("typographic_sweep", _c(f"{_RATE_CI} attack_success_rate:float"),
                  "one row per cell of the --sweep grid (+ the swept parameters)"),
        TableSpec("typographic_dose", _c(f"param:str value:any {_RATE_CI} attack_success_rate:float"),
                  "--sweep: success against each swept parameter alone (marginal dose-response)"),
        TableSpec("typographic_words", _c("word:str attack_success_rate:float"),
                  "--search-words: candidate words ranked by how often they win"),
    ),
    summary=tuple(SummaryKey(k, kind, doc, req) for k, kind, doc, req in (
        ("target", "str", "the class the written word names", True),
        ("word", "str", "the word written", False),
        ("n_images", "int", "images attacked", True),
        ("n_excluded", "int", "images whose true class is the target (not in the denominator)", False),
        ("n_skipped", "int", "images that could not be decoded", False),
        ("attack_success_rate", "float", "share of non-target images predicted as the target", True),
        ("attack_success_ci", "list", "95% interval", False),
        ("flip_rate", "float", "share whose prediction changed", False),
        ("flip_rate_ci", "list", "95% interval", False),
        ("true_prob_drop", "float", "mean drop in the true class's probability", False),
        ("true_prob_drop_ci", "list", "95% bootstrap interval", False),
        ("target_prob_rise", "float", "mean rise in the target's probability", False),
        ("target_prob_rise_ci", "list", "95% bootstrap interval", False),
        ("clean_accuracy", "float", "zero-shot accuracy without the word", False),
        ("attacked_accuracy", "float", "zero-shot accuracy with the word", False),
        ("target_added", "bool", "the target was not a class and was added", False),
        ("final_text_size", "any", "text size used", False),
        ("text_area", "float", "share of the image the text covers", False),
        ("style", "dict", "the renderer's settings (style, size, colour, opacity, position, ...)", False),
        ("sweep_cells", "int", "--sweep: grid cells rendered", False),
        ("sweep_spearman", "dict", "--sweep: parameter -> Spearman rho of success against its value", False),
        ("best_words", "list", "--search-words: the five words that win most often", False),
        ("best_word_by_class", "dict", "--search-words: true class -> its best word", False),
        ("words_searched", "int", "--search-words: candidate words tried", False),
        ("words_skipped", "list", "--search-words: words the font cannot draw", False),
        ("classes", "int", "number of zero-shot classes", False),
        ("true_class_from", "str", "where the true labels came from", False),
        ("example_ids", "list", "images shown in the example figure", False),
        ("random_init", "bool", "the model has random-init weights", False),
        ("non_latin_checked", "bool", "word search included non-Latin words", False),
        ("sample_size_warning", "str", "set when the sample is too small to judge", False),
    )),
    images=("typographic_examples", "typographic_dose"),
)

ADVERSARIAL = AuditContract(
    "adversarial",
    doc="Gradient attacks (FGSM, PGD, APGD) against the zero-shot head or an embedding.",
    tables=(
        TableSpec("adversarial_images", _c(
            "id:str true_class:str pred_clean:str pred_adv:str correct_clean:bool correct_adv:bool success:bool "
            "eps:float norm:float"),
            "one row per image and eps", key=("id", "eps")),
        TableSpec("adversarial_curve", _c(f"eps:float {_RATE_CI} clean_accuracy:float robust_accuracy:float "
                                          "attack_success_rate:float"),
                  "robust accuracy against eps with its 95% interval"),
        TableSpec("adversarial_by_class", _c(f"class:str {_RATE_CI} clean_accuracy:float robust_accuracy:float"),
                  "robust accuracy per true class"),
        TableSpec("adversarial_sanity", _c("check:str passed:bool detail:str"),
                  "checks that catch gradient masking and broken attacks"),
        TableSpec("adversarial_ensemble", _c(f"eps:float attack:str stage:int {_RATE_CI} robust_accuracy:float "
                                             "broken_first:int robust_accuracy_alone:float?"),
                  "--protocol: robust accuracy after each attack of the sequence, then the worst case"),
        TableSpec("adversarial_masking", _c("check:str flagged:bool detail:str"),
                  "--protocol: gradient-masking checks (gradients vanish, Square beats gradients, huge eps fails)"),
        TableSpec("adversarial_robust_clip", _c("model:str clean:float"),
                  "--protocol robust-clip: clean and robust zero-shot accuracy (%) per budget, one row"),
    ),
    summary=tuple(SummaryKey(k, kind, doc, req) for k, kind, doc, req in (
        ("attack", "str", "fgsm | pgd | apgd", True),
        ("norm", "str", "linf | l2", True),
        ("eps", "float", "budget in pixel units ([0,1] scale)", True),
        ("steps", "int", "gradient steps", False),
        ("step_size", "float", "step size in pixel units", False),
        ("restarts", "int", "random restarts", False),
        ("random_start", "bool", "PGD starts from a random point in the ball", False),
        ("mode", "str", "classifier | embedding", False),
        ("target", "str", "embedding mode: the target text", False),
        ("target_added", "bool", "the target was added as a class", False),
        ("n_images", "int", "images attacked", True),
        ("n_skipped", "int", "images that could not be decoded", False),
        ("n_classes", "int", "zero-shot classes", False),
        ("n_attack_eligible", "int", "images correctly classified before the attack", False),
        ("labels_known", "bool", "true labels came from the source", False),
        ("clean_accuracy", "float", "zero-shot accuracy without perturbation", True),
        ("robust_accuracy", "float", "zero-shot accuracy under attack at eps", True),
        ("robust_accuracy_ci", "list", "95% interval", False),
        ("attack_success_rate", "float", "share of correct images the attack broke", False),
        ("attack_success_ci", "list", "95% interval", False),
        ("mean_norm", "float", "mean perturbation norm", False),
        ("max_norm", "float", "largest perturbation norm", False),
        ("eps_sweep", "list", "budgets of the robust-accuracy curve", False),
        ("gradient_steps_per_image", "number", "gradient evaluations per image", False),
        ("transfer_model", "str", "--transfer-to: the second model classifying the adversarial images", False),
        ("transfer_clean_accuracy", "float", "--transfer-to: its clean accuracy", False),
        ("transfer_robust_accuracy", "float", "--transfer-to: its accuracy on these adversarial images", False),
        ("sanity_passed", "bool", "every sanity check passed", False),
        ("sanity_failed", "list", "names of failed checks", False),
        ("sample_size_warning", "str", "set when the sample is too small to judge", False),
        ("bpda", "bool", "gradients through the input stage as the identity (BPDA)", False),
        ("eot", "int", "gradient samples averaged per step (EOT)", False),
        ("protocol", "str", "autoattack | robust-clip: worst case over the ensemble", False),
        ("ensemble", "list", "--protocol: the attacks, in order", False),
        ("n_targets", "int", "--protocol: APGD-T target classes", False),
        ("queries", "int", "--protocol: Square queries per image", False),
        ("robust_accuracy_by_eps", "dict", "--protocol: worst-case robust accuracy per budget", False),
        ("masking_suspected", "bool", "--protocol: a gradient-masking check flagged", False),
        ("masking_flags", "list", "--protocol: the flagged checks", False),
        ("passes_per_image", "dict", "--protocol: forward(+backward) passes per image, per eps and attack", False),
        ("skipped_attacks", "dict", "--protocol: attacks that could not run, and why", False),
    )),
    images=("adversarial_examples",),
)

_GROUP_RATES = ("attribute:str group:str n:int n_harmful:int rate:float ci_low:float ci_high:float p:float "
                "p_holm:float p_bh:float")

BIAS = AuditContract(
    "bias",
    doc="Demographic bias probes: harmful labels per group, label-set sensitivity, retrieval skew, WEAT.",
    tables=(
        TableSpec("bias_predictions", _c("id:str pred:str harmful:bool"),
                  "one row per image: the group attributes, the zero-shot label and whether it is harmful",
                  key=("id",)),
        TableSpec("bias_denigration", _c(_GROUP_RATES), "harmful-label rate per group vs the rest"),
        TableSpec("bias_intersectional", _c(_GROUP_RATES), "the same for intersections of attributes"),
        TableSpec("bias_label_sensitivity", _c("attribute:str group:str rate_base:float rate_extended:float "
                                               "delta:float"),
                  "group rates before and after neutral classes are added"),
        TableSpec("bias_skew", _c("prompt:str k:int max_skew:float ndkl:float"),
                  "retrieval skew per prompt (MaxSkew@k, NDKL) with CIs"),
        TableSpec("bias_weat", _c("test:str kind:str d:float p:float p_holm:float p_bh:float"),
                  "image and text WEAT effect sizes with permutation p-values"),
    ),
    summary=tuple(SummaryKey(k, kind, doc, req) for k, kind, doc, req in (
        ("dataset", "str", "dataset spec", True),
        ("layout", "str", "toy | fairface | utkface | csv", False),
        ("dataset_hash", "str", "hash of the image list", False),
        ("model_hash", "str", "weights hash", False),
        ("n_images", "int", "images scored", True),
        ("n_skipped", "int", "images that could not be decoded", False),
        ("attributes", "list", "group attributes", False),
        ("probes", "list", "probes run", False),
        ("label_set", "dict", "the label set: name, classes, harmful classes, templates", False),
        ("added_classes", "list", "neutral classes added for label-set sensitivity", False),
        ("alpha", "float", "significance level", False),
        ("bootstrap", "int", "bootstrap resamples", False),
        ("permutations", "int", "permutation-test draws", False),
        ("k", "int", "retrieval depth", False),
        ("seed", "int", "seed", False),
        ("target", "any", "retrieval target", False),
        ("scope_note", "str", "what the probe is not", False),
        ("flagged", "list", "attribute=group with adjusted p < alpha", False),
        ("flagged_intersectional", "list", "intersections flagged", False),
        ("flagged_notes", "dict", "group -> a sentence explaining the flag", False),
        ("harmful_rate_ratio", "float", "highest / lowest group harmful-label rate", False),
        ("harmful_rate_ratio_ci", "list", "95% interval", False),
        ("harmful_rate_ratio_attribute", "str", "attribute of the ratio", False),
        ("harmful_rate_ratio_group", "str", "group with the highest rate", False),
        ("harmful_rate_ratio_p_holm", "float", "Holm-adjusted p", False),
        ("max_harmful_rate", "float", "highest group harmful-label rate", False),
        ("max_harmful_rate_ci", "list", "95% interval", False),
        ("max_harmful_rate_group", "str", "its group", False),
        ("max_label_set_shift", "float", "largest change when neutral classes are added", False),
        ("max_label_set_shift_group", "str", "its group", False),
        ("max_skew", "float", "MaxSkew@k (mean over prompts)", False),
        ("max_skew_attribute", "str", "its attribute", False),
        ("max_skew_k", "int", "its k", False),
        ("max_skew_prompt", "str", "its prompt", False),
        ("weat_d", "float", "largest WEAT effect size", False),
        ("weat_p", "float", "its permutation p (two-sided)", False),
        ("weat_p_one_sided", "float", "its one-sided permutation p (Caliskan et al.)", False),
        ("weat_test", "str", "its test", False),
        ("sample_size_warning", "str", "set when the sample is too small to judge", False),
    )),
)

SHIPPED: dict[str, AuditContract] = {c.section: c for c in (NEURONS, TYPOGRAPHIC, ADVERSARIAL, BIAS)}


# -- documentation -----------------------------------------------------------------------------

_PREAMBLE = """# Run folders: the contract between audits and readers

Generated from `clipaudit/contract.py` by `python -m clipaudit.contract > docs/run-folders.md`;
a test fails when this file and the contract disagree. Every audit writes through one
`clipaudit.sink.ResultSink`, which checks each table and summary value against this contract as it
is written (atomically: a reader sees the old file or the whole new one). The dashboard,
`clipaudit diff` and the reports read only what is declared here.

Common files: `manifest.json` (command_line, model{{name, pretrained, random_init, arch, image_size,
weights_hash, precision, device, preprocess}}, seed, `configs[<audit>]` (each audit's config, enough
to rerun it), `audits`, versions, started, finished, status), `summary.json` (one section per audit),
`{skipped}.csv` ({skipped_cols}) when inputs could not be decoded, `images/*.png`. Every table is
`<name>.csv` + `<name>.parquet`; `id` columns are image ids from the source. Columns marked
*optional* may be absent; audits may add columns beyond those listed (source metadata, parameters).
"""


def render_markdown(contracts: Iterable[AuditContract] | None = None) -> str:
    """``docs/run-folders.md`` from the contracts (default: every registered audit's)."""
    if contracts is None:
        contracts = all_contracts()
    out = [_PREAMBLE.format(skipped=SKIPPED.name, skipped_cols=", ".join(c.name for c in SKIPPED.columns))]
    for contract in contracts:
        out.append(f"\n## {contract.section}  (summary section `{contract.section}`)\n")
        if contract.doc:
            out.append(f"{contract.doc}\n")
        out.append("\nSummary keys (**bold** = always present):\n")
        for key in contract.summary:
            name = f"**{key.name}**" if key.required else key.name
            out.append(f"- {name} ({key.kind}): {key.doc}")
        for spec in contract.tables:
            cols = ", ".join(f"{c.name} ({c.kind}{'' if c.required else ', optional'})" for c in spec.columns)
            keyed = f" Key: {', '.join(spec.key)}." if spec.key else ""
            out.append(f"\n`{spec.name}`: {spec.doc}.{keyed}\n- columns: {cols}")
        if contract.images:
            out.append("\nImages: " + ", ".join(f"`images/{i}.png`" for i in contract.images))
        if contract.files:
            out.append("\nFiles: " + ", ".join(f"`{f}`" for f in contract.files))
    return "\n".join(out).rstrip() + "\n"


def all_contracts() -> list[AuditContract]:
    from clipaudit.audits import AUDITS

    return [a.contract for a in AUDITS.values()]


__all__ = ["AuditContract", "Column", "ContractError", "SKIPPED", "SHIPPED", "SummaryKey", "TableSpec",
           "all_contracts", "check_folder", "check_summary", "check_table", "render_markdown"]


if __name__ == "__main__":  # pragma: no cover
    print(render_markdown(), end="")
