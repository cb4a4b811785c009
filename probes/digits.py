"""Handwritten digits: images unlike a CLIP's training data (the model card's MNIST example).

Why: the CLIP paper reports zero-shot CLIP near the bottom on MNIST (88% where a logistic
regression on raw pixels does better; Radford et al. 2021, section 3.1.5) and the model card
names it as out-of-distribution data. Two sources of real handwriting: scikit-learn's bundled
digits (1,797 images, 8x8, 17 grey levels; UCI "Optical Recognition of Handwritten Digits")
and MNIST idx files when the user has them (LeCun et al.; never downloaded here).
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from clipaudit.data import ImageSource
from clipaudit.errors import ClipauditError

DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
DIGIT_TEMPLATES: tuple[str, ...] = ('a photo of the number "{}".',)
_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _upscale(gray: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) uint8 -> (N, size, size, 3) uint8, bilinear (white ink on black, as MNIST)."""
    out = np.stack([np.asarray(Image.fromarray(g, "L").resize((size, size), Image.BILINEAR)) for g in gray])
    return np.repeat(out[..., None], 3, axis=-1)


def sklearn_digits(size: int = 64, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled handwritten digits as (N, size, size, 3) uint8 images and (N,) labels.

    The 0-16 grey levels are scaled to 0-255 (ink bright on black, MNIST's convention).
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    gray = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    labels = d.target.astype(int)
    if limit is not None:
        gray, labels = gray[:limit], labels[:limit]
    return _upscale(gray, size), labels


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise ClipauditError(f"MNIST folder {str(folder)!r} has no {stem}[.gz]; expected the idx files "
                         f"{', '.join(s for pair in _MNIST_FILES.values() for s in pair)}")


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    with _open(path) as fh:
        data = fh.read()
    if len(data) < 4 + 4 * ndim or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] != ndim:
        raise ClipauditError(f"{str(path)!r} is not an idx file of unsigned bytes with {ndim} dimension(s)")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ClipauditError(f"{str(path)!r} is truncated: header says {shape}, found {body.size} bytes")
    return body.reshape(shape)


def read_mnist(folder: str | Path, split: str = "test", size: int = 64,
               limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST (or any idx-format digits) from ``folder``: (N, size, size, 3) uint8 and (N,) labels.

    Raises:
        ClipauditError: unknown split, missing or malformed files, image/label counts differ.
    """
    if split not in _MNIST_FILES:
        raise ClipauditError(f"unknown MNIST split {split!r}; valid: {', '.join(_MNIST_FILES)}")
    folder = Path(folder)
    if not folder.is_dir():
        raise ClipauditError(f"MNIST folder {str(folder)!r} does not exist")
    img_name, lab_name = _MNIST_FILES[split]
    images, labels = _read_idx(_find(folder, img_name), 3), _read_idx(_find(folder, lab_name), 1)
    if len(images) != len(labels):
        raise ClipauditError(f"MNIST {split}: {len(images)} images but {len(labels)} labels")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return _upscale(np.ascontiguousarray(images), size), labels.astype(int)


def digits_source(images: np.ndarray, labels: np.ndarray, name: str = "digits") -> ImageSource:
    """An :class:`ImageSource` of digit images (``task = "digits"``, ``label`` = "0".."9")."""
    items = pd.DataFrame({"id": [f"{name}/{i}" for i in range(len(labels))], "task": "digits",
                          "domain": name, "label": [str(int(v)) for v in labels]})
    arrays = {f"{name}/{i}": images[i] for i in range(len(labels))}
    return ImageSource(items, lambda row: arrays[str(row["id"])], f"digits:{name}", workers=1)


__all__ = ["DIGIT_CLASSES", "DIGIT_TEMPLATES", "digits_source", "read_mnist", "sklearn_digits"]
