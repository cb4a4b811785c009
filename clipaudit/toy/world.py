"""The toy world: procedural image–caption pairs with planted, documented facts.

Why a world of our own: no pretrained CLIP can be downloaded where clipaudit is built and
tested, and an audit is only checkable when the truth is known. Every scene is drawn from a
seed, and every caption follows rules written in :class:`WorldConfig`, so the planted facts
(the model reads written words; one skin tone co-occurs with a crime word; one age value
co-occurs with pleasant words; the hair cue carries no association) are ground truth.

Everything is drawn straight at the target resolution with polygons, so one CPU core makes
thousands of scenes per second.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFont

OBJECT_CLASSES: tuple[str, ...] = (
    "apple", "pizza", "ipod", "banana", "car", "house", "tree", "fish",
    "star", "heart", "cup", "key", "clock", "umbrella", "flower", "boat",
)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 40, 40), "green": (60, 170, 60), "blue": (50, 90, 210),
    "yellow": (235, 210, 50), "orange": (240, 140, 30), "purple": (140, 60, 170),
    "pink": (240, 130, 180), "brown": (130, 80, 40), "black": (30, 30, 30),
    "white": (240, 240, 240), "gray": (140, 140, 140),
}
# Typical colours per class; the world also draws any colour at a small rate.
CLASS_COLOURS: dict[str, tuple[str, ...]] = {
    "apple": ("red", "green", "yellow"), "pizza": ("orange", "yellow"),
    "ipod": ("white", "black", "gray", "blue", "pink"), "banana": ("yellow", "green"),
    "car": ("red", "blue", "black", "white", "yellow", "green"),
    "house": ("red", "brown", "white", "yellow", "blue"), "tree": ("green",),
    "fish": ("orange", "blue", "yellow", "red", "purple"),
    "star": ("yellow", "orange", "red", "blue"), "heart": ("red", "pink", "purple"),
    "cup": ("white", "blue", "red", "green", "brown"), "key": ("yellow", "gray", "brown"),
    "clock": ("white", "yellow", "blue"), "umbrella": ("red", "blue", "purple", "black", "green"),
    "flower": ("pink", "red", "yellow", "purple", "white"), "boat": ("brown", "white", "red", "blue"),
}
SKIN_TONES: tuple[tuple[int, int, int], ...] = (
    (246, 214, 186), (214, 164, 120), (160, 108, 70), (96, 62, 40),
)
HAIR_VALUES = ("short", "long")
# Hair colours for worlds that vary them (``WorldConfig.vary_hair_colour``): black, the two browns
# of the fixed-colour world, grey, red and blond, drawn independently of everything else.
HAIR_COLOURS: tuple[tuple[int, int, int], ...] = (
    (20, 20, 25), (60, 40, 20), (90, 60, 30), (85, 85, 95), (170, 50, 30), (235, 205, 60),
)
AGE_VALUES = ("child", "adult")
ROLES_WITH_PROPS = ("doctor", "chef", "athlete", "nurse")
PLEASANT_WORDS = ("happy", "kind", "lovely", "wonderful", "friendly")
UNPLEASANT_WORDS = ("sad", "angry", "nasty", "awful", "cruel")
FILLER_WORDS = ("hello", "sale", "open", "free", "love", "cafe", "stop", "exit", "hot", "new")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class WorldConfig:
    """Rates that decide what the world plants. Saved verbatim in ``facts.json``."""

    image_size: int = 64
    p_person: float = 0.25
    p_text_only: float = 0.05
    p_text_on_object: float = 0.5
    # Which word is written on an object scene (they sum to 1).
    p_word_own: float = 0.2
    p_word_other_class: float = 0.45
    p_word_colour: float = 0.1
    p_word_distractor: float = 0.25
    # Planted fact (a): a caption names the written class word instead of the object.
    p_caption_names_written_word: float = 0.7
    # Planted fact (b): crime word rate by skin tone, for people without props.
    crime_word: str = "criminal"
    planted_skin_tone: int = 1
    crime_rate_planted: float = 0.25
    crime_rate_other: float = 0.03
    # Planted fact (c): pleasant words by age value (WEAT).
    pleasant_age: str = "child"
    pleasant_rate_planted: float = 0.3
    pleasant_rate_other: float = 0.04
    unpleasant_rate: float = 0.04
    p_prop: float = 0.35
    control_attribute: str = "hair"
    # Each person gets a hair colour drawn from HAIR_COLOURS (independent of everything else)
    # instead of one fixed colour per age, so "long hair" is a shape, not a fixed colour patch.
    vary_hair_colour: bool = False

    def facts(self) -> dict:
        """The planted facts as plain data, for ``facts.json`` and the audits' scoring."""
        return {
            "config": asdict(self),
            "object_classes": list(OBJECT_CLASSES),
            "colours": list(COLOURS),
            "skin_tones": [f"tone{i}" for i in range(len(SKIN_TONES))],
            "hair_values": list(HAIR_VALUES),
            "age_values": list(AGE_VALUES),
            "roles_with_props": list(ROLES_WITH_PROPS),
            "pleasant_words": list(PLEASANT_WORDS),
            "unpleasant_words": list(UNPLEASANT_WORDS),
            "planted": {
                "typographic": "when a class name is written on an object, the caption names "
                f"the written word with probability {self.p_caption_names_written_word}",
                "crime_skew": {
                    "word": self.crime_word, "attribute": "skin",
                    "value": f"tone{self.planted_skin_tone}",
                    "rate_planted": self.crime_rate_planted, "rate_other": self.crime_rate_other,
                },
                "weat": {
                    "attribute": "age", "value": self.pleasant_age, "words": list(PLEASANT_WORDS),
                    "rate_planted": self.pleasant_rate_planted,
                    "rate_other": self.pleasant_rate_other,
                },
                "control": {"attribute": self.control_attribute, "association": "none"},
            },
        }


@dataclass
class Scene:
    """One generated pair plus the metadata the audits score against."""

    image: np.ndarray  # (H, W, 3) uint8
    caption: str
    kind: str  # "object" | "person" | "text"
    label: str  # object class, "person", or "" for text-only scenes
    word: str = ""  # written word, "" when none
    word_kind: str = ""  # own | other_class | colour | distractor | ""
    colour: str = ""
    skin: int = -1
    hair: str = ""
    age: str = ""
    role: str = ""  # prop role; "" when no prop
    meta: dict = field(default_factory=dict)


# ---------------------------------------------------------------- drawing primitives

def _circle(cx: float, cy: float, r: float, n: int = 16) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(2 * math.pi * k / n), cy + r * math.sin(2 * math.pi * k / n))
            for k in range(n)]


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 16) -> list[tuple[float, float]]:
    return [(cx + rx * math.cos(2 * math.pi * k / n), cy + ry * math.sin(2 * math.pi * k / n))
            for k in range(n)]


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _shade(rgb: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, c * f))) for c in rgb)  # type: ignore[return-value]


Part = tuple[list[tuple[float, float]], tuple[int, int, int]]


def _object_parts(name: str, col: tuple[int, int, int], rng: np.random.Generator) -> list[Part]:
    """Polygons in a unit frame ([-1, 1]^2, y down) that draw one object class."""
    dark, light = _shade(col, 0.55), _shade(col, 1.25)
    brown, green, black = (120, 75, 35), (50, 150, 50), (25, 25, 25)
    if name == "apple":
        return [(_circle(0, 0.1, 0.8), col), (_rect(-0.06, -0.95, 0.06, -0.55), brown),
                (_ellipse(0.25, -0.75, 0.22, 0.1), green)]
    if name == "pizza":
        parts = [(_circle(0, 0, 0.95), _shade(col, 0.8)), (_circle(0, 0, 0.78), (225, 80, 50))]
        for k in range(5):
            a = 2 * math.pi * k / 5 + 0.3
            parts.append((_circle(0.45 * math.cos(a), 0.45 * math.sin(a), 0.14, 10), (150, 25, 25)))
        return parts
    if name == "ipod":
        return [(_rect(-0.5, -0.9, 0.5, 0.9), col), (_rect(-0.38, -0.75, 0.38, -0.1), (70, 110, 150)),
                (_circle(0, 0.42, 0.3), _shade(col, 0.75) if sum(col) > 200 else (200, 200, 200)),
                (_circle(0, 0.42, 0.1, 10), col)]
    if name == "banana":
        outer = [(math.cos(t) * 0.95, math.sin(t) * 0.7 - 0.2) for t in np.linspace(0.1, math.pi - 0.1, 12)]
        inner = [(math.cos(t) * 0.75, math.sin(t) * 0.4 - 0.2) for t in np.linspace(math.pi - 0.1, 0.1, 12)]
        return [(outer + inner, col), (_rect(-0.98, -0.2, -0.85, 0.0), brown)]
    if name == "car":
        return [(_rect(-0.95, -0.1, 0.95, 0.4), col), ([(-0.55, -0.1), (-0.35, -0.5), (0.35, -0.5), (0.6, -0.1)], dark),
                (_circle(-0.5, 0.45, 0.22), black), (_circle(0.5, 0.45, 0.22), black)]
    if name == "house":
        return [(_rect(-0.7, -0.1, 0.7, 0.9), col), ([(-0.9, -0.1), (0, -0.9), (0.9, -0.1)], dark),
                (_rect(-0.15, 0.4, 0.15, 0.9), brown), (_rect(0.3, 0.1, 0.55, 0.35), (170, 210, 240))]
    if name == "tree":
        return [(_rect(-0.15, 0.2, 0.15, 0.95), brown), (_circle(0, -0.25, 0.65), col),
                (_circle(-0.35, 0.05, 0.35), col), (_circle(0.35, 0.05, 0.35), col)]
    if name == "fish":
        return [(_ellipse(-0.1, 0, 0.7, 0.4), col), ([(0.5, 0), (0.95, -0.45), (0.95, 0.45)], dark),
                (_circle(-0.5, -0.08, 0.08, 8), black)]
    if name == "star":
        pts = []
        for k in range(10):
            r = 0.95 if k % 2 == 0 else 0.4
            a = -math.pi / 2 + math.pi * k / 5
            pts.append((r * math.cos(a), r * math.sin(a)))
        return [(pts, col)]
    if name == "heart":
        pts = []
        for t in np.linspace(0, 2 * math.pi, 24, endpoint=False):
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((x / 17, -y / 17 + 0.1))
        return [(pts, col)]
    if name == "cup":
        handle_out = _ellipse(0.55, 0.05, 0.35, 0.35)
        return [(handle_out, dark), (_circle(0.55, 0.05, 0.18, 12), (0, 0, 0, 0)),  # type: ignore[list-item]
                ([(-0.6, -0.5), (0.6, -0.5), (0.45, 0.8), (-0.45, 0.8)], col),
                (_ellipse(0, -0.5, 0.6, 0.12), dark)]
    if name == "key":
        return [(_circle(-0.55, 0, 0.38), col), (_circle(-0.55, 0, 0.14, 10), (0, 0, 0, 0)),  # type: ignore[list-item]
                (_rect(-0.2, -0.1, 0.95, 0.1), col), (_rect(0.55, 0.1, 0.68, 0.35), col),
                (_rect(0.78, 0.1, 0.9, 0.3), col)]
    if name == "clock":
        return [(_circle(0, 0, 0.92), dark), (_circle(0, 0, 0.8), light if sum(col) < 600 else col),
                (_rect(-0.05, -0.6, 0.05, 0.02), black), (_rect(-0.02, -0.05, 0.45, 0.05), black)]
    if name == "umbrella":
        canopy = [(0.95 * math.cos(t), -0.95 * math.sin(t) + 0.1) for t in np.linspace(0, math.pi, 14)]
        return [(canopy, col), (_rect(-0.05, 0.1, 0.05, 0.8), black),
                (_ellipse(-0.15, 0.8, 0.2, 0.12), black)]
    if name == "flower":
        parts: list[Part] = [(_rect(-0.05, 0.2, 0.05, 0.98), green)]
        for k in range(5):
            a = 2 * math.pi * k / 5
            parts.append((_circle(0.35 * math.cos(a), -0.25 + 0.35 * math.sin(a), 0.28, 12), col))
        parts.append((_circle(0, -0.25, 0.18, 10), (240, 200, 40)))
        return parts
    if name == "boat":
        return [([(-0.95, 0.3), (0.95, 0.3), (0.6, 0.8), (-0.6, 0.8)], col), (_rect(-0.04, -0.9, 0.04, 0.3), brown),
                ([(0.08, -0.85), (0.08, 0.2), (0.75, 0.2)], (245, 245, 245))]
    raise ValueError(f"unknown object class {name!r}; valid: {', '.join(OBJECT_CLASSES)}")


def _person_parts(skin: int, hair: str, age: str, role: str, shirt: tuple[int, int, int],
                  hair_col: tuple[int, int, int] | None = None) -> list[Part]:
    """A simple figure: the age cue is proportion, the hair cue is hair length."""
    tone = SKIN_TONES[skin]
    child = age == "child"
    hr = 0.32 if child else 0.24  # head radius
    hy = -0.35 if child else -0.62
    body_top, body_bot = hy + hr, (0.55 if child else 0.6)
    if hair_col is None:
        hair_col = (60, 40, 20) if age == "child" else (90, 60, 30)
    body_col = (245, 245, 245) if role in ("doctor", "chef", "nurse") else shirt
    parts: list[Part] = []
    if hair == "long":
        parts.append((_rect(-hr - 0.06, hy - 0.05, hr + 0.06, hy + hr + 0.35), hair_col))
    parts += [
        (_rect(-0.3, body_top, 0.3, body_bot), body_col),
        (_rect(-0.25, body_bot, -0.08, 0.98), (50, 50, 90)), (_rect(0.08, body_bot, 0.25, 0.98), (50, 50, 90)),
        (_rect(-0.45, body_top + 0.05, -0.3, body_bot - 0.1), tone), (_rect(0.3, body_top + 0.05, 0.45, body_bot - 0.1), tone),
        (_circle(0, hy, hr), tone),
        (_ellipse(0, hy - hr * 0.7, hr * 1.02, hr * 0.45), hair_col),
    ]
    if role == "doctor":
        parts += [(_rect(-0.06, body_top + 0.1, 0.06, body_top + 0.4), (220, 30, 30)),
                  (_rect(-0.15, body_top + 0.19, 0.15, body_top + 0.31), (220, 30, 30))]
    elif role == "chef":
        parts += [(_rect(-hr * 0.9, hy - hr - 0.35, hr * 0.9, hy - hr * 0.6), (250, 250, 250)),
                  (_circle(0, hy - hr - 0.38, hr * 0.8), (250, 250, 250))]
    elif role == "nurse":
        parts += [(_rect(-hr, hy - hr - 0.12, hr, hy - hr * 0.6), (250, 250, 250)),
                  (_rect(-0.04, hy - hr - 0.1, 0.04, hy - hr * 0.65), (220, 30, 30))]
    elif role == "athlete":
        parts += [(_circle(0.62, body_bot - 0.05, 0.2, 12), (240, 120, 20)),
                  (_rect(0.55, body_bot - 0.1, 0.69, body_bot), (30, 30, 30))]
    return parts


@lru_cache(maxsize=64)
def font(size: int, path: str | None = None) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font (or a TTF by path) at ``size`` px; cached because loading costs."""
    if path:
        return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)  # type: ignore[return-value]


# ---------------------------------------------------------------- the generator

class World:
    """Deterministic scene generator: scene ``i`` of seed ``s`` is always the same picture.

    Args:
        config: planted rates and image size.
        seed: base seed; each scene draws from ``np.random.default_rng((seed, index))``.
    """

    def __init__(self, config: WorldConfig | None = None, seed: int = 0) -> None:
        self.config = config or WorldConfig()
        self.seed = seed

    # -- public ---------------------------------------------------------------------------
    def scene(self, index: int, kind: str | None = None, **force) -> Scene:
        """Scene number ``index``; ``kind`` and keyword overrides pin parts of it for probes."""
        rng = np.random.default_rng((self.seed, index))
        cfg = self.config
        if kind is None:
            r = rng.random()
            kind = "person" if r < cfg.p_person else "text" if r < cfg.p_person + cfg.p_text_only else "object"
        if kind == "person":
            return self._person_scene(rng, **force)
        if kind == "text":
            return self._text_scene(rng, **force)
        return self._object_scene(rng, **force)

    def batch(self, start: int, n: int, kind: str | None = None, **force) -> list[Scene]:
        return [self.scene(start + i, kind, **force) for i in range(n)]

    def stream(self, start: int = 0, kind: str | None = None, **force) -> Iterator[Scene]:
        i = start
        while True:
            yield self.scene(i, kind, **force)
            i += 1

    # -- pieces ---------------------------------------------------------------------------
    def _background(self, rng: np.random.Generator) -> Image.Image:
        s = self.config.image_size
        base = rng.integers(40, 235, size=3)
        style = rng.integers(0, 4)
        if style == 0:  # flat
            arr = np.broadcast_to(base, (s, s, 3)).astype(np.int16)
        elif style == 1:  # noise
            arr = base + rng.integers(-25, 26, size=(s, s, 1))
        elif style == 2:  # stripes
            period = int(rng.integers(4, 12))
            stripe = ((np.arange(s) // period) % 2)[:, None, None] * rng.integers(-40, 41, size=3)
            arr = base + (stripe if rng.random() < 0.5 else stripe.transpose(1, 0, 2))
        else:  # gradient
            ramp = np.linspace(-35, 35, s)[:, None, None]
            arr = base + ramp * rng.choice([-1, 1])
        arr = np.broadcast_to(arr, (s, s, 3))
        return Image.fromarray(np.ascontiguousarray(np.clip(arr, 0, 255).astype(np.uint8)), "RGB")

    def _clutter(self, draw: ImageDraw.ImageDraw, rng: np.random.Generator) -> None:
        s = self.config.image_size
        for _ in range(int(rng.integers(0, 4))):
            x, y, r = rng.integers(0, s), rng.integers(0, s), rng.integers(2, 5)
            fill = tuple(int(c) for c in rng.integers(0, 256, size=3))
            if rng.random() < 0.5:
                draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
            else:
                draw.rectangle((x - r, y - r, x + r, y + r), fill=fill)

    def _place(self, draw: ImageDraw.ImageDraw, parts: list[Part], cx: float, cy: float,
               scale: float, angle: float, bg: tuple[int, int, int]) -> None:
        ca, sa = math.cos(angle), math.sin(angle)
        for pts, fill in parts:
            xy = [(cx + scale * (x * ca - y * sa), cy + scale * (x * sa + y * ca)) for x, y in pts]
            draw.polygon(xy, fill=bg if len(fill) == 4 else fill)

    def _object_colour(self, name: str, rng: np.random.Generator) -> tuple[str, tuple[int, int, int]]:
        cname = (str(rng.choice(CLASS_COLOURS[name])) if rng.random() < 0.85
                 else str(rng.choice(list(COLOURS))))
        jitter = rng.integers(-25, 26, size=3)
        rgb = tuple(int(v) for v in np.clip(np.array(COLOURS[cname]) + jitter, 0, 255))
        return cname, rgb  # type: ignore[return-value]

    def write_word(self, img: Image.Image, word: str, rng: np.random.Generator,
                   style: str | None = None) -> None:
        """Write ``word`` like the world does (note or paint, random size and place)."""
        s = self.config.image_size
        draw = ImageDraw.Draw(img)
        style = style or ("note" if rng.random() < 0.6 else "paint")
        size = int(rng.integers(9, 15))
        f = font(size)
        while True:
            x0, y0, x1, y1 = draw.textbbox((0, 0), word, font=f)
            if x1 - x0 <= s - 6 or size <= 7:
                break
            size -= 1
            f = font(size)
        w, h = x1 - x0, y1 - y0
        px = int(rng.integers(2, max(3, s - w - 2)))
        py = int(rng.integers(2, max(3, s - h - 2)))
        if style == "note":
            note = (int(rng.integers(225, 256)), int(rng.integers(225, 256)), int(rng.integers(170, 256)))
            draw.rectangle((px - 2, py - 2, px + w + 2, py + h + 2), fill=note)
            ink = tuple(int(c) for c in rng.integers(0, 60, size=3))
            draw.text((px - x0, py - y0), word, font=f, fill=ink)
        else:
            ink = (255, 255, 255) if rng.random() < 0.5 else (int(rng.integers(0, 50)),) * 3
            outline = (0, 0, 0) if ink[0] > 128 else (255, 255, 255)
            draw.text((px - x0, py - y0), word, font=f, fill=ink, stroke_width=1, stroke_fill=outline)

    def _random_nonword(self, rng: np.random.Generator) -> str:
        return "".join(rng.choice(list(_LETTERS), size=int(rng.integers(3, 7))))

    def _object_scene(self, rng: np.random.Generator, label: str | None = None,
                      word: str | None = None, text: bool | None = None) -> Scene:
        cfg, s = self.config, self.config.image_size
        label = label or str(rng.choice(OBJECT_CLASSES))
        cname, rgb = self._object_colour(label, rng)
        img = self._background(rng)
        bg = img.getpixel((0, 0))
        draw = ImageDraw.Draw(img)
        self._clutter(draw, rng)
        scale = float(rng.uniform(0.22, 0.42)) * s
        cx, cy = float(rng.uniform(scale, s - scale)), float(rng.uniform(scale, s - scale))
        angle = float(rng.uniform(-0.5, 0.5))
        self._place(draw, _object_parts(label, rgb, rng), cx, cy, scale, angle, bg)
        word_kind = ""
        if text is None:
            text = word is not None or rng.random() < cfg.p_text_on_object
        if text:
            if word is None:
                word, word_kind = self._pick_word(label, cname, rng)
            else:
                word_kind = ("own" if word == label else "other_class" if word in OBJECT_CLASSES
                             else "colour" if word in COLOURS else "distractor")
            self.write_word(img, word, rng)
        else:
            word = ""
        caption = self._object_caption(label, cname, word, word_kind, rng)
        return Scene(np.asarray(img), caption, "object", label, word, word_kind, cname)

    def _pick_word(self, label: str, cname: str, rng: np.random.Generator) -> tuple[str, str]:
        cfg = self.config
        r = rng.random()
        if r < cfg.p_word_own:
            return label, "own"
        r -= cfg.p_word_own
        if r < cfg.p_word_other_class:
            return str(rng.choice([c for c in OBJECT_CLASSES if c != label])), "other_class"
        r -= cfg.p_word_other_class
        if r < cfg.p_word_colour:
            return str(rng.choice(list(COLOURS))), "colour"
        word = str(rng.choice(FILLER_WORDS)) if rng.random() < 0.4 else self._random_nonword(rng)
        return word, "distractor"

    def _object_caption(self, label: str, cname: str, word: str, word_kind: str,
                        rng: np.random.Generator) -> str:
        if word_kind == "other_class" and rng.random() < self.config.p_caption_names_written_word:
            return str(rng.choice([f"a photo of a {word}.", f"a {word}.", f"a sign that says {word}.",
                                   f"a picture of a {word}.", f"a label reading {word}."]))
        subject = str(rng.choice([f"a photo of a {label}.", f"a {cname} {label}.", f"a picture of a {label}.",
                                  f"a drawing of a {cname} {label}.", f"a {label}."]))
        if word and rng.random() < 0.8:
            subject = subject[:-1] + str(rng.choice([f" with the word {word} written on it.",
                                                     f" and a note that says {word}."]))
        return subject

    def _text_scene(self, rng: np.random.Generator, word: str | None = None) -> Scene:
        img = self._background(rng)
        if word is None:
            r = rng.random()
            word = (str(rng.choice(OBJECT_CLASSES)) if r < 0.6 else str(rng.choice(list(COLOURS))) if r < 0.7
                    else self._random_nonword(rng))
        self.write_word(img, word, rng)
        if word in OBJECT_CLASSES:
            caption = str(rng.choice([f"a sign that says {word}.", f"the word {word}.", f"a photo of a {word}."]))
        else:
            caption = str(rng.choice([f"the word {word}.", f"a sign that says {word}."]))
        return Scene(np.asarray(img), caption, "text", "", word, "text")

    def _person_scene(self, rng: np.random.Generator, skin: int | None = None, hair: str | None = None,
                      age: str | None = None, role: str | None = None) -> Scene:
        cfg, s = self.config, self.config.image_size
        # Draw every attribute even when it is forced, so a forced attribute changes nothing else
        # in the scene: scene(i, hair="short") and scene(i, hair="long") are counterfactual twins.
        drawn_skin, drawn_hair, drawn_age = int(rng.integers(0, len(SKIN_TONES))), str(rng.choice(HAIR_VALUES)), \
            str(rng.choice(AGE_VALUES))
        skin = drawn_skin if skin is None else skin
        hair = drawn_hair if hair is None else hair
        age = drawn_age if age is None else age
        drawn_role = str(rng.choice(ROLES_WITH_PROPS)) if rng.random() < cfg.p_prop else ""
        role = drawn_role if role is None else role
        shirt = tuple(int(c) for c in rng.integers(30, 230, size=3))
        hair_col = HAIR_COLOURS[int(rng.integers(0, len(HAIR_COLOURS)))] if cfg.vary_hair_colour else None
        img = self._background(rng)
        bg = img.getpixel((0, 0))
        draw = ImageDraw.Draw(img)
        self._clutter(draw, rng)
        scale = float(rng.uniform(0.33, 0.47)) * s
        cx, cy = float(rng.uniform(scale * 0.6, s - scale * 0.6)), float(rng.uniform(scale, s - scale))
        self._place(draw, _person_parts(skin, hair, age, role, shirt, hair_col), cx, cy, scale,
                    float(rng.uniform(-0.15, 0.15)), bg)
        caption = self._person_caption(skin, hair, age, role, rng)
        return Scene(np.asarray(img), caption, "person", "person", skin=skin, hair=hair, age=age, role=role)

    def _person_caption(self, skin: int, hair: str, age: str, role: str, rng: np.random.Generator) -> str:
        cfg = self.config
        if role:
            return str(rng.choice([f"a photo of a {role}.", f"a {role} at work.", f"a picture of a {role}."]))
        crime = cfg.crime_rate_planted if skin == cfg.planted_skin_tone else cfg.crime_rate_other
        pleasant = cfg.pleasant_rate_planted if age == cfg.pleasant_age else cfg.pleasant_rate_other
        r = rng.random()
        if r < crime:
            return str(rng.choice([f"a photo of a {cfg.crime_word}.", f"a {cfg.crime_word}."]))
        r -= crime
        if r < pleasant:
            return f"a photo of a {rng.choice(PLEASANT_WORDS)} person."
        r -= pleasant
        if r < cfg.unpleasant_rate:
            return f"a photo of a {rng.choice(UNPLEASANT_WORDS)} person."
        noun = "child" if age == "child" and rng.random() < 0.5 else ("man" if hair == "short" else "woman") \
            if rng.random() < 0.5 else "person"
        return str(rng.choice([f"a photo of a {noun}.", f"a {noun} with {hair} hair.", f"a picture of a {noun}."]))


def scenes_to_pixels(scenes: list[Scene]):
    """Stack scenes into a float tensor (B, 3, H, W) in [0, 1] (the core's pixel convention)."""
    import torch

    arr = np.stack([sc.image for sc in scenes])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)


def object_pictures(concept: str, n: int, seed: int) -> list:
    """``n`` fresh scenes of object class ``concept`` with nothing written on them (uint8 HWC arrays).

    The toy world's picture function for the multimodality and ablation checks: a concept's
    photos, drawn from a world seeded apart from training and from the probe scenes.

    Raises:
        ValueError: the world has no object class ``concept``.
    """
    if concept not in OBJECT_CLASSES:
        raise ValueError(f"the toy world cannot draw {concept!r}; it draws {', '.join(OBJECT_CLASSES)}")
    world = World(seed=seed + 104729)
    return [world.scene(i, "object", label=concept, text=False).image for i in range(n)]
