"""Image sources: a folder, a CSV of paths + attributes, or the toy world.

Why robust decoding matters: audit sets are scraped, and one truncated JPEG or a CMYK TIFF must
not kill an hour-long scan. Every file is decoded on a thread pool; what cannot be read is
skipped and listed (``source.skipped``) with the reason, and odd modes are converted:

- the first frame of an animated or multi-page file;
- EXIF orientation applied (the image stands as a viewer shows it);
- an embedded ICC profile converted to sRGB (littlecms through Pillow's ImageCms; a profile
  that cannot be used is ignored and the values are read as sRGB);
- RGBA / LA / PA / P with transparency / RGB or L with a tRNS colour key: composited on white
  (transparent pixels are not black);
- L, CMYK (no profile: Pillow's naive conversion), YCbCr, HSV, 1-bit: converted to RGB;
  LAB is refused (Pillow and littlecms disagree on its a*/b* encoding, so no colour is certain);
- 16-bit integer images scaled by their bit depth (65535 is white; never stretched to their own
  range), 32-bit integer by the depth the file declares; float images read as [0, 1] (values
  above 1 as 0-255), clipped;
- larger than ``MAX_PIXELS``: skipped (decompression-bomb guard).

:func:`to_rgb` is the one decoder: the CLI's loaders and :meth:`AuditModel.to_pixels` both use
it, so a file reaches the model the same way whichever door it came in by.

Every source yields :class:`Batch` objects with pixels in [0, 1] at the model's resolution.
"""
from __future__ import annotations

import dataclasses
import io
import warnings
import itertools
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageFile, ImageOps

from clipaudit.errors import ClipauditError

MAX_PIXELS = 89_478_485  # Pillow's own bomb limit; larger images are skipped, not decoded
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}
PATH_COLUMNS = ("path", "file", "filepath", "filename", "image", "image_path")


class ImageLoadError(ValueError):
    """One file could not be used; the message is the reason recorded in ``skipped``."""


_DEEP_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def _bit_depth(img: Image.Image) -> int:
    """Bits per sample a deep integer image declares (TIFF BitsPerSample), else 16."""
    tags = getattr(img, "tag_v2", None)
    bits = tags.get(258) if tags is not None else None
    if isinstance(bits, (tuple, list)) and bits:
        bits = bits[0]
    return int(bits) if isinstance(bits, int) and 1 <= bits <= 32 else 16


def _deep_to_l(img: Image.Image) -> Image.Image:
    """16/32-bit integer or float grey -> 8-bit L by the format's scale, never by the image's range."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        scale = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
    else:
        scale = float(2 ** (16 if img.mode.startswith("I;16") else _bit_depth(img)) - 1)
    arr = np.nan_to_num(arr, nan=0.0) / scale * 255.0
    return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), "L")


def _to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """Apply an embedded ICC profile (RGB, RGBA, CMYK, L images) to reach sRGB."""
    from PIL import ImageCms

    try:
        if not icc or img.mode not in ("RGB", "RGBA", "CMYK", "L"):
            return img
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
        return ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode=out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return img  # a profile littlecms cannot use: read the values as sRGB


def to_rgb(img: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of ``img`` as an image viewer shows it (see the module docstring).

    The one decoding path for files and in-memory PIL images alike; idempotent (the result
    carries no profile, orientation or transparency key, so decoding it again changes nothing).
    """
    icc = img.info.get("icc_profile")
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    if img.getexif().get(0x0112, 1) != 1:  # EXIF Orientation
        img = ImageOps.exif_transpose(img)
    if img.mode == "LAB":
        raise ImageLoadError("LAB colour images are not supported; save it as RGB")
    if img.mode in _DEEP_MODES:
        img = _deep_to_l(img)
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGB", "L") and "transparency" in img.info:
        img = img.convert("RGBA")
    img = _to_srgb(img, icc)
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    out = img.convert("RGB")
    if out is img:
        out = img.copy()
    out.info = {}
    return out


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
                return to_rgb(img)
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
    """A list of images with attributes: the one input type every audit takes.

    Attributes:
        items: one row per image: ``id`` plus any attribute columns (``label`` for class
            folders, dataset columns for CSVs, the planted facts for toy scenes).
        loader: ``row -> image`` (PIL or uint8 array), decoded by :func:`load_image`'s rules.
        description: where the images come from (for messages and manifests).
        skipped: ``(id, reason)`` of images that could not be decoded.
        classnames: the class vocabulary of the ``label`` column when the source knows it (the
            toy world's object classes; a labelled dataset's class list), else None.
        pictures: ``(concept, n, seed) -> images`` drawing fresh pictures of a concept (the toy
            world), or None; audits fall back to the source's own labelled images.
        attributes: columns holding demographic groups (bias audits), empty if none.
        layout: the dataset layout it was read as (toy, fairface, utkface, csv, folder, ...).
    """

    items: pd.DataFrame
    loader: Callable[[pd.Series], Image.Image | np.ndarray]
    description: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    workers: int = 4
    read_ahead: int = 2
    classnames: tuple[str, ...] | None = None
    pictures: Callable[[str, int, int], list] | None = None
    attributes: tuple[str, ...] = ()
    layout: str = ""

    def content_hash(self) -> str:
        """sha256 (16 hex) of the ids and attribute values: names the exact probe set."""
        import hashlib

        cols = ["id", *[a for a in self.attributes if a in self.items.columns]]
        text = self.items[cols].astype(str).to_csv(index=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def ids(self) -> list[str]:
        return self.items["id"].astype(str).tolist()

    def skipped_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.skipped, columns=["id", "reason"])

    def subset(self, mask: Sequence[bool] | np.ndarray) -> "ImageSource":
        """The rows where ``mask`` is True, sharing this source's skip list and everything it knows."""
        return dataclasses.replace(self, items=self.items[np.asarray(mask, dtype=bool)].reset_index(drop=True))

    def shard(self, rank: int, world_size: int) -> "ImageSource":
        """Every ``world_size``-th item from ``rank`` (data-parallel runs)."""
        idx = np.arange(len(self.items)) % world_size == rank
        return self.subset(idx)

    def batches(self, model, batch_size: int = 32) -> Iterator[Batch]:
        """Decode on a thread pool and yield batches of loadable images as the model's pixels.

        ``model`` is an :class:`~clipaudit.model.AuditModel`: PIL images go through its
        ``to_pixels``; toy-world arrays already at its resolution are used as they are.
        At most ``read_ahead`` batches are being decoded or waiting at any time, so memory
        follows the batch size, not the number of images.
        """
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        rows = [row for _, row in self.items.iterrows()]
        chunks = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
        for chunk, decoded in zip(chunks, self._decoded(chunks)):
            good_imgs, good_rows = [], []
            for row, img in zip(chunk, decoded):
                if isinstance(img, ImageLoadError):
                    self.skipped.append((str(row["id"]), str(img)))
                else:
                    good_imgs.append(img)
                    good_rows.append(row)
            del decoded
            if not good_imgs:
                continue
            if isinstance(good_imgs[0], np.ndarray):
                pixels = _arrays_to_pixels(good_imgs, model)
            else:
                pixels = model.to_pixels(good_imgs)
            del good_imgs
            meta = pd.DataFrame(good_rows).reset_index(drop=True)
            yield Batch(pixels, meta["id"].astype(str).tolist(), meta)

    def _decode(self, row: pd.Series):
        try:
            return self.loader(row)
        except ImageLoadError as err:
            return err

    def _decoded(self, chunks: list[list[pd.Series]]) -> Iterator[list]:
        """Each chunk's decoded images (or errors), in order, with bounded read-ahead."""
        if self.workers <= 1:
            for chunk in chunks:
                yield [self._decode(r) for r in chunk]
            return
        ahead = max(1, int(self.read_ahead))
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            queue: deque[list[Future]] = deque()
            todo = iter(chunks)
            try:
                for chunk in itertools.islice(todo, ahead):
                    queue.append([pool.submit(self._decode, r) for r in chunk])
                while queue:
                    futures = queue.popleft()
                    nxt = next(todo, None)
                    if nxt is not None:  # keep `ahead` chunks in flight while this one is used
                        queue.append([pool.submit(self._decode, r) for r in nxt])
                    yield [f.result() for f in futures]
            finally:  # an early stop (error, Ctrl-C) leaves no decodes queued
                for futures in queue:
                    for f in futures:
                        f.cancel()


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


def csv_separator(path: Path | str) -> str:
    """Tab for ``.tsv``/``.tab`` files, comma otherwise (the file's extension names its format)."""
    return "\t" if Path(path).suffix.lower() in (".tsv", ".tab") else ","


def csv_source(csv_path: Path | str, path_column: str | None = None, root: Path | str | None = None) -> ImageSource:
    """A CSV with an image path column (``path``/``file``/... or ``path_column``) and any
    attribute columns; relative paths are resolved against ``root`` (default: the CSV's folder).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ClipauditError(f"CSV {str(csv_path)!r} does not exist")
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False, sep=csv_separator(csv_path))
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
    from clipaudit.toy.world import OBJECT_CLASSES, object_pictures

    return ImageSource(pd.DataFrame(rows), lambda row: scenes[str(row["id"])], f"toy:seed={seed}", workers=1,
                       classnames=tuple(OBJECT_CLASSES), pictures=object_pictures, layout="toy")


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
