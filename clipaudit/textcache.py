"""An on-disk cache of text embeddings, so a prompt is encoded once per model, ever.

Why: every audit embeds the same few thousand concept, label and template prompts, and on a
CPU the text tower is a large share of a short run. An embedding depends only on the text
tower's weights, the tokenizer and the numeric precision, so a shard is keyed by exactly
those: ``<weights hash>-<precision>-<tokenizer fingerprint>``; a changed or retrained
checkpoint has another weights hash and never reads another model's entries. Within a shard,
the key is the exact prompt string.

What is stored: the raw (unnormalised) float32 embedding, the value
:meth:`AuditModel.encode_texts` computes before its optional L2 normalisation, so one entry
serves ``normalize=True`` and ``False`` alike and the normalised result is the same function
of the same numbers.

Where: ``$CLIPAUDIT_CACHE_DIR/text`` when set, else ``$XDG_CACHE_HOME/clipaudit/text``, else
``~/.cache/clipaudit/text``. One safetensors file per shard holds the (N, D) matrix and, in
its header, the N prompts (the index travels with the data, so the two cannot disagree);
writes go to a temporary file that replaces the shard atomically. A shard that cannot be read
is ignored with one warning (and rewritten on the next store); a folder that cannot be written
warns once and the run goes on uncached. ``--no-cache`` (``load_model(..., text_cache=False)``)
bypasses it entirely.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch

ENV_DIR = "CLIPAUDIT_CACHE_DIR"
_PROBE_TEXT = "a photo of a Zebra, 42 ü"  # tokenizer fingerprint input: case, digits, non-ASCII
_warned: set[str] = set()
_shards: dict[Path, "TextShard"] = {}


def cache_dir() -> Path:
    """The text-embedding cache folder (read from the environment on every call)."""
    root = os.environ.get(ENV_DIR)
    if root:
        return Path(root).expanduser() / "text"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "clipaudit" / "text"


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=4)


def shard_key(model) -> str:
    """``<weights hash>-<precision>-<tokenizer fingerprint>`` of an AuditModel."""
    fp = getattr(model, "_tokenizer_fp", None)
    if fp is None:
        tokens = model.tokenizer([_PROBE_TEXT])
        fp = hashlib.sha256(repr(tuple(tokens.shape)).encode() + tokens.cpu().numpy().tobytes()).hexdigest()[:8]
        object.__setattr__(model, "_tokenizer_fp", fp)
    return f"{model.weights_hash}-{model.precision}-{fp}"


class TextShard:
    """One model's cached prompts: an in-memory dict backed by one safetensors file.

    Args:
        path: the shard file (``<cache_dir>/<shard_key>.safetensors``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, torch.Tensor] = {}
        self._stamp: tuple[int, int] | None = None
        self.writable = True

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def refresh(self) -> None:
        """Read the file again when it changed on disk (another run may have added prompts)."""
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            return
        self._stamp = stamp
        self.rows.update(_read(self.path))

    def lookup(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """The cached (D,) embeddings among ``prompts``."""
        self.refresh()
        return {p: self.rows[p] for p in prompts if p in self.rows}

    def store(self, new: dict[str, torch.Tensor]) -> None:
        """Add entries and rewrite the file atomically; an unwritable folder warns once."""
        self.refresh()
        self.rows.update({p: e.detach().float().cpu() for p, e in new.items()})
        if not self.writable:
            return
        try:
            _write(self.path, self.rows)
        except OSError as err:
            self.writable = False
            _warn_once(f"write:{self.path.parent}",
                       f"text-embedding cache folder {str(self.path.parent)!r} is not writable "
                       f"({err.strerror or type(err).__name__}); running uncached. Set {ENV_DIR} to a "
                       "writable folder or pass --no-cache")
            return
        self._stamp = self._file_stamp()


def _read(path: Path) -> dict[str, torch.Tensor]:
    """Prompt -> (D,) embedding from a shard file; {} with one warning when it is unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            prompts = json.loads((f.metadata() or {})["prompts"])
            emb = f.get_tensor("embeddings")
        if not isinstance(prompts, list) or emb.ndim != 2 or emb.shape[0] != len(prompts):
            raise ValueError("prompt list and embedding matrix disagree")
    except Exception as err:  # any damage: a truncated file, a foreign file, a bad header
        _warn_once(f"read:{path}", f"ignoring unreadable text-embedding cache file {str(path)!r} "
                                   f"({type(err).__name__}); it will be rewritten")
        return {}
    return dict(zip(prompts, emb.float()))


def _write(path: Path, rows: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    prompts = list(rows)
    emb = torch.stack([rows[p] for p in prompts]).contiguous()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({"embeddings": emb}, tmp, metadata={"prompts": json.dumps(prompts, ensure_ascii=False)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def shard_for(model) -> TextShard:
    """The shard of ``model`` in the current cache folder (one object per file per process)."""
    path = cache_dir() / f"{shard_key(model)}.safetensors"
    if path not in _shards:
        _shards[path] = TextShard(path)
    return _shards[path]


def cached_encode(model, texts: Sequence[str], encode: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
    """Raw text embeddings (N, D) float32 on ``model.device`` for ``texts``, in order.

    Prompts found in the model's shard are read; the others are encoded once each (repeats
    included once) by ``encode`` (list of prompts -> (M, D) raw embeddings) and stored. With
    ``model.text_cache`` False this is ``encode(texts)``.
    """
    texts = list(texts)
    if not getattr(model, "text_cache", True):
        return encode(texts)
    shard = shard_for(model)
    unique = list(dict.fromkeys(texts))
    found = shard.lookup(unique)
    missing = [t for t in unique if t not in found]
    if missing:
        encoded = encode(missing).float()
        new = dict(zip(missing, encoded))
        if bool(torch.isfinite(encoded).all()):  # a broken model's NaNs are reported, never kept
            shard.store(new)
        found.update(new)
    device = getattr(model, "device", "cpu")
    return torch.stack([found[t].to(device) for t in texts])
