"""Architectures of the toy CLIP variants, as open_clip model configs (``model_configs/*.json``).

Why open_clip's own registry: the toys are real open_clip ``CLIP`` modules, so registering their
configs with :func:`open_clip.add_model_config` makes ``open_clip.create_model("toy-rn")``,
``open_clip.get_tokenizer("toy-rn")`` (context length 16) and clipaudit's loader treat them like
any other architecture: no special-cased loading path, and loading never imports the training
loop. Sizes are chosen so each variant trains on 2 CPU cores within an hour.
"""
from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "model_configs"
CONTEXT_LENGTH = 16
#: model names that stand for a toy variant (``--model toy``)
TOY_ALIASES = {"toy": "toy-rn"}
#: variants that reuse an architecture: name -> (architecture, what differs). ``toy-fare`` has its
#: own weights (FARE adversarial fine-tune of toy-rn's image tower, :mod:`clipaudit.toy.fare`);
#: ``toy-masked`` is toy-rn behind a non-differentiable input stage (fake robustness,
#: :class:`clipaudit.toy.masked.QuantizedInput`).
TOY_VARIANTS: dict[str, tuple[str, str]] = {"toy-fare": ("toy-rn", "weights"), "toy-masked": ("toy-rn", "input_stage")}


@lru_cache(maxsize=1)
def _configs() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(CONFIG_DIR.glob("*.json"))}


def __getattr__(name: str):
    if name == "TOY_CONFIGS":
        return copy.deepcopy(_configs())
    raise AttributeError(name)


def architectures() -> list[str]:
    """The toy architectures (open_clip model-config names)."""
    return sorted(_configs())


def toy_names() -> list[str]:
    """Architectures, variants (``toy-fare``, ``toy-masked``) and aliases (``toy``)."""
    return architectures() + sorted(TOY_VARIANTS) + sorted(TOY_ALIASES)


def get_toy_config(name: str) -> dict:
    """A copy of the config for ``name`` (``toy`` resolves to the default variant)."""
    name = TOY_ALIASES.get(name, name)
    name = TOY_VARIANTS.get(name, (name, ""))[0]
    if name not in _configs():
        raise ValueError(f"unknown toy model {name!r}; valid: {', '.join(toy_names())}")
    return copy.deepcopy(_configs()[name])


def canonical_toy_name(name: str) -> str:
    get_toy_config(name)
    return TOY_ALIASES.get(name, name)


@lru_cache(maxsize=1)
def register_with_open_clip() -> None:
    """Add the toy configs to open_clip's model-config registry (once per process)."""
    import open_clip

    if not set(_configs()) <= set(open_clip.list_models()):
        open_clip.add_model_config(CONFIG_DIR)
