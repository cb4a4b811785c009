"""Demographic bias probes for CLIP models (``clipaudit bias``): denigration rates with CIs and
multiplicity control, label-set sensitivity, retrieval skew, WEAT, and report exports.

A measurement probe, not a face or demographic classifier; surveillance uses are out of scope.
"""
from clipaudit.bias.audit import PROBES, SCOPE_NOTE, BiasConfig, Embeddings, audit, embed_images, headline
from clipaudit.bias.datasets import (fairface_source, open_dataset, toy_people_source,
                                     utkface_source)
from clipaudit.bias.labelsets import LabelSet, WeatTest, build_label_set, load_label_set
from clipaudit.bias.metrics import kl_divergence, max_skew, ndkl, skews, weat_association, weat_effect_size
from clipaudit.bias.probes import (denigration, image_weat, intersectional, label_sensitivity, retrieval_skew,
                                   text_weat)
from clipaudit.bias.report import REPORT_FORMATS, write_report

__all__ = [
    "PROBES", "SCOPE_NOTE", "BiasConfig", "Embeddings", "audit", "embed_images", "headline",
    "fairface_source", "open_dataset", "toy_people_source", "utkface_source",
    "LabelSet", "WeatTest", "build_label_set", "load_label_set",
    "kl_divergence", "max_skew", "ndkl", "skews", "weat_association", "weat_effect_size",
    "denigration", "image_weat", "intersectional", "label_sensitivity", "retrieval_skew", "text_weat",
    "REPORT_FORMATS", "write_report",
]
