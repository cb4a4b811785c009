"""Image sources for the limitations audit: the toy's planted shifts, counting scenes and
digits, and the combination of several sources into one tagged source.

The audit reads one :class:`~clipaudit.data.ImageSource` whose items say what each image is
for: ``task`` (``classify`` | ``count`` | ``digits``), ``domain`` (which distribution a
``classify`` image comes from: the base set, a control, a shift) and ``label``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from clipaudit.data import ImageSource
from clipaudit.errors import ClipauditError

#: held-out seeds (the toys trained on seed 0): the base set and the unshifted control
BASE_SEED, CONTROL_SEED, COUNT_SEED = 1234, 4321, 5678


def _source(rows: list[dict], arrays: dict[str, np.ndarray], description: str) -> ImageSource:
    return ImageSource(pd.DataFrame(rows), lambda row: arrays[str(row["id"])], description, workers=1)


def toy_shift_source(n_base: int, n_shift: int, styles: Sequence[str] | None = None, n_control: int | None = None,
                     seed: int = BASE_SEED, control_seed: int = CONTROL_SEED) -> ImageSource:
    """Toy object scenes (no written words) in the training style and in shifted styles.

    Classes are balanced (scene ``i`` shows class ``i mod 16``). Domains: ``clean`` (``n_base`` scenes of seed ``seed``), ``control`` (the training renderer
    under ``control_seed``: new scenes, no shift) and one domain per style of ``styles``
    (default :data:`clipaudit.toy.styles.SHIFT_STYLES`; scenes 0..n_shift-1 of ``seed``
    restyled, so each is a shifted copy of clean images).

    Raises:
        ClipauditError: a size below 1 or an unknown style.
    """
    from clipaudit.toy.styles import SHIFT_STYLES, STYLES, render_object
    from clipaudit.toy.world import OBJECT_CLASSES, World

    styles = tuple(SHIFT_STYLES if styles is None else styles)
    bad = [s for s in styles if s not in STYLES]
    if bad:
        raise ClipauditError(f"unknown toy style(s) {', '.join(bad)}; valid: {', '.join(STYLES)}")
    n_control = n_shift if n_control is None else n_control
    if min(n_base, n_shift, n_control) < 1:
        raise ClipauditError(f"toy shift sizes must be >= 1, got base {n_base}, shift {n_shift}, control {n_control}")
    rows, arrays = [], {}
    plan = [("clean", "photo", seed, n_base), ("control", "photo", control_seed, n_control)]
    plan += [(s, s, seed, n_shift) for s in styles if s != "photo"]
    for domain, style, s, n in plan:
        world = World(seed=s)
        for i in range(n):
            sc = render_object(world, i, style, label=OBJECT_CLASSES[i % len(OBJECT_CLASSES)])
            key = f"{domain}/{i}"
            arrays[key] = sc.image
            rows.append({"id": key, "task": "classify", "domain": domain, "label": sc.label, "colour": sc.colour,
                         "count": 1})
    return _source(rows, arrays, f"toy-shift:seed={seed}")


def toy_count_source(n: int, seed: int = COUNT_SEED) -> ImageSource:
    """``n`` toy scenes with 1-4 copies of one object (``task = "count"``, ``count`` column)."""
    from clipaudit.toy.styles import render_count
    from clipaudit.toy.world import World

    if n < 1:
        raise ClipauditError(f"counting scenes need n >= 1, got {n}")
    world = World(seed=seed)
    rows, arrays = [], {}
    for i in range(n):
        sc = render_count(world, i, count=1 + i % 4)
        key = f"count/{i}"
        arrays[key] = sc.image
        rows.append({"id": key, "task": "count", "domain": "count", "label": sc.label, "colour": sc.colour,
                     "count": sc.count})
    return _source(rows, arrays, f"toy-count:seed={seed}")


def tag_source(source: ImageSource, domain: str, task: str = "classify") -> ImageSource:
    """``source`` with ``task`` and ``domain`` columns set (a user folder becomes one domain)."""
    items = source.items.copy()
    items["task"] = task
    items["domain"] = domain
    items["id"] = [f"{domain}/{i}" for i in items["id"].astype(str)]
    loader = source.loader
    return ImageSource(items, loader, f"{domain}:{source.description}", source.skipped, source.workers)


def combine_sources(sources: Sequence[ImageSource]) -> ImageSource:
    """One source holding every image of ``sources`` (ids must be unique across them).

    Each row keeps its own loader; metadata columns are the union (missing values empty).

    Raises:
        ClipauditError: no sources, or an id repeated across sources.
    """
    if not sources:
        raise ClipauditError("no image sources to combine")
    frames, loaders = [], []
    for k, src in enumerate(sources):
        f = src.items.copy()
        f["_source"] = k
        frames.append(f)
        loaders.append(src.loader)
    items = pd.concat(frames, ignore_index=True)
    dup = items["id"][items["id"].duplicated()].astype(str).tolist()
    if dup:
        raise ClipauditError(f"image ids repeat across sources: {', '.join(dup[:5])}; tag each source with its own domain")
    for col in items.columns:
        if items[col].dtype == object:
            items[col] = items[col].fillna("")
    skipped = [s for src in sources for s in src.skipped]

    def load(row: pd.Series):
        return loaders[int(row["_source"])](row)

    return ImageSource(items, load, " + ".join(s.description for s in sources), skipped,
                       workers=max(s.workers for s in sources))


__all__ = ["BASE_SEED", "CONTROL_SEED", "COUNT_SEED", "combine_sources", "tag_source", "toy_count_source",
           "toy_shift_source"]
