"""Neuron probes: streaming scan, SoftWPMI labels, multimodality, feature visualisation,
attribution and ablation, tied together by :func:`audit` (``clipaudit neurons``)."""
from clipaudit.probes.ablation import ablation_check
from clipaudit.probes.attribution import attribute, overlay
from clipaudit.probes.audit import NeuronsConfig, audit
from clipaudit.probes.featvis import (FeatVisConfig, Objective, batch_neurons_objective, diversity_objective,
                                      neuron_objective, render)
from clipaudit.probes.labels import (LabelConfig, default_concepts_path, embed_concepts, label_accuracy,
                                     label_scan, read_concepts, soft_wpmi)
from clipaudit.probes.multimodal import (MultimodalConfig, concept_responses, multimodality_table,
                                         rank_multimodal, render_words)
from clipaudit.probes.scan import ScanResult, ScanState, scan

__all__ = [
    "FeatVisConfig", "LabelConfig", "MultimodalConfig", "NeuronsConfig", "Objective", "ScanResult", "ScanState",
    "ablation_check", "attribute", "audit", "batch_neurons_objective", "concept_responses", "default_concepts_path",
    "diversity_objective", "embed_concepts", "label_accuracy", "label_scan",
    "multimodality_table", "neuron_objective", "overlay", "rank_multimodal", "read_concepts", "render",
    "render_words", "scan", "soft_wpmi",
]
