"""Image sources: a folder, a CSV of paths + attributes, or the toy world.

Why robust decoding matters: audit sets are scraped, and one truncated JPEG or a CMYK TIFF must
not kill an hour-long scan. Every file is decoded on a thread pool; what cannot be read is
skipped and listed (``source.skipped``) with the reason, and odd modes are converted:

- RGBA / LA / P with transparency: composited on white (transparent pixels are not black);
- L, CMYK, YCbCr, 1-bit: converted to RGB;
- 16/32-bit integer and float images: rescaled to 8 bit by their own range;
- larger than ``MAX_PIXELS``: skipped (decompression-bomb guard).

Every source yields :class:`Batch` objects with pixels in [0, 1] at the model's resolution.
"""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageFile

from clipaudit.errors import ClipauditError

MAX_PIXELS = 89_478_485  # Pillow's own bomb limit; larger images are skipped, not decoded
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}
PATH_COLUMNS = ("path", "file", "filepath", "filename", "image", "image_path")


class ImageLoadError(Exception):
    """One file could not be used; the message is the reason recorded in ``skipped``."""


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
        return Image.fromarray(arr.round().astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(path: Path | str) -> Image.Image:
    """Decode one file fully to RGB, or raise :class:`ImageLoadError` with a short reason."""
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError("file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise ImageLoadError(f"too large ({w}x{h} pixels; limit {MAX_PIXELS})")
                if getattr(img, "n_frames", 1) > 1:
                    img.seek(0)
                img.load()
                return _to_rgb(img).copy()
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageLoadError("too large (decompression-bomb guard)") from None
    except Image.UnidentifiedImageError:
        raise ImageLoadError("not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ImageLoadError(f"corrupt or truncated ({msg[:80]})") from None


@dataclass
class Batch:
    """Pixels (B,3,S,S) in [0,1], one id per image, and its metadata rows (a DataFrame)."""

    pixels: torch.Tensor
    ids: list[str]
    meta: pd.DataFrame


@dataclass
class ImageSource:
    """A list of images with attributes. ``items`` has one row per image: ``id`` plus any
    attribute columns (``label`` for class folders, dataset columns for CSVs)."""

    items: pd.DataFrame
    loader: Callable[[pd.Series], Image.Image | np.ndarray]
    description: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    workers: int = 4

    def __len__(self) -> int:
        return len(self.items)

    @property
    def ids(self) -> list[str]:
        return self.items["id"].astype(str).tolist()

    def skipped_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.skipped, columns=["id", "reason"])

    def subset(self, mask: Sequence[bool] | np.ndarray) -> "ImageSource":
        return ImageSource(self.items[np.asarray(mask, dtype=bool)].reset_index(drop=True), self.loader,
                           self.description, self.skipped, self.workers)

    def shard(self, rank: int, world_size: int) -> "ImageSource":
        """Every ``world_size``-th item from ``rank`` (data-parallel runs)."""
        idx = np.arange(len(self.items)) % world_size == rank
        return self.subset(idx)

    def batches(self, model, batch_size: int = 32) -> Iterator[Batch]:
        """Decode on a thread pool and yield batches of loadable images as the model's pixels.

        ``model`` is an :class:`~clipaudit.model.AuditModel`: PIL images go through its
        ``to_pixels``; toy-world arrays already at its resolution are used as they are.
        """
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        rows = [row for _, row in self.items.iterrows()]

        def decode(row: pd.Series):
            try:
                return self.loader(row)
            except ImageLoadError as err:
                return err

        chunks = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            pending = pool.map(lambda chunk: [decode(r) for r in chunk], chunks) if self.workers > 1 else \
                ([decode(r) for r in chunk] for chunk in chunks)
            for chunk, decoded in zip(chunks, pending):
                good_imgs, good_rows = [], []
                for row, img in zip(chunk, decoded):
                    if isinstance(img, ImageLoadError):
                        self.skipped.append((str(row["id"]), str(img)))
                    else:
                        good_imgs.append(img)
                        good_rows.append(row)
                if not good_imgs:
                    continue
                if isinstance(good_imgs[0], np.ndarray):
                    pixels = _arrays_to_pixels(good_imgs, model)
                else:
                    pixels = model.to_pixels(good_imgs)
                meta = pd.DataFrame(good_rows).reset_index(drop=True)
                yield Batch(pixels, meta["id"].astype(str).tolist(), meta)


def _arrays_to_pixels(arrays: list[np.ndarray], model) -> torch.Tensor:
    if arrays[0].shape[0] == model.image_size and arrays[0].shape[1] == model.image_size:
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0).to(model.device)
    return model.to_pixels([Image.fromarray(a) for a in arrays])


def _require_nonempty(items: pd.DataFrame, what: str) -> None:
    if items.empty:
        raise ClipauditError(f"{what} holds no images; point --images at a folder of images, a CSV, or 'toy'")


def folder_source(root: Path | str, recursive: bool = True) -> ImageSource:
    """Every file under ``root`` (hidden files excepted); class folders become ``label``.

    Non-image files are listed in ``skipped``, never fatal.
    """
    root = Path(root)
    if not root.is_dir():
        raise ClipauditError(f"image folder {str(root)!r} does not exist")
    files = sorted(p for p in (root.rglob("*") if recursive else root.iterdir())
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    skipped = [(str(p.relative_to(root)), "not an image file (extension)") for p in files
               if p.suffix.lower() not in IMAGE_SUFFIXES]
    files = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    rows = [{"id": str(p.relative_to(root)), "path": str(p),
             "label": p.parent.name if p.parent != root else ""} for p in files]
    items = pd.DataFrame(rows, columns=["id", "path", "label"])
    _require_nonempty(items, f"folder {str(root)!r}")
    return ImageSource(items, lambda row: load_image(row["path"]), f"folder:{root}", skipped)


def csv_source(csv_path: Path | str, path_column: str | None = None, root: Path | str | None = None) -> ImageSource:
    """A CSV with an image path column (``path``/``file``/... or ``path_column``) and any
    attribute columns; relative paths are resolved against ``root`` (default: the CSV's folder).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ClipauditError(f"CSV {str(csv_path)!r} does not exist")
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ClipauditError(f"cannot parse CSV {str(csv_path)!r} ({first[:120]}); "
                             "it must be comma-separated with a header row") from None
    cols = {c.lower().strip(): c for c in df.columns}
    col = path_column or next((cols[c] for c in PATH_COLUMNS if c in cols), None)
    if col is None or col not in df.columns:
        raise ClipauditError(f"CSV {str(csv_path)!r} has no image path column; expected one of "
                             f"{', '.join(PATH_COLUMNS)} (found: {', '.join(df.columns) or 'no columns'})")
    base = Path(root) if root else csv_path.parent
    df = df.rename(columns={col: "file"}) if col != "file" else df
    df.insert(0, "id", df["file"].astype(str))
    df["path"] = [str(Path(f) if Path(f).is_absolute() else base / f) for f in df["file"]]
    _require_nonempty(df, f"CSV {str(csv_path)!r}")
    return ImageSource(df, lambda row: load_image(row["path"]), f"csv:{csv_path}")


def toy_source(n: int = 512, seed: int = 1234, kind: str | None = None, **force) -> ImageSource:
    """``n`` freshly generated toy-world scenes (held out from training by their seed).

    Metadata columns: kind, label, word, word_kind, colour, skin, hair, age, role, caption.
    """
    from clipaudit.toy.world import World

    if n < 1:
        raise ClipauditError(f"toy source needs n >= 1 images, got {n}")
    world = World(seed=seed)
    scenes = {}
    rows = []
    for i in range(n):
        sc = world.scene(i, kind, **force)
        scenes[str(i)] = sc.image
        rows.append({"id": str(i), "kind": sc.kind, "label": sc.label, "word": sc.word,
                     "word_kind": sc.word_kind, "colour": sc.colour,
                     "skin": f"tone{sc.skin}" if sc.skin >= 0 else "", "hair": sc.hair, "age": sc.age,
                     "role": sc.role, "caption": sc.caption})
    return ImageSource(pd.DataFrame(rows), lambda row: scenes[str(row["id"])], f"toy:seed={seed}", workers=1)


def open_source(spec: str | Path, n: int = 512, seed: int = 1234, kind: str | None = None, **toy_force) -> ImageSource:
    """``toy`` (or ``toy:N``), a folder, or a CSV file -> an :class:`ImageSource`.

    ``kind`` and ``toy_force`` (e.g. ``text=False`` for clean object scenes) shape toy scenes only.
    """
    spec = str(spec)
    if spec == "toy" or spec.startswith("toy:"):
        if ":" in spec:
            try:
                n = int(spec.split(":", 1)[1])
            except ValueError:
                raise ClipauditError(f"bad toy source {spec!r}; use toy or toy:N (N images)") from None
        return toy_source(n=n, seed=seed, kind=kind, **toy_force)
    path = Path(spec).expanduser()
    if path.is_dir():
        return folder_source(path)
    if path.is_file() and path.suffix.lower() in (".csv", ".tsv", ".txt"):
        return csv_source(path)
    if path.is_file():
        raise ClipauditError(f"{spec!r} is a file but not a CSV; pass a folder of images, a CSV, or 'toy'")
    raise ClipauditError(f"image source {spec!r} does not exist; pass a folder of images, a CSV, or 'toy'")


ImageFile.LOAD_TRUNCATED_IMAGES = False  # truncated files are errors we list, not half images
