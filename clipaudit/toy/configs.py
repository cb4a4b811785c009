"""Architectures of the toy CLIP variants, as data (open_clip's config shape).

Both are real open_clip ``CLIP`` modules, so every code path that serves a real CLIP serves
the toy too. Sizes are chosen so each variant trains on 2 CPU cores within an hour.
"""
from __future__ import annotations

import copy

CONTEXT_LENGTH = 16
_TEXT = {"context_length": CONTEXT_LENGTH, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 3}

TOY_CONFIGS: dict[str, dict] = {
    "toy-vit": {
        "embed_dim": 128,
        "vision_cfg": {"image_size": 64, "layers": 4, "width": 128, "head_width": 32,
                       "mlp_ratio": 4.0, "patch_size": 8},
        "text_cfg": _TEXT,
    },
    "toy-rn": {
        "embed_dim": 128,
        "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "head_width": 32},
        "text_cfg": _TEXT,
    },
}
TOY_ALIASES = {"toy": "toy-rn"}


def toy_names() -> list[str]:
    return sorted(TOY_CONFIGS) + sorted(TOY_ALIASES)


def get_toy_config(name: str) -> dict:
    """A copy of the config for ``name`` (``toy`` resolves to the default variant)."""
    name = TOY_ALIASES.get(name, name)
    if name not in TOY_CONFIGS:
        raise ValueError(f"unknown toy model {name!r}; valid: {', '.join(toy_names())}")
    return copy.deepcopy(TOY_CONFIGS[name])


def canonical_toy_name(name: str) -> str:
    get_toy_config(name)
    return TOY_ALIASES.get(name, name)
