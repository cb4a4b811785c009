"""clipaudit: interpretability and safety audits for CLIP models.

The core lives here (model loading, hooks, data sources, run folders, statistics, model card);
the audits live in ``clipaudit.probes``, ``clipaudit.attacks``, ``clipaudit.bias`` and the
dashboard in ``clipaudit.dashboard``.
"""
from clipaudit.audits import AUDITS, Audit
from clipaudit.data import ImageSource, csv_source, folder_source, load_image, open_source, toy_source
from clipaudit.errors import ClipauditError
from clipaudit.hooks import (ActivationCache, Layer, ablate, capture, list_layers, neurons, patch, resolve_layer,
                             run_with_cache)
from clipaudit.model import AuditModel, ZeroShotHead, load_model
from clipaudit.result import Result
from clipaudit.runner import run_audit
from clipaudit.runs import RunFolder, list_runs, open_run
from clipaudit.sink import ResultSink

__all__ = [
    "AUDITS", "Audit", "ResultSink", "run_audit",
    "ActivationCache", "AuditModel", "ClipauditError", "ImageSource", "Layer", "Result", "RunFolder", "ZeroShotHead",
    "ablate", "capture", "csv_source", "folder_source", "list_layers", "load_image", "load_model",
    "neurons", "open_run", "open_source", "list_runs", "patch", "resolve_layer", "run_with_cache",
    "toy_source",
]
