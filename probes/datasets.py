"""Readers for ImageNet and its distribution shifts in the layouts they are distributed in,
read from local folders only (nothing is ever downloaded).

``LAYOUT:DIR`` on the command line picks a reader (``clipaudit limitations --list-layouts``):

==================  ==========================================================================
``imagenet``        ``DIR/<wnid>/*.JPEG`` (train, or val sorted into class folders)
``imagenet-val``    the flat validation folder ``DIR/ILSVRC2012_val_*.JPEG`` with
                    ``LOC_val_solution.csv`` (Kaggle) beside it or in a parent
``imagenet-v2``     ``DIR/<index 0-999>/*.jpeg`` (Recht et al. 2019; folders are class indices)
``imagenet-r``      ``DIR/<wnid>/*.jpg``, its 200-class subset (Hendrycks et al. 2021)
``imagenet-a``      ``DIR/<wnid>/*.jpg``, its 200-class subset (Hendrycks et al. 2021)
``imagenet-sketch`` ``DIR/<wnid>/*.JPEG`` or ``DIR/sketch/<wnid>/...`` (Wang et al. 2019)
``objectnet``       ``DIR/images/<folder>/*.png`` with ``DIR/mappings/folder_to_objectnet_label.json``
                    and ``objectnet_to_imagenet_1k.json`` (Barbu et al. 2019); only the classes
                    that map to ImageNet are kept (the 113-class overlap)
==================  ==========================================================================

Class names: every ImageNet-family reader names a class by the first synonym of its WordNet
synset in ``LOC_synset_mapping.txt`` (``n01440764 tench, Tinca tinca`` per line, the 1000
synsets in index order, as ImageNet distributions ship it), found in DIR or up to two folders
above it, or at ``$CLIPAUDIT_IMAGENET_SYNSETS``. Without it the built-in list is used
(:func:`builtin_synsets`: timm's 1000 wnids in index order with open_clip's CLIP class names).
Items carry ``wnid`` and
``imagenet_index`` (the class's position among the 1000) so the subsets (R, A: 200 classes;
ObjectNet: 113) map back onto ImageNet's head. ObjectNet images keep their label as the first
ImageNet class of its mapping (``objectnet_label`` and ``imagenet_classes`` keep the rest).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from clipaudit.data import IMAGE_SUFFIXES, ImageSource, load_image
from clipaudit.errors import ClipauditError, suggest

SYNSET_FILE = "LOC_synset_mapping.txt"
SYNSET_ENV = "CLIPAUDIT_IMAGENET_SYNSETS"


@dataclass(frozen=True)
class Layout:
    name: str
    read: Callable[[str], ImageSource]
    doc: str


def _dir(path: str | Path, layout: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ClipauditError(f"{layout} folder {str(p)!r} does not exist")
    return p


def read_synsets(path: str | Path) -> list[tuple[str, str]]:
    """``[(wnid, first name), ...]`` in file order from a ``LOC_synset_mapping.txt``-style file.

    Raises:
        ClipauditError: a line that is not ``<wnid> <names>``.
    """
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        wnid, _, names = line.strip().partition(" ")
        if not (wnid.startswith("n") and wnid[1:].isdigit() and names):
            raise ClipauditError(f"{str(path)!r} line {n} is not '<wnid> <names>': {line[:60]!r}")
        out.append((wnid, names.split(",")[0].strip()))
    return out


def builtin_synsets() -> list[tuple[str, str]]:
    """ImageNet-1k's 1000 ``(wnid, class name)`` in index order, from installed libraries: the
    wnids from timm (``timm.data.ImageNetInfo``, a dependency of open_clip) and the names from
    open_clip's ``IMAGENET_CLASSNAMES`` (the cleaned-up names CLIP's zero-shot evaluation uses,
    e.g. "tench", "great white shark"), so no file is needed and nothing is downloaded."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    from timm.data import ImageNetInfo

    wnids = list(ImageNetInfo().label_names())
    if len(wnids) != len(IMAGENET_CLASSNAMES):
        raise ClipauditError(f"timm lists {len(wnids)} ImageNet synsets but open_clip {len(IMAGENET_CLASSNAMES)} "
                             f"class names; put {SYNSET_FILE} beside your data")
    return list(zip(wnids, IMAGENET_CLASSNAMES))


def find_synsets(start: Path) -> list[tuple[str, str]]:
    """The synset list near ``start`` (itself, two parents), else at ``$CLIPAUDIT_IMAGENET_SYNSETS``,
    else :func:`builtin_synsets` (a file the data ships with wins: it names what the data means)."""
    for folder in (start, start.parent, start.parent.parent):
        if (folder / SYNSET_FILE).is_file():
            return read_synsets(folder / SYNSET_FILE)
    env = os.environ.get(SYNSET_ENV)
    if env and Path(env).is_file():
        return read_synsets(env)
    return builtin_synsets()


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _source(rows: list[dict], description: str) -> ImageSource:
    if not rows:
        raise ClipauditError(f"{description} holds no images")
    items = pd.DataFrame(rows)
    return ImageSource(items, lambda row: load_image(row["path"]), description)


def _wnid_tree(root: Path, layout: str, subset_size: int | None = None) -> ImageSource:
    synsets = find_synsets(root)
    index = {w: i for i, (w, _) in enumerate(synsets or [])}
    names = dict(synsets or [])
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    bad = [p.name for p in folders if not (p.name.startswith("n") and p.name[1:].isdigit())]
    if bad:
        raise ClipauditError(f"{layout} folder {str(root)!r} has non-wnid class folders: {', '.join(bad[:5])}; "
                             f"expected n######## folders")
    if synsets is not None:
        unknown = [p.name for p in folders if p.name not in index]
        if unknown:
            raise ClipauditError(f"{layout} class folders not among ImageNet's synsets: {', '.join(unknown[:5])}")
    if subset_size is not None and folders and len(folders) != subset_size:
        raise ClipauditError(f"{layout} should hold its {subset_size}-class subset, found {len(folders)} class folders "
                             f"in {str(root)!r}")
    rows = []
    for folder in folders:
        for img in _images(folder):
            rows.append({"id": f"{folder.name}/{img.name}", "path": str(img), "wnid": folder.name,
                         "label": names.get(folder.name, folder.name), "imagenet_index": index.get(folder.name, -1)})
    return _source(rows, f"{layout}:{root}")


def read_imagenet(path: str) -> ImageSource:
    """ImageNet in class folders (``train/`` or a sorted ``val/``)."""
    return _wnid_tree(_dir(path, "imagenet"), "imagenet")


def read_imagenet_val(path: str) -> ImageSource:
    """The flat ImageNet validation folder, labels from ``LOC_val_solution.csv`` (ImageId, PredictionString)."""
    root = _dir(path, "imagenet-val")
    csv = next((f / "LOC_val_solution.csv" for f in (root, root.parent, root.parent.parent)
                if (f / "LOC_val_solution.csv").is_file()), None)
    if csv is None:
        raise ClipauditError(f"imagenet-val needs LOC_val_solution.csv in {str(root)!r} or a parent; "
                             "or sort the images into class folders and use imagenet:DIR")
    sol = pd.read_csv(csv)
    if not {"ImageId", "PredictionString"} <= set(sol.columns):
        raise ClipauditError(f"{str(csv)!r} lacks the ImageId / PredictionString columns")
    wnid_of = dict(zip(sol["ImageId"].astype(str), sol["PredictionString"].astype(str).str.split().str[0]))
    synsets = find_synsets(root)
    index = {w: i for i, (w, _) in enumerate(synsets or [])}
    names = dict(synsets or [])
    rows = []
    for img in _images(root):
        wnid = wnid_of.get(img.stem)
        if wnid is None:
            continue
        rows.append({"id": img.name, "path": str(img), "wnid": wnid, "label": names.get(wnid, wnid),
                     "imagenet_index": index.get(wnid, -1)})
    return _source(rows, f"imagenet-val:{root}")


def read_imagenet_v2(path: str) -> ImageSource:
    """ImageNet-V2: folders named by class index 0-999 (needs the synset list to name them)."""
    root = _dir(path, "imagenet-v2")
    synsets = find_synsets(root)
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    bad = [p.name for p in folders if not p.name.isdigit() or int(p.name) >= len(synsets)]
    if bad:
        raise ClipauditError(f"imagenet-v2 folders must be class indices 0-{len(synsets) - 1}; found {', '.join(bad[:5])}")
    rows = []
    for folder in folders:
        i = int(folder.name)
        wnid, name = synsets[i]
        for img in _images(folder):
            rows.append({"id": f"{folder.name}/{img.name}", "path": str(img), "wnid": wnid, "label": name,
                         "imagenet_index": i})
    return _source(rows, f"imagenet-v2:{root}")


def read_imagenet_r(path: str) -> ImageSource:
    return _wnid_tree(_dir(path, "imagenet-r"), "imagenet-r", subset_size=None)


def read_imagenet_a(path: str) -> ImageSource:
    return _wnid_tree(_dir(path, "imagenet-a"), "imagenet-a", subset_size=None)


def read_imagenet_sketch(path: str) -> ImageSource:
    root = _dir(path, "imagenet-sketch")
    return _wnid_tree(root / "sketch" if (root / "sketch").is_dir() else root, "imagenet-sketch")


def read_objectnet(path: str) -> ImageSource:
    """ObjectNet, the classes that overlap ImageNet, named by their first ImageNet class."""
    root = _dir(path, "objectnet")
    maps = root / "mappings"
    files = [maps / "folder_to_objectnet_label.json", maps / "objectnet_to_imagenet_1k.json"]
    missing = [str(f.relative_to(root)) for f in files if not f.is_file()]
    if missing or not (root / "images").is_dir():
        raise ClipauditError(f"objectnet folder {str(root)!r} lacks {', '.join(missing) or 'images/'}; "
                             "expected images/<folder>/ and mappings/*.json as ObjectNet ships them")
    folder_to_label = json.loads(files[0].read_text())
    to_imagenet = json.loads(files[1].read_text())
    rows = []
    for folder in sorted(p for p in (root / "images").iterdir() if p.is_dir()):
        label = folder_to_label.get(folder.name)
        if label is None or label not in to_imagenet:
            continue
        classes = [c.strip() for c in str(to_imagenet[label]).split(";") if c.strip()]
        for img in _images(folder):
            rows.append({"id": f"{folder.name}/{img.name}", "path": str(img), "objectnet_label": label,
                         "imagenet_classes": "; ".join(classes), "label": classes[0]})
    return _source(rows, f"objectnet:{root}")


LAYOUTS: dict[str, Layout] = {
    "imagenet": Layout("imagenet", read_imagenet, "DIR/<wnid>/*.JPEG (train or sorted val)"),
    "imagenet-val": Layout("imagenet-val", read_imagenet_val, "flat val folder + LOC_val_solution.csv"),
    "imagenet-v2": Layout("imagenet-v2", read_imagenet_v2, "DIR/<class index 0-999>/*.jpeg"),
    "imagenet-r": Layout("imagenet-r", read_imagenet_r, "DIR/<wnid>/*.jpg (200-class subset)"),
    "imagenet-a": Layout("imagenet-a", read_imagenet_a, "DIR/<wnid>/*.jpg (200-class subset)"),
    "imagenet-sketch": Layout("imagenet-sketch", read_imagenet_sketch, "DIR[/sketch]/<wnid>/*.JPEG"),
    "objectnet": Layout("objectnet", read_objectnet, "DIR/images/<folder>/*.png + DIR/mappings/*.json"),
}


def open_layout(layout: str, path: str) -> ImageSource:
    """Read ``path`` with the reader of ``layout``.

    Raises:
        ClipauditError: unknown layout (listing the valid ones) or what the reader refuses.
    """
    if layout not in LAYOUTS:
        raise ClipauditError(f"unknown dataset layout {layout!r}{suggest(layout, LAYOUTS)}; valid: {', '.join(LAYOUTS)}")
    return LAYOUTS[layout].read(path)


def open_spec(spec: str) -> ImageSource:
    """``LAYOUT:DIR`` through its reader, else a class-folder tree or CSV (:func:`clipaudit.data.open_source`)."""
    from clipaudit.data import open_source

    layout, sep, path = str(spec).partition(":")
    if sep and not Path(spec).exists() and len(layout) > 1:  # 'C:\\...' is a drive, not a layout
        return open_layout(layout, path)
    return open_source(spec)


__all__ = ["LAYOUTS", "Layout", "find_synsets", "open_layout", "open_spec", "read_imagenet", "read_imagenet_a",
           "read_imagenet_r", "read_imagenet_sketch", "read_imagenet_v2", "read_imagenet_val", "read_objectnet",
           "read_synsets", "builtin_synsets"]
