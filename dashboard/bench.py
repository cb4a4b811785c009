"""The live bench's computations: decode an upload safely, draw a toy scene, write a word on it,
and read the model's zero-shot probabilities, its most active units, and the effect of ablating
one unit. Only used when the dashboard is started with ``--model``; the rest of the dashboard
never runs a model.

Uploads are decoded in memory (never written to disk), refused above :data:`MAX_UPLOAD_BYTES`
bytes or :data:`MAX_PIXELS` pixels (a decompression bomb: a small file that decodes to a huge
image), and refused when Pillow cannot read them as an image.
"""
from __future__ import annotations

import base64
import binascii
import io
import warnings
from dataclasses import dataclass

import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from clipaudit.errors import ClipauditError

__all__ = ["MAX_UPLOAD_BYTES", "MAX_PIXELS", "Bench", "decode_upload", "scene_image", "image_data_url"]

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 40_000_000  # about 6,300 x 6,300; far beyond what a CLIP input needs


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def decode_upload(contents: str | None, filename: str | None = None) -> Image.Image:
    """A ``dcc.Upload`` data URL -> an RGB PIL image, decoded in memory.

    Raises:
        ValueError: not a base64 data URL, over 50 MB, not an image Pillow can read, or more than
            :data:`MAX_PIXELS` pixels (one line naming the file and the limit).
    """
    name = repr(filename) if filename else "the upload"
    if not isinstance(contents, str) or not contents.startswith("data:") or ";base64," not in contents[:200]:
        raise ValueError(f"{name} did not arrive as a file; choose an image file (PNG, JPEG, WebP ...)")
    data = contents.split(",", 1)[1]
    if len(data) * 3 // 4 > MAX_UPLOAD_BYTES:
        raise ValueError(f"{name} is {_mb(len(data) * 3 // 4)}; the limit is {_mb(MAX_UPLOAD_BYTES)}")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name} is not valid base64 data; upload the file again") from None
    if len(raw) > MAX_UPLOAD_BYTES:
        raise ValueError(f"{name} is {_mb(len(raw))}; the limit is {_mb(MAX_UPLOAD_BYTES)}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(raw))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ValueError(f"{name} is {w}x{h} pixels ({w * h / 1e6:.0f} megapixels), over the limit of "
                                 f"{MAX_PIXELS / 1e6:.0f}; refused as a possible decompression bomb")
            img.load()
            return img.convert("RGB")
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValueError(f"{name} decodes to too many pixels; refused as a possible decompression bomb") from None
        except UnidentifiedImageError:
            raise ValueError(f"{name} is not an image Pillow can read; upload a PNG, JPEG, WebP, GIF or BMP "
                             "file") from None
        except (OSError, SyntaxError) as err:
            raise ValueError(f"{name} is a damaged image ({' '.join(str(err).split())[:120]})") from None


def scene_image(label: str, index: int = 0, seed: int = 0) -> Image.Image:
    """Toy-world object scene number ``index`` showing a ``label``, with no word written on it."""
    from clipaudit.toy.world import OBJECT_CLASSES, World

    if label not in OBJECT_CLASSES:
        raise ValueError(f"unknown toy scene {label!r}; scenes: {', '.join(OBJECT_CLASSES)}")
    return Image.fromarray(World(seed=seed).scene(int(index), "object", label=label, text=False).image)


def image_data_url(pixels: torch.Tensor) -> str:
    """(1,3,S,S) pixels in [0,1] -> a PNG data URL (for an <img> on the page)."""
    arr = (pixels[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@dataclass
class Bench:
    """A model, its zero-shot classes and the layer whose units the bench shows and ablates.

    Args:
        model: an :class:`~clipaudit.model.AuditModel`.
        classes: zero-shot class names (default: :func:`clipaudit.zeroshot.default_classes`).
        layer: a layer name or alias (default ``penultimate``, the neurons audit's default).
    """

    model: object
    classes: list[str] | None = None
    layer: str = "penultimate"

    def __post_init__(self) -> None:
        from clipaudit.hooks import resolve_layer
        from clipaudit.zeroshot import default_classes

        self.classes = list(self.classes or default_classes(self.model))
        self.head = self.model.classifier(self.classes)
        self.resolved = resolve_layer(self.model, self.layer)

    @property
    def n_units(self) -> int:
        return int(self.resolved.n_neurons)

    def pixels(self, image: Image.Image) -> torch.Tensor:
        return self.model.to_pixels(image)

    def write_word(self, pixels: torch.Tensor, word: str, size: int | None = None, position: str = "center",
                   style: str = "note") -> torch.Tensor:
        """``pixels`` with ``word`` drawn by the typographic renderer.

        Raises:
            ValueError: characters the font has no glyph for, or a bad option (one line).
        """
        from clipaudit.attacks.typographic import TextStyle, missing_glyphs, render

        missing = missing_glyphs(word)
        if missing:
            raise ValueError(f"the font has no glyph for {', '.join(repr(c) for c in missing)} in {word!r}; "
                             "write the word in Latin letters (Pillow's bundled font)")
        try:
            return render(pixels, word, TextStyle(style=style, size=size, position=position)).pixels
        except ClipauditError as err:
            raise ValueError(str(err).replace("--target", "a word")) from None

    @torch.no_grad()
    def probs(self, pixels: torch.Tensor, ablate: int | None = None, value: float = 0.0) -> pd.Series:
        """Zero-shot probabilities per class (softmax of the head's logits), optionally with unit
        ``ablate`` of the layer clamped to ``value`` (0: ablated; :func:`clipaudit.hooks.ablate`)."""
        from contextlib import nullcontext

        from clipaudit.hooks import ablate as ablate_units

        ctx = ablate_units(self.model, self.resolved, [int(ablate)], float(value)) if ablate is not None \
            else nullcontext()
        with ctx:
            logits = self.head(pixels.to(self.model.device))
        return pd.Series(torch.softmax(logits.float(), dim=-1)[0].cpu().numpy(), index=self.classes)

    @torch.no_grad()
    def top_units(self, pixels: torch.Tensor, k: int = 10) -> pd.DataFrame:
        """The ``k`` units of the layer most active on the image (token-mean for ViTs)."""
        from clipaudit.hooks import neurons, run_with_cache

        _, cache = run_with_cache(self.model, pixels, [self.resolved])
        act = neurons(cache[self.resolved.path], self.resolved.layout)[0].float().cpu()
        top = torch.topk(act, min(k, act.numel()))
        return pd.DataFrame({"unit": top.indices.tolist(), "activation": top.values.tolist()})

    @torch.no_grad()
    def top_heads(self, pixels: torch.Tensor, k: int = 5) -> pd.DataFrame | None:
        """The ``k`` attention heads contributing most directly to the predicted class's logit
        (direct logit attribution of the exact residual decomposition,
        :func:`clipaudit.probes.decompose.decompose`): layer, head, contribution, predicted; None
        for a vision tower without readable heads."""
        from clipaudit.errors import ClipauditError
        from clipaudit.probes.decompose import decompose, project

        try:
            d = decompose(self.model, pixels.to(self.model.device))
        except ClipauditError:
            return None
        logits = project(d.heads, d, self.head.weights.float(), self.model.logit_scale)[0]  # (L, H, C)
        pred = int(self.head(pixels.to(self.model.device)).argmax(-1)[0])
        contrib = logits[..., pred]
        flat = contrib.flatten()
        top = torch.topk(flat, min(k, flat.numel()))
        n_h = contrib.shape[1]
        return pd.DataFrame({"layer": [int(i) // n_h for i in top.indices], "head": [int(i) % n_h for i in top.indices],
                             "contribution": top.values.float().tolist(), "predicted": self.classes[pred]})

    @staticmethod
    def check_value(value: float | str | None) -> float:
        """The clamp value (empty: 0, i.e. ablation); ValueError unless a finite number within +-1e4."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return 0.0
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"the clamp value must be a number, got {value!r}") from None
        if not abs(v) <= 1e4:  # NaN fails too
            raise ValueError(f"the clamp value must be a finite number within +-10000, got {value!r}")
        return v

    def check_unit(self, unit: int | str | None) -> int | None:
        """A unit index of the layer, or None for none; ValueError when out of range."""
        if unit is None or (isinstance(unit, str) and not unit.strip()):
            return None
        try:
            u = int(unit)
        except (TypeError, ValueError):
            raise ValueError(f"the unit to ablate must be a whole number 0..{self.n_units - 1}, got {unit!r}") from None
        if not 0 <= u < self.n_units:
            raise ValueError(f"unit {u} is not in {self.resolved.path} (units 0..{self.n_units - 1})")
        return u
