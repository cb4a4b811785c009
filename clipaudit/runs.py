"""Run folders: every audit writes its tables, images and manifest here, and readers (the
dashboard, ``clipaudit diff``, reports) read only from here.

Why atomic writes: an audit may be stopped at any moment (Ctrl-C, a session limit). Each file
is written to a temporary name and renamed, so a reader sees either the previous complete file
or the new complete one; results are written as they finish, so nothing finished is lost.

Layout of a run folder::

    manifest.json     command line, model facts, seed, versions, start/end, status
    summary.json      headline numbers (merged as audits finish)
    <table>.csv       every table, also as <table>.parquet
    images/*.png      pictures
"""
from __future__ import annotations

import io
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from clipaudit.errors import ClipauditError

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
IMAGES = "images"
_PACKAGES = ("clipaudit", "torch", "torchvision", "open_clip_torch", "numpy", "pandas", "pillow",
             "captum", "torch-lucent", "plotly", "dash")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return None if np.isnan(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=_json_default, allow_nan=False) if not _has_nan(obj) \
        else json.dumps(_strip_nan(obj), indent=2, default=_json_default)


def _has_nan(obj: Any) -> bool:
    if isinstance(obj, float):
        return obj != obj or obj in (float("inf"), float("-inf"))
    if isinstance(obj, dict):
        return any(_has_nan(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_nan(v) for v in obj)
    return False


def _strip_nan(obj: Any) -> Any:
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: _strip_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strip_nan(v) for v in obj]
    return obj


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def default_run_dir(command: str, root: Path | str = "runs") -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{command}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{command}-{stamp}-{n}"
    return path


class RunFolder:
    """A run folder being written. Create with :meth:`create`; call :meth:`finish` at the end.

    Example:
        >>> run = RunFolder.create("neurons", out=None, model=m, seed=0)
        >>> run.write_table("neurons", df); run.update_summary({"n_neurons": 512})
        >>> run.finish()
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, command: str, out: Path | str | None = None, model=None, seed: int | None = None,
               argv: list[str] | None = None, config: dict | None = None, extra: dict | None = None) -> "RunFolder":
        path = Path(out) if out else default_run_dir(command)
        if path.exists() and not path.is_dir():
            raise ClipauditError(f"--out {str(path)!r} exists and is not a folder; choose another path")
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        manifest = {
            "clipaudit_run": 1,
            "command": command,
            "command_line": shlex.join(["clipaudit", *(sys.argv[1:] if argv is None else argv)]),
            "model": model.describe() if model is not None else None,
            "seed": seed,
            "config": config or {},
            "versions": package_versions(),
            "platform": platform.platform(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "finished": None,
            "status": "running",
            **(extra or {}),
        }
        if (path / MANIFEST).is_file():  # one run folder may hold several audits (clipaudit audit)
            old = json.loads((path / MANIFEST).read_text())
            manifest["audits"] = sorted(set(old.get("audits", [old.get("command")])) | {command})
            manifest["started"] = old.get("started", manifest["started"])
        else:
            manifest["audits"] = [command]
        run.write_json(MANIFEST, manifest)
        return run

    # -- writing ------------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> Path:
        path = self.path / name
        atomic_write_text(path, to_json(obj))
        return path

    def write_table(self, name: str, df: pd.DataFrame, parquet: bool = True) -> Path:
        """``name.csv`` and ``name.parquet`` (the CSV for people, the Parquet for types)."""
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"write_table needs a DataFrame, got {type(df).__name__}")
        csv_path = self.path / f"{name}.csv"
        atomic_write_text(csv_path, df.to_csv(index=False))
        if parquet:
            buf = io.BytesIO()
            try:
                df.to_parquet(buf, index=False)
                atomic_write_bytes(self.path / f"{name}.parquet", buf.getvalue())
            except (ImportError, ValueError, TypeError):
                pass  # CSV stays the record when a column type has no Parquet form
        return csv_path

    def write_png(self, name: str, image) -> Path:
        """Save a PIL image or a matplotlib figure as ``images/<name>.png``."""
        buf = io.BytesIO()
        if hasattr(image, "savefig"):
            image.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        else:
            image.save(buf, format="PNG")
        rel = Path(IMAGES) / f"{name}.png"
        atomic_write_bytes(self.path / rel, buf.getvalue())
        return rel

    def write_text(self, name: str, text: str) -> Path:
        atomic_write_text(self.path / name, text)
        return self.path / name

    def update_summary(self, values: dict, section: str | None = None) -> dict:
        """Merge headline numbers into ``summary.json`` (under ``section`` when given)."""
        path = self.path / SUMMARY
        summary = json.loads(path.read_text()) if path.is_file() else {}
        if section:
            summary.setdefault(section, {}).update(values)
        else:
            summary.update(values)
        self.write_json(SUMMARY, summary)
        return summary

    def update_manifest(self, values: dict) -> None:
        manifest = json.loads((self.path / MANIFEST).read_text())
        manifest.update(values)
        self.write_json(MANIFEST, manifest)

    def finish(self, status: str = "complete") -> None:
        self.update_manifest({"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "status": status})

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish("complete")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("interrupted")
        else:
            self.finish("failed")


# ---------------------------------------------------------------------------- reading

@dataclass
class RunView:
    """A finished or half-written run folder, for readers. Tables load lazily."""

    path: Path
    manifest: dict
    summary: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def audits(self) -> list[str]:
        return list(self.manifest.get("audits") or [self.manifest.get("command")])

    def tables(self) -> list[str]:
        return sorted(p.stem for p in self.path.glob("*.csv"))

    def has_table(self, name: str) -> bool:
        return (self.path / f"{name}.csv").is_file() or (self.path / f"{name}.parquet").is_file()

    def table(self, name: str) -> pd.DataFrame:
        pq, csv = self.path / f"{name}.parquet", self.path / f"{name}.csv"
        if pq.is_file():
            try:
                return pd.read_parquet(pq)
            except Exception:
                pass
        if csv.is_file():
            return pd.read_csv(csv)
        raise ClipauditError(f"run {self.name} has no table {name!r}; it has: {', '.join(self.tables()) or 'none'}")

    def images(self) -> list[Path]:
        return sorted((self.path / IMAGES).glob("*.png"))


def open_run(path: Path | str) -> RunView:
    """Read a run folder's manifest and summary; a clear error when it is not one."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ClipauditError(f"{str(path)!r} is not a clipaudit run folder (no {MANIFEST})")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError:
        raise ClipauditError(f"{str(mpath)!r} is not valid JSON; the run folder is damaged") from None
    spath = path / SUMMARY
    try:
        summary = json.loads(spath.read_text()) if spath.is_file() else {}
    except json.JSONDecodeError:
        summary = {}
    return RunView(path, manifest, summary)


def list_runs(root: Path | str = "runs") -> list[RunView]:
    """Run folders directly under ``root`` (and ``root`` itself if it is one), newest first."""
    root = Path(root)
    candidates = [root] if (root / MANIFEST).is_file() else []
    if root.is_dir():
        candidates += [p for p in root.iterdir() if p.is_dir() and (p / MANIFEST).is_file()]
    views = []
    for p in candidates:
        try:
            views.append(open_run(p))
        except ClipauditError:
            continue
    return sorted(views, key=lambda v: v.manifest.get("started") or "", reverse=True)


def iter_tables(run: RunView) -> Iterator[tuple[str, pd.DataFrame]]:
    for name in run.tables():
        yield name, run.table(name)


def elapsed(start: float) -> float:
    return round(time.time() - start, 3)
