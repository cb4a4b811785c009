"""The one exception type users see: a single sentence saying what was wrong and what to do.

The CLI prints ``error: <message>`` and exits non-zero for these (and for ``ValueError`` raised
on bad input); anything else is a bug and keeps its traceback under ``--debug``.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class ClipauditError(Exception):
    """A user-facing error; ``str(err)`` is the whole message, on one line."""


def suggest(name: str, options: Iterable[str], n: int = 5) -> str:
    """'did you mean: a, b?' for the options closest to ``name`` (empty string when none)."""
    options = list(options)
    close = difflib.get_close_matches(name, options, n=n, cutoff=0.4)
    if not close:
        close = [o for o in options if name.lower() in o.lower()][:n]
    return f"; did you mean: {', '.join(close)}?" if close else ""
