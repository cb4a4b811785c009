"""Demographic datasets as image sources with attribute columns: FairFace, UTKFace, a generic
CSV, and the toy world's people scenes.

Why one reader per layout: each dataset stores its labels differently (a CSV beside the images,
labels inside file names), and an auditor must see which rows were dropped and why. Rows that
cannot be used (malformed UTKFace names, unknown label values, missing files) are listed in
``source.skipped`` with a reason, never fatal; a missing column is a clear error.
"""
from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd

from clipaudit.data import IMAGE_SUFFIXES, ImageSource, csv_separator, csv_source, load_image, toy_source
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


def _age_bin(age: int) -> str:
    return next(label for lo, hi, label in UTK_AGE_BINS if lo <= age <= hi)


def _header(path: Path) -> set[str]:
    try:
        return {c.strip().lower() for c in pd.read_csv(path, nrows=0, sep=csv_separator(path)).columns}
    except Exception:
        return set()


def _fairface_csvs(root: Path) -> list[Path]:
    """The label tables (CSV or TSV with file and race columns) directly in ``root``."""
    tables = sorted([*root.glob("*.csv"), *root.glob("*.tsv")])
    return [p for p in tables if {"file", "race"} <= _header(p)]


def _find_fairface_csv(root: Path) -> Path:
    """The one label table of a FairFace folder; several (train and val) must be chosen between.

    Raises:
        ClipauditError: no label table, or more than one (naming each, so none is silently used).
    """
    found = _fairface_csvs(root)
    if len(found) == 1:
        return found[0]
    if found:
        raise ClipauditError(f"FairFace folder {str(root)!r} has {len(found)} label CSVs "
                             f"({', '.join(p.name for p in found)}); pass the one to audit as --dataset, "
                             f"e.g. --dataset {found[-1]}")
    tables = sorted([*root.glob("*.csv"), *root.glob("*.tsv")])
    raise ClipauditError(f"FairFace folder {str(root)!r} has no label CSV with columns file, age, gender, "
                         f"race (found: {', '.join(p.name for p in tables) or 'no CSV files'}); "
                         "pass the CSV itself as --dataset")


MISSING_VALUES = frozenset({"", "nan", "na", "n/a", "<na>", "none", "null", "?"})


def mark_missing(items: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Empty cells and literal NaN/NA/N/A/None/null/? in ``columns`` become missing (``None``),
    so that no group is called "NaN" and a blank is never a group of its own.

    Matching is case-insensitive after stripping spaces (``MISSING_VALUES``).
    """
    out = items.copy()
    for col in columns:
        if col in out.columns:
            text = out[col].map(lambda v: "" if v is None or (isinstance(v, float) and v != v) else str(v))
            out[col] = out[col].astype(object).where(~text.str.strip().str.lower().isin(MISSING_VALUES), None)
    return out


def drop_duplicate_rows(source: ImageSource, attributes: Sequence[str]) -> ImageSource:
    """One row per image: repeats of a row are dropped and listed in ``source.skipped``; one image
    listed with different attribute values is an error (which row is right cannot be known).

    Raises:
        ClipauditError: the same image id appears with conflicting attribute values.
    """
    items = source.items
    key = "id"
    dup = items[key].duplicated(keep="first")
    if not dup.any():
        return source
    cols = [key, *[a for a in attributes if a in items.columns]]
    conflicts = items[cols].astype(str).drop_duplicates()[key]
    conflict = conflicts[conflicts.duplicated()]
    if len(conflict):
        first = conflict.iloc[0]
        rows = items.loc[items[key] == first, cols[1:]].astype(str).agg(", ".join, axis=1).tolist()
        raise ClipauditError(f"{source.description}: image {first!r} is listed {len(rows)} times with different "
                             f"attributes ({' vs '.join(rows)}); keep one row per image")
    skipped = [*source.skipped, *((str(i), "duplicate row: this image is already listed") for i in items.loc[dup, key])]
    return dataclasses.replace(source, items=items[~dup].reset_index(drop=True), skipped=skipped)


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
        cols = _header(path)
        return "fairface" if {"file", "age", "gender", "race"} <= cols else "csv"
    if path.is_dir():
        if _fairface_csvs(path):
            return "fairface"
        if any(_UTK_NAME.match(p.name) for p in list(path.rglob("*"))[:2000]):
            return "utkface"
        raise ClipauditError(f"cannot tell the layout of folder {spec!r}: no FairFace label CSV and no "
                             "UTKFace-style names; pass --layout fairface|utkface or a CSV")
    raise ClipauditError(f"dataset {spec!r} does not exist; pass a FairFace/UTKFace folder, a CSV, or 'toy'")


def open_dataset(spec: str, layout: str = "auto", attributes: Sequence[str] = (), n: int = 600,
                 seed: int = 1234) -> ImageSource:
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
    if layout in ("csv", "fairface"):
        source = drop_duplicate_rows(source, attrs)
        source.items = mark_missing(source.items, attrs)
        n_dups = sum(1 for _, why in source.skipped if why.startswith("duplicate row"))
        if n_dups:
            print(f"note: {n_dups} duplicate row(s) of {source.description} dropped (each image counted once); "
                  "listed in the run's skipped table", file=sys.stderr)
    return dataclasses.replace(source, layout=layout, attributes=tuple(attrs))
