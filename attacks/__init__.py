"""Attacks on CLIP: typographic (words written on images) and adversarial (pixel perturbations).

Importing this package does no work; the adversarial API is re-exported when installed.
"""
from clipaudit.attacks.typographic import (POSITIONS, STYLES, SWEEPABLE, Rendered, TextStyle,
                                           missing_glyphs, render, validate)
from clipaudit.attacks.typographic_audit import TypographicConfig, audit as typographic_audit, parse_sweep

__all__ = ["POSITIONS", "STYLES", "SWEEPABLE", "Rendered", "TextStyle", "TypographicConfig",
           "missing_glyphs", "parse_sweep", "render", "typographic_audit", "validate"]

try:
    import importlib as _importlib

    _adv = _importlib.import_module("clipaudit.attacks._adversarial_api")
    globals().update({_name: getattr(_adv, _name) for _name in getattr(_adv, "__all__", [])})
    __all__ += list(getattr(_adv, "__all__", []))
except ModuleNotFoundError as _err:  # not written yet / not installed; real import bugs still raise
    if _err.name != "clipaudit.attacks._adversarial_api":
        raise
