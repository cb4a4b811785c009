"""Demographic datasets as image sources with attribute columns: FairFace, UTKFace, a generic
CSV, and the toy world's people scenes.

Why one reader per layout: each dataset stores its labels differently (a CSV beside the images,
labels inside file names), and an auditor must see which rows were dropped and why. Rows that
cannot be used (malformed UTKFace names, unknown label values, missing files) are listed in
``source.skipped`` with a reason, never fatal; a missing column is a clear error.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from clipaudit.data import IMAGE_SUFFIXES, ImageSource, csv_source, load_image, toy_source
from clipaudit.errors import ClipauditError, suggest

LAYOUTS = ("auto", "fairface", "utkface", "csv", "toy")
FAIRFACE_RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
                  "Middle Eastern")
FAIRFACE_GENDERS = ("Male", "Female")
FAIRFACE_AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
UTK_GENDERS = {"0": "Male", "1": "Female"}
UTK_RACES = {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"}
UTK_AGE_BINS = ((0, 2, "0-2"), (3, 9, "3-9"), (10, 19, "10-19"), (20, 29, "20-29"), (30, 39, "30-39"),
                (40, 49, "40-49"), (50, 59, "50-59"), (60, 69, "60-69"), (70, 200, "more than 70"))
DEFAULT_ATTRIBUTES = {"fairface": ("race", "gender", "age"), "utkface": ("race", "gender", "age"),
                      "toy": ("skin", "hair", "age"), "csv": ()}
_UTK_NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d+)")


@dataclass
class BiasDataset:
    """An image source, the layout it was read as, and the attributes to probe."""

    source: ImageSource
    layout: str
    attributes: tuple[str, ...]

    @property
    def items(self) -> pd.DataFrame:
        return self.source.items

    def content_hash(self) -> str:
        """sha256 (16 hex) of the ids and attribute values: names the exact probe set."""
        cols = ["id", *self.attributes]
        text = self.items[cols].astype(str).to_csv(index=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _age_bin(age: int) -> str:
    return next(label for lo, hi, label in UTK_AGE_BINS if lo <= age <= hi)


def _find_fairface_csv(root: Path) -> Path:
    csvs = sorted(root.glob("*.csv"))
    for path in csvs:
        try:
            header = pd.read_csv(path, nrows=0).columns
        except Exception:
            continue
        if {"file", "race"} <= {c.strip().lower() for c in header}:
            return path
    raise ClipauditError(f"FairFace folder {str(root)!r} has no label CSV with columns file, age, gender, "
                         f"race (found: {', '.join(p.name for p in csvs) or 'no CSV files'}); "
                         "pass the CSV itself as --dataset")


def fairface_source(spec: Path | str) -> ImageSource:
    """FairFace: a label CSV (file, age, gender, race) with paths relative to its folder.

    ``spec`` is the CSV or the folder holding it. Rows with values outside FairFace's label
    vocabulary are skipped and listed; a missing column is an error.
    """
    path = Path(spec)
    if not path.exists():
        raise ClipauditError(f"FairFace dataset {str(path)!r} does not exist; pass the image folder or its label CSV")
    csv = _find_fairface_csv(path) if path.is_dir() else path
    src = csv_source(csv, root=csv.parent)
    items = src.items.rename(columns={c: c.strip().lower() for c in src.items.columns})
    missing = [c for c in ("age", "gender", "race") if c not in items.columns]
    if missing:
        raise ClipauditError(f"FairFace CSV {str(csv)!r} is missing column(s) {', '.join(missing)}; "
                             f"it needs file, age, gender, race (found: {', '.join(src.items.columns)})")
    valid = {"race": FAIRFACE_RACES, "gender": FAIRFACE_GENDERS, "age": FAIRFACE_AGES}
    keep, skipped = [], []
    for _, row in items.iterrows():
        bad = next(((col, row[col]) for col, vals in valid.items() if row[col] not in vals), None)
        if bad:
            skipped.append((str(row["id"]), f"unknown {bad[0]} value {bad[1]!r} "
                            f"(valid: {', '.join(valid[bad[0]])})"))
        keep.append(bad is None)
    items = items[keep].reset_index(drop=True)
    if items.empty:
        raise ClipauditError(f"FairFace CSV {str(csv)!r} has no row with valid labels "
                             f"(first problem: {skipped[0][1] if skipped else 'no rows'})")
    return ImageSource(items, src.loader, f"fairface:{csv}", skipped)


def utkface_source(root: Path | str) -> ImageSource:
    """UTKFace: labels in file names ``age_gender_race_datetime.jpg`` (gender 0 male / 1 female;
    race 0-4 White, Black, Asian, Indian, Others). Malformed names are skipped and listed.

    Adds ``age`` as a FairFace-style bin and ``age_years`` as the number.
    """
    root = Path(root)
    if not root.is_dir():
        raise ClipauditError(f"UTKFace folder {str(root)!r} does not exist")
    rows, skipped = [], []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        rel = str(p.relative_to(root))
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append((rel, "not an image file (extension)"))
            continue
        m = _UTK_NAME.match(p.name)
        if not m:
            skipped.append((rel, "malformed UTKFace name; expected age_gender_race_datetime.jpg"))
            continue
        age = int(m.group(1))
        rows.append({"id": rel, "path": str(p), "age_years": age, "age": _age_bin(age),
                     "gender": UTK_GENDERS[m.group(2)], "race": UTK_RACES[m.group(3)]})
    if not rows:
        raise ClipauditError(f"UTKFace folder {str(root)!r} has no file named age_gender_race_datetime.jpg "
                             f"({len(skipped)} files skipped)")
    return ImageSource(pd.DataFrame(rows), lambda row: load_image(row["path"]), f"utkface:{root}", skipped)


def toy_people_source(n: int = 600, seed: int = 1234, props: bool = True) -> ImageSource:
    """``n`` toy-world people scenes (attributes skin, hair, age, role). ``props=False`` keeps
    only people without a role prop, the population the crime-word skew was planted in."""
    src = toy_source(n, seed=seed, kind="person")
    if not props:
        src = src.subset((src.items["role"] == "").to_numpy())
    src.description = f"toy-people:n={n},seed={seed}{'' if props else ',no-props'}"
    return src


def detect_layout(spec: str) -> str:
    """Guess the layout of ``--dataset`` when ``--layout auto``."""
    if spec == "toy" or spec.startswith("toy:"):
        return "toy"
    path = Path(spec).expanduser()
    if path.is_file():
        try:
            cols = {c.strip().lower() for c in pd.read_csv(path, nrows=0).columns}
        except Exception:
            return "csv"
        return "fairface" if {"file", "age", "gender", "race"} <= cols else "csv"
    if path.is_dir():
        try:
            _find_fairface_csv(path)
            return "fairface"
        except ClipauditError:
            pass
        if any(_UTK_NAME.match(p.name) for p in list(path.rglob("*"))[:2000]):
            return "utkface"
        raise ClipauditError(f"cannot tell the layout of folder {spec!r}: no FairFace label CSV and no "
                             "UTKFace-style names; pass --layout fairface|utkface or a CSV")
    raise ClipauditError(f"dataset {spec!r} does not exist; pass a FairFace/UTKFace folder, a CSV, or 'toy'")


def open_dataset(spec: str, layout: str = "auto", attributes: Sequence[str] = (), n: int = 600,
                 seed: int = 1234) -> BiasDataset:
    """Read ``--dataset`` as ``layout`` and check the attributes exist.

    Args:
        spec: ``toy`` / ``toy:N`` / ``toy-noprops[:N]``, a FairFace folder or CSV, a UTKFace
            folder, or a CSV with a path column and attribute columns.
        layout: one of ``LAYOUTS``; ``auto`` guesses from the files.
        attributes: columns to probe; empty means the layout's defaults (required for csv).
        n: number of toy scenes when ``spec`` is ``toy`` without ``:N``.

    Raises:
        ClipauditError: unknown layout, missing dataset, missing attribute columns.
    """
    spec = str(spec)
    if layout not in LAYOUTS:
        raise ClipauditError(f"unknown --layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    if layout == "auto":
        layout = "toy" if spec.split(":")[0] in ("toy", "toy-noprops") else detect_layout(spec)
    if layout == "toy":
        base, _, count = spec.partition(":")
        if base not in ("toy", "toy-noprops"):
            raise ClipauditError(f"--layout toy needs --dataset toy, toy:N or toy-noprops:N, got {spec!r}")
        try:
            n = int(count) if count else n
        except ValueError:
            raise ClipauditError(f"bad toy dataset {spec!r}; use toy or toy:N (N people scenes)") from None
        if n < 8:
            raise ClipauditError(f"toy dataset needs at least 8 people scenes, got {n}")
        source = toy_people_source(n, seed=seed, props=base == "toy")
    elif layout == "fairface":
        source = fairface_source(spec)
    elif layout == "utkface":
        source = utkface_source(spec)
    else:
        if not Path(spec).is_file():
            raise ClipauditError(f"--layout csv needs a CSV file, got {spec!r}")
        source = csv_source(spec)
    attrs = tuple(attributes) or DEFAULT_ATTRIBUTES[layout]
    if not attrs:
        raise ClipauditError("a generic CSV needs --attributes (which columns hold the groups), e.g. "
                             "--attributes gender,age")
    reserved = {"id", "path", "file"}
    available = [c for c in source.items.columns if c not in reserved]
    for a in attrs:
        if a not in source.items.columns or a in reserved:
            raise ClipauditError(f"attribute {a!r} is not a column of {source.description}; "
                                 f"valid: {', '.join(available)}{suggest(a, available)}")
    return BiasDataset(source, layout, attrs)
