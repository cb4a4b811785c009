"""Draw words onto images at the model's resolution: the typographic attack's renderer.

Why after resizing: CLIP reads text at the pixels it sees, so sizes, positions and the text
area are stated in model pixels and mean the same thing for every input image size. Why an
alpha layer: the text is composited as ``out = pixels * (1 - a) + ink * a``, so wherever the
layer's alpha is 0 the image is untouched bit for bit, and opacity is one multiplication.

Public pieces:

- :class:`TextStyle`: every rendering parameter (style, size, colour, opacity, position,
  repetition, rotation, font); a dataclass whose fields map onto ``clipaudit typographic`` flags.
- :func:`validate`: checks a word and a style before any model work (empty word, unknown font
  or colour, glyphs the font lacks, a word too long for the minimum size).
- :func:`render`: (B,3,S,S) pixels in [0,1] -> attacked pixels + per-image facts (final size,
  text area, position, angle), deterministic by ``seed`` and each image's ``key``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageColor, ImageDraw, ImageFont

from clipaudit.errors import ClipauditError, suggest

STYLES = ("note", "paint")
POSITIONS = ("center", "top", "bottom", "left", "right", "top-left", "top-right",
             "bottom-left", "bottom-right", "random")
REFERENCE_SIZE = 64  # sizes below are for a 64 px model and scale with image_size / 64
DEFAULT_SIZE = 12
MIN_SIZE = 6
NOTE_COLOUR = (250, 240, 150)
_NOTDEF_PROBE = "\U0010FFFD"  # a private-use code point no font maps: renders as .notdef


@dataclass(frozen=True)
class TextStyle:
    """How the word is drawn. Sizes and offsets are in model pixels.

    Attributes:
        style: ``note`` (a light sticky-note box with dark text) or ``paint`` (text straight on
            the image, with an outline in the contrasting colour when ``outline``).
        size: font size in model pixels; None = 12 px scaled by image_size / 64. The size is
            shrunk (down to 6 px, scaled likewise) until the word fits; the final size is reported.
        color: ink colour (any Pillow colour name or #hex); None = black on a note, white paint.
        opacity: alpha of the whole text layer, 0 (invisible) .. 1 (opaque).
        position: one of :data:`POSITIONS`; ``random`` draws a spot per image from the seed.
        repeat: number of copies, tiled in a grid over the image (position then jitters cells
            only when ``random``).
        rotation: maximum absolute angle in degrees; each image draws its angle uniformly in
            [-rotation, rotation] from the seed (0 = upright).
        font: path to a TTF/OTF font; None = Pillow's bundled font (Latin only).
        outline: draw a 1 px contrasting outline around painted text.
    """

    style: str = "note"
    size: int | None = None
    color: str | None = None
    opacity: float = 1.0
    position: str = "center"
    repeat: int = 1
    rotation: float = 0.0
    font: str | None = None
    outline: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


SWEEPABLE = tuple(f.name for f in fields(TextStyle))


@dataclass
class Rendered:
    """Attacked pixels (B,3,S,S) in [0,1] and one dict of facts per image
    (final_size, text_area in % of the image, x, y, angle)."""

    pixels: torch.Tensor
    facts: list[dict]


# ------------------------------------------------------------------------ validation

@lru_cache(maxsize=128)
def _font(path: str | None, size: int) -> ImageFont.FreeTypeFont:
    if path is None:
        return ImageFont.load_default(size=size)  # type: ignore[return-value]
    return ImageFont.truetype(path, size)


def _check_font(path: str | None) -> None:
    if path is None:
        return
    p = Path(path).expanduser()
    if not p.is_file():
        raise ClipauditError(f"font file {path!r} does not exist; pass a .ttf/.otf path to --font "
                             "or leave it out for Pillow's bundled font")
    try:
        _font(str(p), 12)
    except OSError as err:
        raise ClipauditError(f"cannot load font {path!r} ({err}); pass a TrueType/OpenType (.ttf/.otf) file") from None


def font_name(path: str | None) -> str:
    return "Pillow's bundled font" if path is None else repr(str(path))


def missing_glyphs(word: str, font_path: str | None = None) -> list[str]:
    """Characters of ``word`` the font has no glyph for (it would draw its .notdef box).

    A character is missing when its rendered mask is identical to that of a private-use code
    point no font maps, or when a visible character renders as an empty mask.
    """
    f = _font(font_path, 24)
    notdef = f.getmask(_NOTDEF_PROBE)
    notdef_key = (notdef.size, bytes(np.asarray(notdef).tobytes()))
    missing = []
    for ch in dict.fromkeys(word):
        if ch.isspace():
            continue
        mask = f.getmask(ch)
        key = (mask.size, bytes(np.asarray(mask).tobytes()))
        if key == notdef_key or (ch.isprintable() and np.asarray(mask).size and not np.asarray(mask).any()):
            missing.append(ch)
    return missing


def scaled(px: int, image_size: int) -> int:
    return max(1, int(round(px * image_size / REFERENCE_SIZE)))


def _parse_colour(colour: str) -> tuple[int, int, int]:
    try:
        rgb = ImageColor.getrgb(colour)
    except (ValueError, AttributeError):
        raise ClipauditError(f"unknown colour {colour!r}; use a colour name (red, black, white...) "
                             "or #rrggbb") from None
    return tuple(int(c) for c in rgb[:3])  # type: ignore[return-value]


def check_style(style: TextStyle) -> TextStyle:
    """Raise :class:`ClipauditError` for any parameter out of range; returns ``style``."""
    if style.style not in STYLES:
        raise ClipauditError(f"unknown style {style.style!r}; valid: {', '.join(STYLES)}")
    if style.position not in POSITIONS:
        raise ClipauditError(f"unknown position {style.position!r}{suggest(style.position, POSITIONS)} "
                             f"(valid: {', '.join(POSITIONS)})")
    if not 0.0 <= float(style.opacity) <= 1.0:
        raise ClipauditError(f"opacity must be in [0, 1], got {style.opacity}")
    if int(style.repeat) < 1 or int(style.repeat) > 64:
        raise ClipauditError(f"repeat must be 1..64 copies, got {style.repeat}")
    if style.size is not None and int(style.size) < 1:
        raise ClipauditError(f"size must be a positive number of model pixels, got {style.size}")
    if not 0.0 <= abs(float(style.rotation)) <= 90.0:
        raise ClipauditError(f"rotation must be 0..90 degrees, got {style.rotation}")
    if style.color is not None:
        _parse_colour(style.color)
    _check_font(style.font)
    return style


def validate(word: str, style: TextStyle, image_size: int) -> int:
    """Check ``word`` can be drawn with ``style`` on an ``image_size`` image.

    Cached per (word, style, size): a run renders the same word batch after batch, and the glyph
    check and size fitting would otherwise cost as much as the drawing.

    Returns:
        the final font size the word will be drawn at (after shrinking to fit).

    Raises:
        ClipauditError: empty word, bad parameter, glyphs missing from the font, or a word too
            long to fit at the minimum size.
    """
    if not isinstance(word, str) or not word.strip():
        raise ClipauditError("the word to write is empty; pass a non-empty --target such as pizza")
    return _validated_size(word, style, int(image_size))


@lru_cache(maxsize=1024)
def _validated_size(word: str, style: TextStyle, image_size: int) -> int:
    check_style(style)
    missing = missing_glyphs(word, style.font)
    if missing:
        raise ClipauditError(f"{font_name(style.font)} has no glyphs for {''.join(missing)!r} in {word!r}; "
                             "pass --font PATH to a TTF that covers this script (e.g. a Noto font)")
    return _fit_size(word, style, image_size)


def _cells(repeat: int) -> tuple[int, int]:
    cols = int(math.ceil(math.sqrt(repeat)))
    return cols, int(math.ceil(repeat / cols))


def _fit_size(word: str, style: TextStyle, image_size: int) -> int:
    size = int(style.size) if style.size is not None else scaled(DEFAULT_SIZE, image_size)
    min_size = scaled(MIN_SIZE, image_size)
    cols, rows = _cells(int(style.repeat))
    pad = _pad(image_size)
    avail_w = image_size / cols - 2 * pad - 2
    avail_h = image_size / rows - 2 * pad - 2
    size = max(size, 1)
    while True:
        w, h = _text_box(word, style.font, size)
        if (w <= avail_w and h <= avail_h) or size <= min_size:
            break
        size -= 1
    if w > avail_w or h > avail_h:
        raise ClipauditError(f"{word!r} does not fit on a {image_size} px image even at the minimum size "
                             f"{min_size} px ({w} px wide, {int(avail_w)} px available with repeat "
                             f"{style.repeat}); use a shorter word or fewer copies")
    return size


def _pad(image_size: int) -> int:
    return max(1, int(round(2 * image_size / REFERENCE_SIZE)))


@lru_cache(maxsize=4096)
def _text_box(word: str, font_path: str | None, size: int) -> tuple[int, int]:
    x0, y0, x1, y1 = _font(font_path, size).getbbox(word)
    return int(x1 - x0), int(y1 - y0)


# ------------------------------------------------------------------------- rendering

@lru_cache(maxsize=512)
def _stamp(word: str, style: TextStyle, size: int, image_size: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """One copy of the word as (ink RGB (3,h,w) float, alpha (h,w) float in [0,1]), rotated.

    Channels first, like the pixels it is blended into, so compositing needs no transpose.
    """
    f = _font(style.font, size)
    x0, y0, x1, y1 = f.getbbox(word)
    pad = _pad(image_size)
    stroke = 1 if (style.style == "paint" and style.outline) else 0
    w, h = int(x1 - x0) + 2 * pad + 2 * stroke, int(y1 - y0) + 2 * pad + 2 * stroke
    if style.style == "note":
        ink = _parse_colour(style.color) if style.color else (20, 20, 20)
    else:
        ink = _parse_colour(style.color) if style.color else (255, 255, 255)
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    origin = (pad + stroke - x0, pad + stroke - y0)
    if style.style == "note":
        draw.rectangle((0, 0, w - 1, h - 1), fill=NOTE_COLOUR + (255,))
        draw.text(origin, word, font=f, fill=ink + (255,))
    else:
        outline = (0, 0, 0) if sum(ink) > 384 else (255, 255, 255)
        draw.text(origin, word, font=f, fill=ink + (255,), stroke_width=stroke,
                  stroke_fill=outline + (255,) if stroke else None)
    if angle:
        layer = layer.rotate(angle, resample=Image.BICUBIC, expand=True)
    arr = np.asarray(layer, dtype=np.float32) / 255.0
    return np.ascontiguousarray(arr[..., :3].transpose(2, 0, 1)), arr[..., 3].copy()


_SPOTS = {"center": (0.5, 0.5), "top": (0.5, 0.0), "bottom": (0.5, 1.0), "left": (0.0, 0.5),
          "right": (1.0, 0.5), "top-left": (0.0, 0.0), "top-right": (1.0, 0.0),
          "bottom-left": (0.0, 1.0), "bottom-right": (1.0, 1.0)}


def _layer(word: str, style: TextStyle, size: int, image_size: int, rng: np.random.Generator,
           ink: np.ndarray, alpha: np.ndarray) -> dict:
    """Draw one image's text layer into ``ink`` (3,S,S) and ``alpha`` (S,S) (zeros on entry,
    views into the batch arrays, so nothing per image is allocated); returns its facts."""
    s = image_size
    angle = round(float(rng.uniform(-style.rotation, style.rotation)), 1) if style.rotation else 0.0
    ink_stamp, alpha_stamp = _stamp(word, style, size, s, angle)
    h, w = alpha_stamp.shape
    cols, rows = _cells(int(style.repeat))
    margin = _pad(s)
    first = None
    for k in range(int(style.repeat)):
        cx0, cy0 = (k % cols) * s / cols, (k // cols) * s / rows
        cw, ch = s / cols, s / rows
        if int(style.repeat) == 1 and style.position != "random":
            fx, fy = _SPOTS[style.position]
        elif style.position == "random":
            fx, fy = float(rng.random()), float(rng.random())
        else:
            fx, fy = 0.5, 0.5
        x = int(cx0 + margin + fx * max(0.0, cw - w - 2 * margin) + 0.5)
        y = int(cy0 + margin + fy * max(0.0, ch - h - 2 * margin) + 0.5)
        x, y = min(max(x, 0), max(0, s - w)), min(max(y, 0), max(0, s - h))
        xe, ye = min(s, x + w), min(s, y + h)
        a = alpha_stamp[: ye - y, : xe - x]
        if k == 0:  # nothing under the first copy yet
            ink[:, y:ye, x:xe] = ink_stamp[:, : ye - y, : xe - x]
            alpha[y:ye, x:xe] = a
        else:  # "over" compositing where copies overlap (only rotation makes them touch)
            region = alpha[y:ye, x:xe]
            ink[:, y:ye, x:xe] = ink_stamp[:, : ye - y, : xe - x] * a + ink[:, y:ye, x:xe] * (1 - a)
            alpha[y:ye, x:xe] = a + region * (1 - a)
        first = first or (x, y)
    return {"final_size": size, "x": first[0], "y": first[1], "angle": angle}


def render(pixels: torch.Tensor, word: str, style: TextStyle = TextStyle(), seed: int = 0,
           keys: Sequence[int] | None = None) -> Rendered:
    """Write ``word`` onto every image of a batch.

    Args:
        pixels: (B,3,S,S) floats in [0,1] at the model's resolution.
        word: the text to draw (validated: see :func:`validate`).
        style: rendering parameters.
        seed: run seed; image ``i`` draws its random position/angle from ``(seed, keys[i])``.
        keys: one integer per image, stable across batches (default 0..B-1), so the same image
            gets the same rendering whatever the batch size.

    Returns:
        :class:`Rendered` with pixels (B,3,S,S) in [0,1] on the input's device, and per-image
        facts: final_size, text_area (% of pixels the layer covers), x, y, angle.

    Example:
        >>> out = render(torch.rand(2, 3, 64, 64), "ipod", TextStyle(size=12))
        >>> out.pixels.shape, out.facts[0]["final_size"]
        (torch.Size([2, 3, 64, 64]), 12)
    """
    if pixels.ndim != 4 or pixels.shape[1] != 3 or pixels.shape[2] != pixels.shape[3]:
        raise ValueError(f"pixels must be (B, 3, S, S), got shape {tuple(pixels.shape)}")
    s = int(pixels.shape[-1])
    size = validate(word, style, s)
    b = int(pixels.shape[0])
    keys = list(range(b)) if keys is None else [int(k) for k in keys]
    if len(keys) != b:
        raise ValueError(f"keys must have one entry per image ({b}), got {len(keys)}")
    deterministic = style.position != "random" and not style.rotation
    n_layers = 1 if deterministic else b
    ink = np.zeros((n_layers, 3, s, s), np.float32)
    alpha = np.zeros((n_layers, s, s), np.float32)
    facts = []
    for i, k in enumerate(keys[:n_layers]):
        fact = _layer(word, style, size, s, np.random.default_rng((seed, k)), ink[i], alpha[i])
        facts.append({**fact, "text_area": float(np.count_nonzero(alpha[i]) * 100.0 / (s * s))})
    if deterministic:  # one layer serves the whole batch (broadcast, not copied)
        facts = [dict(facts[0]) for _ in range(b)]
    return Rendered(_composite(pixels, ink, alpha, float(style.opacity)), facts)


def _composite(pixels: torch.Tensor, ink: np.ndarray, alpha: np.ndarray, opacity: float) -> torch.Tensor:
    """Blend the text layers over a copy of ``pixels``, touching only the window the text covers.

    Why a window: text covers a small share of the image, and blending there alone keeps
    rendering a small fraction of a run's time even for tiny, fast models. ``lerp`` with weight
    0 returns the input exactly, so pixels outside the text stay bit-identical.
    """
    out = pixels.clone()
    rows, cols = np.nonzero(alpha.any(axis=0))
    if rows.size == 0:
        return out
    y0, y1, x0, x1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    ink_w = np.ascontiguousarray(ink[:, :, y0:y1, x0:x1])
    alpha_w = alpha[:, None, y0:y1, x0:x1] * np.float32(opacity)
    window = out[..., y0:y1, x0:x1]
    window.lerp_(torch.from_numpy(ink_w).to(out.device, out.dtype),
                 torch.from_numpy(alpha_w).to(out.device, out.dtype)).clamp_(0.0, 1.0)
    return out


def with_params(style: TextStyle, **changes) -> TextStyle:
    """A copy of ``style`` with some fields changed (unknown names are a clear error)."""
    bad = [k for k in changes if k not in SWEEPABLE]
    if bad:
        raise ClipauditError(f"unknown rendering parameter {bad[0]!r}{suggest(bad[0], SWEEPABLE)} "
                             f"(valid: {', '.join(SWEEPABLE)})")
    return replace(style, **changes)
