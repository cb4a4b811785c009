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

import atexit
import io
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
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


def expand_out(path: Path | str) -> Path:
    """A user-typed path with ``~`` expanded (``--out "~/x"`` must not create a literal ``./~``)."""
    return Path(os.path.expanduser(str(path)))


# -- who may write a run folder ---------------------------------------------------------------

EXISTING_POLICIES = ("refuse", "force", "resume")
_POLICY: ContextVar[str] = ContextVar("clipaudit_existing_run", default="refuse")


@contextmanager
def existing_run_policy(policy: str) -> Iterator[None]:
    """Within this block, :meth:`RunFolder.create` treats an occupied run folder per ``policy``.

    The CLI sets it from ``--force``/``--resume`` once, so every audit command honours the flags
    without each passing them on; ``clipaudit audit`` uses ``resume`` for its sub-audits.

    Raises:
        ValueError: ``policy`` is not one of ``refuse``, ``force``, ``resume``.
    """
    if policy not in EXISTING_POLICIES:
        raise ValueError(f"existing-run policy {policy!r} is not one of {', '.join(EXISTING_POLICIES)}")
    token = _POLICY.set(policy)
    try:
        yield
    finally:
        _POLICY.reset(token)


def policy_from_flags(force: bool = False, resume: bool = False) -> str:
    """``--force``/``--resume`` -> a policy name; both at once is an error."""
    if force and resume:
        raise ClipauditError("--force (replace the run) and --resume (add to it) exclude each other; pass one")
    return "force" if force else "resume" if resume else "refuse"


LOCK = ".clipaudit.lock"
_HELD: dict[Path, int] = {}  # lock path -> how many RunFolders of this process hold it


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _lock_owner(path: Path) -> dict:
    try:
        owner = json.loads(path.read_text())
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        return {}


def acquire_lock(folder: Path) -> Path:
    """Take ``folder``'s writer lock (a file created with O_EXCL holding pid, host and time).

    Re-entrant within one process (``clipaudit audit`` and its sub-audits share a folder). A lock
    left by a dead process on this host is taken over with a note on stderr.

    Raises:
        ClipauditError: another live process holds the lock, or the folder cannot be written.
    """
    lock = (folder / LOCK).resolve()
    if _HELD.get(lock):
        _HELD[lock] += 1
        return lock
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock)
            pid, host = owner.get("pid"), owner.get("host")
            same_host = host == me["host"]
            if isinstance(pid, int) and same_host and pid == me["pid"]:
                lock.unlink(missing_ok=True)  # our own leftover (a RunFolder never finished)
                continue
            if isinstance(pid, int) and same_host and not _pid_alive(pid):
                print(f"note: taking over the lock of {folder} left by process {pid}, which has ended",
                      file=sys.stderr)
                lock.unlink(missing_ok=True)
                continue
            if not owner:  # unreadable lock (a writer between create and write): wait for it once
                time.sleep(0.2)
                if not lock.exists():
                    continue
                owner = _lock_owner(lock)
            raise ClipauditError(
                f"run folder {str(folder)!r} is being written by process {owner.get('pid', '?')} on "
                f"{owner.get('host', '?')} (since {owner.get('since', '?')}); wait for it to finish or choose "
                f"another --out (delete {LOCK} there only if that process is gone)")
        except OSError as err:
            raise _unwritable(folder, err) from None
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(me))
        _HELD[lock] = 1
        _install_sigterm()
        return lock
    raise ClipauditError(f"could not take the lock of run folder {str(folder)!r}; try again")


def release_lock(lock: Path) -> None:
    """Drop one hold of a lock taken by :func:`acquire_lock`; the file goes with the last."""
    count = _HELD.get(lock, 0)
    if count > 1:
        _HELD[lock] = count - 1
        return
    _HELD.pop(lock, None)
    if _lock_owner(lock).get("pid") == os.getpid():
        lock.unlink(missing_ok=True)
    if not _HELD:
        _restore_sigterm()


@atexit.register
def _release_all() -> None:
    for lock in list(_HELD):
        _HELD[lock] = 1
        release_lock(lock)


_OLD_SIGTERM: list = []


def _sigterm(signum, frame) -> None:
    raise KeyboardInterrupt("SIGTERM")


def _install_sigterm() -> None:
    """While a run folder is written, SIGTERM ends the run like Ctrl-C (status ``interrupted``)."""
    if _OLD_SIGTERM or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            _OLD_SIGTERM.append(signal.signal(signal.SIGTERM, _sigterm))
    except (ValueError, OSError):
        pass


def _restore_sigterm() -> None:
    if _OLD_SIGTERM and threading.current_thread() is threading.main_thread():
        try:
            signal.signal(signal.SIGTERM, _OLD_SIGTERM.pop())
        except (ValueError, OSError):
            pass


def _unwritable(path: Path, err: OSError, flag: str = "--out") -> ClipauditError:
    why = err.strerror or type(err).__name__
    return ClipauditError(f"{flag} {str(path)!r} cannot be written ({why}); choose a folder you can write to")


def _make_folder(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise ClipauditError(f"--out {str(path)!r} exists and is not a folder; choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _unwritable(path, err) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ClipauditError(f"--out {str(path)!r} cannot be written (permission denied); "
                             "choose a folder you can write to")


def check_writable(path: Path | str, flag: str = "--to") -> Path:
    """``path`` (``~`` expanded) if a file could be created there, checked before any work is done.

    Raises:
        ClipauditError: a parent of ``path`` is a regular file, or the nearest existing folder
            cannot be written.
    """
    path = expand_out(path)
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ClipauditError(f"{flag} {str(path)!r} cannot be written ({str(parent)!r} is a file, not a folder); "
                             "choose a folder you can write to")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ClipauditError(f"{flag} {str(path)!r} cannot be written (no permission on {str(parent)!r}); "
                             "choose a folder you can write to")
    return path


def write_export(path: Path | str, text: str, flag: str = "--to") -> Path:
    """Write a user-chosen export file atomically; an unwritable path is a one-line error.

    Raises:
        ClipauditError: ``path`` is a folder, lies under a regular file, or cannot be written.
    """
    path = expand_out(path)
    if path.is_dir():
        raise ClipauditError(f"{flag} {str(path)!r} is a folder; give a file name")
    try:
        atomic_write_text(path, text)
    except OSError as err:
        raise _unwritable(path, err, flag) from None
    return path


# -- what an occupied folder may receive ---------------------------------------------------

def _read_json_object(path: Path) -> dict | None:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _audit_details(manifest: dict) -> dict[str, dict]:
    """Per-audit provenance; older manifests (one audit, no details) get one built from the top."""
    details = manifest.get("audits_detail")
    if isinstance(details, dict):
        return {k: v for k, v in details.items() if isinstance(v, dict)}
    command = manifest.get("command")
    if not isinstance(command, str):
        return {}
    keys = ("command_line", "model", "seed", "config", "started", "finished", "status")
    return {command: {k: manifest.get(k) for k in keys}}


def _weights(model_facts: Any) -> tuple[Any, Any]:
    facts = model_facts if isinstance(model_facts, dict) else {}
    return facts.get("name"), facts.get("weights_hash")


def _check_resume(path: Path, old: dict, command: str, model_facts: dict | None, seed: int | None) -> None:
    """Refuse ``--resume`` when the folder's audits are of another model or seed, or already done."""
    old_name, old_hash = _weights(old.get("model"))
    new_name, new_hash = _weights(model_facts)
    if model_facts is not None and old.get("model") is not None and old_hash != new_hash:
        raise ClipauditError(
            f"--resume: {str(path)!r} holds audits of {old_name} (weights {old_hash}) but this is {new_name} "
            f"(weights {new_hash}); one run folder holds one model: choose another --out")
    if seed is not None and old.get("seed") is not None and old.get("seed") != seed:
        raise ClipauditError(f"--resume: {str(path)!r} was run with --seed {old.get('seed')}, not {seed}; "
                             "pass the same seed or choose another --out")
    done = _audit_details(old).get(command, {})
    if command != "audit" and done.get("status") == "complete":
        raise ClipauditError(f"--resume: {str(path)!r} already holds a complete {command} audit; "
                             "--force replaces the whole run, or choose another --out")


def _clear_run(path: Path, old: dict | None) -> None:
    """Delete an old run's files (``--force``) so no stale table or picture survives."""
    if old is None or "clipaudit_run" not in old:
        raise ClipauditError(f"--force: {str(path)!r} has a manifest.json that is not a clipaudit run's; "
                             "refusing to clear the folder: choose another --out")
    for child in path.iterdir():
        if child.name == LOCK:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def aggregate_status(details: dict[str, dict]) -> str:
    """A folder's status from its audits': running > interrupted > failed > complete."""
    states = {d.get("status") for d in details.values()}
    for state in ("running", "interrupted", "failed"):
        if state in states:
            return state
    return "complete" if states else "running"


class RunFolder:
    """A run folder being written. Create with :meth:`create`; call :meth:`finish` at the end.

    One folder may hold several audits of one model (``clipaudit audit``, or ``--resume``);
    ``manifest.json["audits_detail"][<audit>]`` keeps each one's command line, model, seed,
    config, start, finish and status, and ``configs[<audit>]`` its config. The top-level
    ``started``/``command_line`` are those of the audit that created the folder.

    Example:
        >>> run = RunFolder.create("neurons", out=None, model=m, seed=0)
        >>> run.write_table("neurons", df); run.update_summary({"n_neurons": 512})
        >>> run.finish()
    """

    def __init__(self, path: Path, command: str | None = None) -> None:
        self.path = Path(path)
        self.command = command
        self._lock: Path | None = None

    @classmethod
    def create(cls, command: str, out: Path | str | None = None, model=None, seed: int | None = None,
               argv: list[str] | None = None, config: dict | None = None, extra: dict | None = None,
               existing: str | None = None) -> "RunFolder":
        """Start (or join) a run folder and take its writer lock.

        Args:
            existing: what to do when ``out`` already holds a run (a ``manifest.json``):
                ``refuse`` (default), ``force`` (delete the old run's files first) or ``resume``
                (add this audit; same model weights and seed only). None: the policy set by
                :func:`existing_run_policy` (the CLI's ``--force``/``--resume``).

        Raises:
            ClipauditError: the folder is occupied and ``existing`` does not allow it, another
                process is writing it, or it cannot be written.
        """
        policy = existing or _POLICY.get()
        if policy not in EXISTING_POLICIES:
            raise ValueError(f"existing={policy!r} is not one of {', '.join(EXISTING_POLICIES)}")
        path = expand_out(out) if out else default_run_dir(command)
        _make_folder(path)
        run = cls(path, command)
        run._lock = acquire_lock(path)
        try:
            run._start(command, policy, model, seed, argv, config, extra)
        except BaseException:
            run._release()
            raise
        return run

    def _start(self, command: str, policy: str, model, seed, argv, config, extra) -> None:
        path = self.path
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        facts = model.describe() if model is not None else None
        command_line = shlex.join(["clipaudit", *(sys.argv[1:] if argv is None else argv)])
        detail = {"command_line": command_line, "model": facts, "seed": seed, "config": config or {},
                  "started": now, "finished": None, "status": "running"}
        old = None
        if (path / MANIFEST).exists():
            old = _read_json_object(path / MANIFEST)
            if policy == "refuse":
                what = ", ".join(old.get("audits") or [str(old.get("command"))]) if old else "a damaged run"
                raise ClipauditError(
                    f"--out {str(path)!r} already holds a run ({what}); pass --force to replace it, --resume to "
                    "add an audit of the same model, or choose another --out")
            if policy == "force":
                _clear_run(path, old)
                old = None
            elif old is None:
                raise ClipauditError(f"--resume: {str(path)!r} has a damaged manifest.json; "
                                     "--force replaces the run, or choose another --out")
            else:
                _check_resume(path, old, command, facts, seed)
        if old is None:
            manifest = {"clipaudit_run": 1, "command": command, "command_line": command_line, "model": facts,
                        "seed": seed, "config": config or {}, "versions": package_versions(),
                        "platform": platform.platform(), "started": now, "finished": None, "status": "running",
                        **(extra or {})}
            details: dict[str, dict] = {}
        else:
            manifest = {**old, **(extra or {})}
            details = _audit_details(old)
            if manifest.get("model") is None:
                manifest["model"] = facts
        details[command] = detail
        audits = [a for a in (old or {}).get("audits") or [] if isinstance(a, str) and a != "audit"]
        manifest["audits"] = audits + [c for c in details if c not in audits and c != "audit"]
        manifest["audits_detail"] = details
        configs = manifest.get("configs") if isinstance(manifest.get("configs"), dict) else {}
        manifest["configs"] = {**configs, **({command: config} if config is not None else {})}
        manifest["status"] = aggregate_status(details)
        manifest["finished"] = None
        self.write_json(MANIFEST, manifest)

    def _release(self) -> None:
        if self._lock is not None:
            release_lock(self._lock)
            self._lock = None

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

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Write ``data`` atomically to ``name``, a relative path that must stay inside the folder.

        Raises:
            ValueError: ``name`` is absolute or climbs out of the run folder.
        """
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"run-folder file names are relative paths inside the folder, got {name!r}")
        atomic_write_bytes(self.path / rel, bytes(data))
        return self.path / rel

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
        """Record this audit's end (``complete``, ``failed`` or ``interrupted``) and release the lock."""
        try:
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            manifest = _read_json_object(self.path / MANIFEST) or {}
            details = _audit_details(manifest)
            if self.command in details:
                details[self.command].update({"finished": now, "status": status})
                manifest["audits_detail"] = details
                status = aggregate_status(details)
            manifest.update({"finished": now, "status": status})
            self.write_json(MANIFEST, manifest)
        finally:
            self._release()

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
    """A finished or half-written run folder, for readers. Tables load lazily.

    ``damaged`` is None for a readable run, else why it cannot be trusted (its manifest or
    summary is not what a run writes); such views come only from ``open_run(...,
    allow_damaged=True)`` / ``list_runs(..., include_damaged=True)`` and hold an empty
    manifest/summary.
    """

    path: Path
    manifest: dict
    summary: dict = field(default_factory=dict)
    damaged: str | None = None

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
        """The table ``name`` (Parquet when readable, else CSV).

        Raises:
            ClipauditError: the run has no such table, or neither file can be parsed (one line,
                naming the file).
        """
        pq, csv = self.path / f"{name}.parquet", self.path / f"{name}.csv"
        if pq.is_file():
            try:
                return pd.read_parquet(pq)
            except Exception:
                pass
        if csv.is_file():
            try:
                return pd.read_csv(csv)
            except (ValueError, OSError) as err:  # ParserError, EmptyDataError, bad bytes
                why = " ".join(str(err).split()) or type(err).__name__
                raise ClipauditError(f"run {self.name}: table {csv.name} cannot be read ({why}); "
                                     "the run folder is damaged") from None
        if pq.is_file():
            raise ClipauditError(f"run {self.name}: table {pq.name} cannot be read and has no CSV copy; "
                                 "the run folder is damaged")
        raise ClipauditError(f"run {self.name} has no table {name!r}; it has: {', '.join(self.tables()) or 'none'}")

    def images(self) -> list[Path]:
        return sorted((self.path / IMAGES).glob("*.png"))


# the manifest fields readers rely on, and the JSON types a run writes for them
_MANIFEST_TYPES: dict[str, tuple[type, ...]] = {
    "command": (str, type(None)), "command_line": (str,), "started": (str, type(None)),
    "finished": (str, type(None)), "status": (str,), "audits": (list,), "model": (dict, type(None)),
    "seed": (int, type(None)), "config": (dict,), "audits_detail": (dict,), "configs": (dict,),
}
_JSON_NAMES = {str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object",
               bool: "true/false", type(None): "null"}


def _kind(obj: Any) -> str:
    return _JSON_NAMES.get(type(obj), type(obj).__name__)


def manifest_problem(manifest: Any) -> str | None:
    """Why ``manifest`` (parsed JSON) is not the shape a run writes, or None when it is."""
    if not isinstance(manifest, dict):
        return f"{MANIFEST} holds {_kind(manifest)}, not an object"
    for key, types in _MANIFEST_TYPES.items():
        if key in manifest and (not isinstance(manifest[key], types) or isinstance(manifest[key], bool)):
            return f"{MANIFEST} field {key!r} is {_kind(manifest[key])} ({str(manifest[key])[:40]!r})"
    if any(not isinstance(a, str) for a in manifest.get("audits") or []):
        return f"{MANIFEST} field 'audits' holds something other than audit names"
    return None


def _read_run_json(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text()), None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, f"{path.name} is not valid JSON"
    except OSError as err:
        return None, f"{path.name} cannot be read ({err.strerror or type(err).__name__})"


def open_run(path: Path | str, allow_damaged: bool = False) -> RunView:
    """Read a run folder's manifest and summary.

    Args:
        allow_damaged: return a view with ``damaged`` set (the reason) instead of raising when
            the manifest or summary is not what a run writes.

    Raises:
        ClipauditError: ``path`` is not a run folder (no manifest), or it is damaged and
            ``allow_damaged`` is False (the message names the file and the fault).
    """
    path = expand_out(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ClipauditError(f"{str(path)!r} is not a clipaudit run folder (no {MANIFEST})")
    manifest, problem = _read_run_json(mpath)
    if problem is None:
        problem = manifest_problem(manifest)
    summary: Any = {}
    spath = path / SUMMARY
    if problem is None and spath.exists():
        summary, problem = _read_run_json(spath)
        if problem is None and not isinstance(summary, dict):
            problem = f"{SUMMARY} holds {_kind(summary)}, not an object"
        elif problem is None and any(not isinstance(v, dict) for v in summary.values()):
            bad = next(k for k, v in summary.items() if not isinstance(v, dict))
            problem = f"{SUMMARY} section {bad!r} is {_kind(summary[bad])}, not an object"
    if problem is not None:
        if not allow_damaged:
            raise ClipauditError(f"run folder {str(path)!r} is damaged: {problem}")
        return RunView(path, {}, {}, damaged=problem)
    return RunView(path, manifest, summary)


def list_runs(root: Path | str = "runs", include_damaged: bool = False) -> list[RunView]:
    """Run folders directly under ``root`` (and ``root`` itself if it is one), newest first.

    Damaged runs are left out, or listed last with ``damaged`` set when ``include_damaged``.
    """
    root = expand_out(root)
    candidates = [root] if (root / MANIFEST).is_file() else []
    if root.is_dir():
        candidates += [p for p in root.iterdir() if p.is_dir() and (p / MANIFEST).is_file()]
    views = [open_run(p, allow_damaged=True) for p in candidates]
    good = sorted((v for v in views if v.damaged is None), key=lambda v: v.manifest.get("started") or "",
                  reverse=True)
    bad = sorted((v for v in views if v.damaged is not None), key=lambda v: v.name)
    return good + bad if include_damaged else good
