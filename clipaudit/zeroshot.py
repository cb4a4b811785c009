"""Zero-shot passes over an image source: the one loop typographic, adversarial and bias audits
share (and the one that runs data-parallel under torchrun).

Why shared: how class lists are read, how the target is added, how probabilities are computed
and how skipped files are reported must be the same in every audit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from clipaudit.data import Batch, ImageSource
from clipaudit.errors import ClipauditError
from clipaudit.model import DEFAULT_TEMPLATES, AuditModel, ZeroShotHead, check_template


def read_word_list(path: Path | str, what: str = "class") -> list[str]:
    """One entry per line (blank lines and '#' comments skipped); duplicates are an error."""
    path = Path(path)
    if not path.is_file():
        raise ClipauditError(f"{what} file {str(path)!r} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ClipauditError(f"{what} file {str(path)!r} is not UTF-8 text") from None
    items = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not items:
        raise ClipauditError(f"{what} file {str(path)!r} is empty; put one {what} per line")
    dup = sorted({i for i in items if items.count(i) > 1})
    if dup:
        raise ClipauditError(f"{what} file {str(path)!r} repeats: {', '.join(dup[:5])}")
    return items


def default_classes(model: AuditModel, source: ImageSource | None = None) -> list[str]:
    """The class list when none is given, most specific first: the source's own class
    vocabulary (``source.classnames``), the distinct ``label`` values of a labelled source
    (class folders), then the model's world (``model.classnames``: the toy's object classes)."""
    if source is not None and source.classnames:
        return list(source.classnames)
    if source is not None and "label" in source.items:
        labels = sorted({str(l) for l in source.items["label"] if str(l)})
        if labels:
            return labels
    if getattr(model, "classnames", None):
        return list(model.classnames)
    raise ClipauditError("no class list: pass --classes FILE (one class per line) or use class folders")


def resolve_classes(model: AuditModel, classes_file: str | None, source: ImageSource | None = None,
                    add: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(class list, names that were added because they were missing, e.g. the target)."""
    classes = read_word_list(classes_file) if classes_file else default_classes(model, source)
    added = [a for a in add if a not in classes]
    return classes + added, added


def require_classes(classes: Sequence[str], what: str = "the attack") -> list[str]:
    """``classes`` when it holds at least two; a one-class head predicts that class for every
    image, so success rates and accuracies over it mean nothing.

    Raises:
        ClipauditError: fewer than two classes, naming them and the way out (``--classes``).
    """
    if len(classes) < 2:
        raise ClipauditError(f"the zero-shot head has {len(classes)} class(es) ({', '.join(map(repr, classes))}): "
                             f"it predicts that class for every image, so {what} would measure nothing; give "
                             f"at least two classes (--classes FILE, one per line)")
    return list(classes)


def read_templates(path: str | None) -> list[str]:
    if not path:
        return list(DEFAULT_TEMPLATES)
    templates = read_word_list(path, "template")
    for t in templates:
        try:
            check_template(t)
        except ValueError as err:
            raise ClipauditError(f"{err} (in template file {str(path)!r})") from None
    return templates


@torch.no_grad()
def predict_probs(head: ZeroShotHead, pixels: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Probabilities (B, C) of the zero-shot head on pixels in [0, 1], by the head's own rule
    (:meth:`ZeroShotHead.probabilities`: softmax, or one sigmoid per class for SigLIP)."""
    out = []
    for i in range(0, len(pixels), batch_size):
        out.append(head.probabilities(head(pixels[i:i + batch_size])).cpu())
    return torch.cat(out) if out else torch.zeros(0, len(head.classnames))


def iterate(source: ImageSource, model: AuditModel, batch_size: int = 32,
            progress: Callable | None = None, rank: int = 0, world_size: int = 1,
            desc: str = "images") -> Iterator[Batch]:
    """Batches of ``source`` for this process (its shard when ``world_size`` > 1); ``desc``
    names the stage on the progress bar (``attack``, ``sweep``, ``bias`` ...)."""
    src = source.shard(rank, world_size) if world_size > 1 else source
    n_batches = (len(src) + batch_size - 1) // batch_size
    it = src.batches(model, batch_size)
    return progress(it, total=n_batches, desc=desc) if progress else it


def probs_table(ids: Sequence[str], probs: torch.Tensor, classnames: Sequence[str], prefix: str = "") -> pd.DataFrame:
    """Top-1 prediction and its probability per image as a tidy table."""
    p = probs.numpy()
    top = p.argmax(1)
    return pd.DataFrame({"id": list(ids), f"{prefix}pred": [classnames[i] for i in top],
                         f"{prefix}p_pred": p[np.arange(len(p)), top]})
