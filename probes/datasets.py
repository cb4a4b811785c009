"""Readers for real distribution-shift datasets in the layouts they are distributed in (stub)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from clipaudit.data import ImageSource
from clipaudit.errors import ClipauditError, suggest


@dataclass(frozen=True)
class Layout:
    name: str
    read: Callable[[str], ImageSource]
    doc: str


LAYOUTS: dict[str, Layout] = {}


def open_spec(spec: str) -> ImageSource:
    """``LAYOUT:DIR`` through its reader, else a class-folder tree or CSV (:func:`clipaudit.data.open_source`)."""
    from pathlib import Path

    from clipaudit.data import open_source

    layout, sep, path = str(spec).partition(":")
    if sep and not Path(spec).exists():
        if layout not in LAYOUTS:
            raise ClipauditError(f"unknown dataset layout {layout!r}{suggest(layout, LAYOUTS)}; "
                                 f"valid: {', '.join(LAYOUTS) or 'none'}")
        return LAYOUTS[layout].read(path)
    return open_source(spec)
