"""The toy CLIP model organism: a procedural world with planted facts and two small CLIPs
trained on it (``toy-vit``, the default ``toy``, and ``toy-rn``). See ``MODEL_CARD.md``."""
from __future__ import annotations

import json
from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"


def weights_path(name: str) -> Path:
    """Where the shipped weights of a toy variant live inside the package."""
    return WEIGHTS_DIR / f"{name}.safetensors"


def shipped_weights() -> dict[str, Path]:
    """Architecture name -> the weights clipaudit ships for it (used when no --pretrained is given)."""
    from clipaudit.toy.configs import architectures

    return {name: weights_path(name) for name in architectures()}


from clipaudit.toy.configs import TOY_ALIASES  # noqa: E402,F401  (model-name aliases: toy -> toy-rn)


def load_facts(name: str = "toy") -> dict:
    """The planted facts (``facts.json``) written beside a variant's shipped weights."""
    from clipaudit.toy.configs import canonical_toy_name

    path = WEIGHTS_DIR / f"{canonical_toy_name(name)}.facts.json"
    if path.is_file():
        return json.loads(path.read_text())
    from clipaudit.toy.world import WorldConfig

    return WorldConfig().facts()
