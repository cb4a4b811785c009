"""The one route that serves files from disk: run-folder images and exported reports.

Why so strict: the dashboard may be pointed at a folder of many runs, and a URL is user input.
The requested path is resolved (symlinks and ``..`` included) and must lie inside the runs root;
only a few file types are served, and HTML reports are sandboxed (no scripts, no same-origin
access), because they contain labels that came from users. Anything else is a plain 404.
"""
from __future__ import annotations

from pathlib import Path

from flask import Flask, abort, request, send_file

__all__ = ["PREFIX", "SERVED_TYPES", "safe_path", "add_file_route"]

PREFIX = "/runfile/"
SERVED_TYPES = {".png": "image/png", ".html": "text/html", ".md": "text/plain", ".csv": "text/plain"}


def safe_path(root: Path, rel: str) -> Path | None:
    """``root / rel`` resolved, or None when it escapes ``root``, is not a file or not a served type."""
    root = Path(root).resolve()
    if not rel or "\x00" in rel:
        return None
    try:
        path = (root / rel).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if not path.is_relative_to(root) or not path.is_file() or path.suffix.lower() not in SERVED_TYPES:
        return None
    return path


def add_file_route(server: Flask, root: Path) -> None:
    """Serve ``/runfile/<rel>`` from inside ``root`` only; every other ``/runfile/`` path is 404.

    A ``before_request`` hook rather than a URL rule, so that paths a rule would not match
    (``/runfile//etc/passwd``) never fall through to Dash's catch-all page route.
    """
    root = Path(root).resolve()

    @server.before_request
    def _runfile():
        if not request.path.startswith(PREFIX):
            return None
        path = safe_path(root, request.path[len(PREFIX):])
        if path is None:
            abort(404)
        resp = send_file(path, mimetype=SERVED_TYPES[path.suffix.lower()], max_age=60)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        if path.suffix.lower() == ".html":
            resp.headers["Content-Security-Policy"] = ("sandbox; default-src 'none'; img-src 'self' data:; "
                                                       "style-src 'unsafe-inline'")
        return resp
