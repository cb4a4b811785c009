"""Toy scenes re-rendered in styles the toys never saw, and scenes with 1-4 copies of an object.

Why: the CLIP paper's robustness table (ImageNet -> Sketch, Rendition, ...) asks how accuracy
holds when the *same classes* are drawn differently. In the toy world the shift can be planted
and known: :func:`render_object` replays exactly the random draws of
``World.scene(index, "object", text=False)`` (label, colour, background, clutter, size, place,
angle), so scene *i* in style ``"photo"`` is the training renderer's picture pixel for pixel and
scene *i* in ``"outline"`` is the same object, same place, drawn as a line sketch. The toys'
training data are untouched: nothing here is used by :mod:`clipaudit.toy.train`.

Styles (``STYLES``):

- ``photo``: the training renderer itself (use another seed for an unshifted control);
- ``outline``: black polygon outlines on plain paper, no fill, no background (a sketch);
- ``silhouette``: every part filled one dark ink on plain paper (shape only, no colour);
- ``texture``: the scene's own background and clutter, the object filled with a random
  two-colour checker texture instead of its colour (a texture swap);
- ``cartoon``: flat pastel background, the class's canonical colour without jitter, thick
  black outlines (a rendition);
- ``blur_noise``: the photo blurred (Gaussian, radius 2 px at 64 px) with heavy pixel noise
  (sd 60 of 255).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from clipaudit.toy.world import COLOURS, OBJECT_CLASSES, Part, World, _object_parts

STYLES: tuple[str, ...] = ("photo", "outline", "silhouette", "texture", "cartoon", "blur_noise")
#: the styles that change how an object is drawn (every style but the training renderer's own)
SHIFT_STYLES: tuple[str, ...] = STYLES[1:]
COUNT_WORDS: tuple[str, ...] = ("one", "two", "three", "four")


@dataclass
class StyledScene:
    """One rendered object scene: (H, W, 3) uint8 image and what it shows."""

    image: np.ndarray
    label: str
    colour: str
    style: str
    count: int = 1


@dataclass(frozen=True)
class _Geometry:
    label: str
    colour: str
    rgb: tuple[int, int, int]
    background: Image.Image  # background + clutter, as the training renderer draws them
    cx: float
    cy: float
    scale: float
    angle: float
    parts: list[Part]


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"unknown toy style {style!r}; valid: {', '.join(STYLES)}")


def _replay(world: World, index: int, label: str | None) -> _Geometry:
    """The random draws of ``World._object_scene`` for scene ``index`` (text off), in its order."""
    rng = np.random.default_rng((world.seed, index))
    s = world.config.image_size
    label = label or str(rng.choice(OBJECT_CLASSES))
    cname, rgb = world._object_colour(label, rng)
    img = world._background(rng)
    world._clutter(ImageDraw.Draw(img), rng)
    scale = float(rng.uniform(0.22, 0.42)) * s
    cx, cy = float(rng.uniform(scale, s - scale)), float(rng.uniform(scale, s - scale))
    angle = float(rng.uniform(-0.5, 0.5))
    return _Geometry(label, cname, rgb, img, cx, cy, scale, angle, _object_parts(label, rgb, rng))


def _transform(parts: list[Part], cx: float, cy: float, scale: float, angle: float) -> list[tuple[list, tuple]]:
    ca, sa = math.cos(angle), math.sin(angle)
    return [([(cx + scale * (x * ca - y * sa), cy + scale * (x * sa + y * ca)) for x, y in pts], fill)
            for pts, fill in parts]


def _is_hole(fill: tuple) -> bool:
    return len(fill) == 4  # the world marks cut-outs (cup handle, key ring) with an RGBA fill


def _paper(size: int, rng: np.random.Generator) -> Image.Image:
    tone = int(rng.integers(225, 256))
    return Image.new("RGB", (size, size), (tone, tone, int(rng.integers(210, tone + 1))))


def _draw_style(geo: _Geometry, style: str, size: int, rng: np.random.Generator,
                polys: list[tuple[list, tuple]]) -> Image.Image:
    if style in ("photo", "blur_noise", "texture"):
        img = geo.background.copy()
    elif style == "cartoon":
        base = rng.integers(170, 246, size=3)
        img = Image.new("RGB", (size, size), tuple(int(c) for c in base))
    else:
        img = _paper(size, rng)
    bg = img.getpixel((0, 0))
    draw = ImageDraw.Draw(img)
    if style in ("photo", "blur_noise"):
        for xy, fill in polys:
            draw.polygon(xy, fill=bg if _is_hole(fill) else fill)
    elif style == "outline":
        ink = tuple(int(c) for c in rng.integers(0, 70, size=3))
        for xy, _fill in polys:
            draw.polygon(xy, outline=ink, width=1)
    elif style == "silhouette":
        ink = tuple(int(c) for c in rng.integers(10, 60, size=3))
        for xy, fill in polys:
            draw.polygon(xy, fill=bg if _is_hole(fill) else ink)
    elif style == "cartoon":
        flat = COLOURS[geo.colour]
        for i, (xy, fill) in enumerate(polys):
            colour = bg if _is_hole(fill) else (flat if i == 0 else _quantise(fill))
            draw.polygon(xy, fill=colour, outline=(0, 0, 0), width=2)
    elif style == "texture":
        mask = Image.new("L", (size, size), 0)
        mdraw = ImageDraw.Draw(mask)
        for xy, fill in polys:
            mdraw.polygon(xy, fill=0 if _is_hole(fill) else 255)
        img.paste(_checker(size, rng), (0, 0), mask)
    if style == "blur_noise":
        img = img.filter(ImageFilter.GaussianBlur(radius=2.0 * size / 64))
        arr = np.asarray(img, dtype=np.float32) + rng.normal(0.0, 60.0, size=(size, size, 3))
        img = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), "RGB")
    return img


def _quantise(rgb: tuple) -> tuple[int, int, int]:
    """Snap a colour to 4 levels per channel (the flat palette of a cartoon)."""
    return tuple(int(min(255, round(c / 85) * 85)) for c in rgb[:3])  # type: ignore[return-value]


def _checker(size: int, rng: np.random.Generator) -> Image.Image:
    a, b = rng.integers(0, 256, size=3), rng.integers(0, 256, size=3)
    period = int(rng.integers(3, 7))
    yy, xx = np.mgrid[0:size, 0:size]
    cells = ((yy // period + xx // period) % 2).astype(bool)
    arr = np.where(cells[..., None], a, b).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def render_object(world: World, index: int, style: str = "photo", label: str | None = None) -> StyledScene:
    """Object scene ``index`` of ``world`` (no written word) drawn in ``style``.

    ``style="photo"`` equals ``world.scene(index, "object", text=False, label=label).image``.
    Style randomness (paper tone, ink, texture, noise) comes from its own generator seeded by
    (world seed, index, style), so the scene's geometry is the same in every style.

    Raises:
        ValueError: unknown style or class name.
    """
    _check_style(style)
    if label is not None and label not in OBJECT_CLASSES:
        raise ValueError(f"unknown object class {label!r}; valid: {', '.join(OBJECT_CLASSES)}")
    geo = _replay(world, index, label)
    size = world.config.image_size
    rng = np.random.default_rng((world.seed, index, 1 + STYLES.index(style)))
    polys = _transform(geo.parts, geo.cx, geo.cy, geo.scale, geo.angle)
    img = _draw_style(geo, style, size, rng, polys)
    return StyledScene(np.asarray(img), geo.label, geo.colour, style)


def object_drawings(concept: str, n: int, seed: int) -> list:
    """``n`` outline drawings of object class ``concept`` (uint8 HWC arrays, nothing written):
    the drawing facet of multimodality (Goh et al. 2021: photo, drawing, written word), from a
    world seeded apart from training, from the probe scenes and from :func:`object_pictures`.

    Raises:
        ValueError: the world has no object class ``concept``.
    """
    if concept not in OBJECT_CLASSES:
        raise ValueError(f"the toy world cannot draw {concept!r}; it draws {', '.join(OBJECT_CLASSES)}")
    world = World(seed=seed + 130363)
    return [render_object(world, i, "outline", label=concept).image for i in range(n)]


def render_count(world: World, index: int, count: int | None = None, label: str | None = None) -> StyledScene:
    """A scene with ``count`` (1-4; drawn when None) copies of one object, none overlapping.

    The copies share class and colour, are drawn at 0.12-0.2 of the image side on the
    training renderer's background and clutter, and sit in distinct cells of a 2x2 grid
    (jittered inside the cell), so they never touch. Seeded by (world seed, index, 99).

    Raises:
        ValueError: count outside 1-4 or an unknown class.
    """
    rng = np.random.default_rng((world.seed, index, 99))
    if count is None:
        count = int(rng.integers(1, 5))
    if not 1 <= int(count) <= 4:
        raise ValueError(f"count must be 1-4, got {count}")
    if label is not None and label not in OBJECT_CLASSES:
        raise ValueError(f"unknown object class {label!r}; valid: {', '.join(OBJECT_CLASSES)}")
    label = label or str(rng.choice(OBJECT_CLASSES))
    cname, rgb = world._object_colour(label, rng)
    s = world.config.image_size
    img = world._background(rng)
    bg = img.getpixel((0, 0))
    draw = ImageDraw.Draw(img)
    cells = rng.permutation(4)[:count]
    scale = float(rng.uniform(0.12, 0.2)) * s
    for cell in cells:
        x0, y0 = (cell % 2) * s / 2, (cell // 2) * s / 2
        cx = x0 + float(rng.uniform(scale, s / 2 - scale)) if s / 2 > 2 * scale else x0 + s / 4
        cy = y0 + float(rng.uniform(scale, s / 2 - scale)) if s / 2 > 2 * scale else y0 + s / 4
        for xy, fill in _transform(_object_parts(label, rgb, rng), cx, cy, scale, float(rng.uniform(-0.4, 0.4))):
            draw.polygon(xy, fill=bg if _is_hole(fill) else fill)
    return StyledScene(np.asarray(img), label, cname, "count", int(count))


__all__ = ["COUNT_WORDS", "SHIFT_STYLES", "STYLES", "StyledScene", "render_count", "render_object"]
