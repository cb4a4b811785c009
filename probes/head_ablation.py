"""Ablate attention heads of an unmodified open_clip vision tower, and the head-mask file.

Why through :func:`clipaudit.hooks.patch`: a head's output is mixed with the others by the output
projection before any module hands it out, so it cannot be zeroed by hooking a module output
directly. Instead, per layer, the block's ``ln_1`` output of the *same* forward is captured, the
chosen heads' outputs are recomputed from it (:func:`clipaudit.probes.decompose.head_values`) and
``W_o,h (z_h - m_h)`` is subtracted from the attention output (patched at ``ls_1``; ResNet: from
the attention pool's output, with ``layer4`` captured). Since ``out_proj`` is linear this equals
replacing the head's output ``z_h`` by ``m_h`` (its mean over reference images: mean-ablation) or
by zero (zero-ablation), exactly, and every later layer sees the ablated stream.

A head mask (what ``--defend typographic`` writes and every audit's ``--ablate-heads`` reads) is
JSON::

    {"format": "clipaudit-head-mask/1", "mode": "mean"|"zero", "heads": [[layer, head], ...],
     "means": {"layer.head": [[...], ...]}, "model": ..., "weights_hash": ...}

or plain text, one ``layer.head`` (or ``layer,head``) per line, meaning zero-ablation.
"""
from __future__ import annotations

import json
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch

from clipaudit.errors import ClipauditError
from clipaudit.hooks import capture, patch
from clipaudit.probes.decompose import attention_layers, head_values, n_heads

MODES = ("mean", "zero")
MASK_FORMAT = "clipaudit-head-mask/1"

Head = tuple[int, int]


@dataclass
class HeadMask:
    """Heads to ablate and how.

    Attributes:
        heads: (layer, head) pairs, layer counted over the attention layers (ResNet: 0 only).
        mode: ``mean`` or ``zero``.
        means: (layer, head) -> the head's mean output before ``out_proj``: ViT (T, dh) per token
            position, ResNet (dh,) at the pooling query. Required for every head when ``mode`` is
            ``mean``.
        model, weights_hash: what the mask was made for (checked when present).
    """

    heads: list[Head]
    mode: str = "mean"
    means: dict[Head, torch.Tensor] = field(default_factory=dict)
    model: str | None = None
    weights_hash: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ClipauditError(f"unknown head ablation mode {self.mode!r}; valid: {', '.join(MODES)}")
        self.heads = sorted({(int(l), int(h)) for l, h in self.heads})
        if self.mode == "mean":
            missing = [f"{l}.{h}" for l, h in self.heads if (l, h) not in self.means]
            if missing:
                raise ClipauditError(f"mean-ablation needs each head's mean output; missing for {', '.join(missing)} "
                                     "(compute them with head_means, or use mode zero)")

    def label(self) -> str:
        return ",".join(f"{l}.{h}" for l, h in self.heads) or "none"

    def subset(self, heads: Iterable[Head]) -> "HeadMask":
        keep = sorted({(int(l), int(h)) for l, h in heads})
        return HeadMask(keep, self.mode, {k: self.means[k] for k in keep if k in self.means}, self.model,
                        self.weights_hash)

    def to_json(self) -> dict:
        return {"format": MASK_FORMAT, "mode": self.mode, "heads": [list(h) for h in self.heads],
                "means": {f"{l}.{h}": self.means[(l, h)].float().cpu().tolist() for l, h in self.heads
                          if (l, h) in self.means and self.mode == "mean"},
                "model": self.model, "weights_hash": self.weights_hash}


def check_heads(model, heads: Iterable[Head]) -> list[Head]:
    """Validate (layer, head) pairs against the model; one-line error naming the valid range."""
    n_layers, per_layer = n_heads(model)
    out = []
    for l, h in heads:
        l, h = int(l), int(h)
        if not 0 <= l < n_layers:
            raise ClipauditError(f"head {l}.{h}: layer {l} is out of range; {getattr(model, 'name', 'the model')} has "
                                 f"{n_layers} attention layer(s) (valid 0..{n_layers - 1})")
        if not 0 <= h < per_layer:
            raise ClipauditError(f"head {l}.{h}: head {h} is out of range; each layer has {per_layer} heads "
                                 f"(valid 0..{per_layer - 1})")
        out.append((l, h))
    return out


def _parse_head(text: str, where: str) -> Head:
    parts = text.replace(",", ".").split(".")
    if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise ClipauditError(f"{where}: cannot read head {text!r}; write layer.head, e.g. 2.1")
    return int(parts[0]), int(parts[1])


def read_mask(path: str | Path, model=None) -> HeadMask:
    """Read a head-mask file (JSON written by the defence, or ``layer.head`` lines).

    Raises:
        ClipauditError: missing or empty file, unreadable entries, heads out of range for
            ``model``, or a mask made for other weights.
    """
    p = Path(path)
    if not p.is_file():
        raise ClipauditError(f"head mask {str(p)!r} does not exist; pass the file --defend typographic wrote")
    text = p.read_text(encoding="utf-8").strip()
    if not text:
        raise ClipauditError(f"head mask {str(p)!r} is empty; list heads as layer.head lines or pass a mask JSON")
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ClipauditError(f"head mask {str(p)!r} is not valid JSON ({err.msg} at line {err.lineno})") from None
        heads = [tuple(h) for h in data.get("heads", [])]
        means = {_parse_head(k, str(p)): torch.tensor(v, dtype=torch.float32) for k, v in data.get("means", {}).items()}
        mask = HeadMask(heads, data.get("mode", "mean"), means, data.get("model"), data.get("weights_hash"))
    else:
        lines = [ln.split("#")[0].strip() for ln in text.splitlines()]
        mask = HeadMask([_parse_head(ln, str(p)) for ln in lines if ln], "zero")
    if not mask.heads:
        raise ClipauditError(f"head mask {str(p)!r} lists no heads")
    if model is not None:
        check_heads(model, mask.heads)
        if mask.weights_hash and mask.weights_hash != model.weights_hash:
            raise ClipauditError(f"head mask {str(p)!r} was made for {mask.model or 'other'} weights "
                                 f"{mask.weights_hash}, not {model.name} ({model.weights_hash}); recompute it")
    return mask


def write_mask(mask: HeadMask) -> str:
    """The mask as JSON text (the caller, a sink or CLI, writes it)."""
    return json.dumps(mask.to_json())


# ------------------------------------------------------------------------- head outputs

def _pool_z(pool, fmap: torch.Tensor, heads: Sequence[int] | None = None) -> torch.Tensor:
    """(B, H', dh) per-head output (all heads, or ``heads``) of a ModifiedResNet attention pool at
    its query, before c_proj."""
    b, c, hh, ww = fmap.shape
    x = fmap.flatten(2).transpose(1, 2)
    pos = pool.positional_embedding.to(x.dtype)
    seq = torch.cat([x.mean(1, keepdim=True), x], 1) + pos
    dh = c // int(pool.num_heads)
    idx = list(range(int(pool.num_heads))) if heads is None else [int(i) for i in heads]
    h = len(idx)
    rows = torch.cat([torch.arange(i * dh, (i + 1) * dh) for i in idx]).to(x.device)

    def lin(mod, inp):
        return inp @ mod.weight[rows].T + mod.bias[rows]

    q = lin(pool.q_proj, seq[:, :1]).view(b, 1, h, dh).transpose(1, 2)
    k = lin(pool.k_proj, seq).view(b, -1, h, dh).transpose(1, 2)
    v = lin(pool.v_proj, seq).view(b, -1, h, dh).transpose(1, 2)
    a = torch.softmax(q @ k.transpose(-1, -2) / dh ** 0.5, dim=-1)
    return (a @ v)[:, :, 0]


def _vit_z(attn, x: torch.Tensor, heads: Sequence[int] | None = None) -> torch.Tensor:
    """(B, H', T, dh) per-head outputs (all heads, or ``heads``) of a block's attention for all
    query tokens, from its input (B, T, C) (``ln_1`` / ``layer_norm1`` output); ``attn`` is an
    ``nn.MultiheadAttention`` or a transformers attention seen as one."""
    w, v = head_values(attn, x, heads=heads)
    return w @ v


@dataclass
class _Block:
    """Where a ViT block's heads are read and patched: open_clip (``ln_1``, ``attn``, patched at
    ``ls_1``) or transformers (``layer_norm1``, ``self_attn``, patched at ``self_attn.out_proj``'s
    output, which is linear in the heads' outputs like ``ls_1``'s)."""

    ln_path: str
    attn: object  # nn.MultiheadAttention or decompose._PackedAttention
    out_proj: torch.nn.Linear
    patch_path: str
    gamma: torch.Tensor | None


def _blocks(model) -> list[_Block]:
    from clipaudit.probes.decompose import _hf_layers, _PackedAttention

    layers = attention_layers(model)
    hf = _hf_layers(model.model.visual)
    if hf is not None:
        return [_Block(f"{p}.layer_norm1", _PackedAttention(hf[i].self_attn), hf[i].self_attn.out_proj,
                       f"{p}.self_attn.out_proj", None) for i, p in enumerate(layers)]
    blocks = model.model.visual.transformer.resblocks
    return [_Block(f"{p}.ln_1", blocks[i].attn, blocks[i].attn.out_proj, f"{p}.ls_1",
                   getattr(blocks[i].ls_1, "gamma", None)) for i, p in enumerate(layers)]


def _to_nld(x: torch.Tensor, layout: str) -> torch.Tensor:
    return x.permute(1, 0, 2) if layout == "lnd" else x


@torch.no_grad()
def head_means(model, pixels: Iterable[torch.Tensor] | torch.Tensor) -> dict[Head, torch.Tensor]:
    """Mean output of every head over reference images (for mean-ablation).

    Args:
        pixels: (B, 3, S, S) in [0, 1], or an iterable of such batches.

    Returns:
        (layer, head) -> ViT: (T, dh) mean per token position; ResNet: (dh,) at the pooling query.
    """
    from clipaudit.hooks import run_with_cache

    layers = attention_layers(model)
    batches = [pixels] if isinstance(pixels, torch.Tensor) else pixels
    total: list[torch.Tensor] | None = None
    count = 0
    resnet = layers == ["visual.attnpool"]
    for px in batches:
        if resnet:
            _, cache = run_with_cache(model, px, "visual.layer4", stop_at=True)
            zs = [_pool_z(model.model.visual.attnpool, cache["visual.layer4"].float()).sum(0)]
        else:
            blocks = _blocks(model)
            _, cache = run_with_cache(model, px, [b.ln_path for b in blocks], stop_at=True)
            zs = [_vit_z(b.attn, _to_nld(cache[b.ln_path], cache.layout(b.ln_path)).to(b.attn.in_proj_weight.dtype)
                         ).float().sum(0) for b in blocks]
        total = zs if total is None else [t + z for t, z in zip(total, zs)]
        count += int(px.shape[0])
    if total is None or count == 0:
        raise ValueError("head_means needs at least one image")
    out = {}
    for l, t in enumerate(total):
        mean = t / count  # ViT (H, T, dh); ResNet (H, dh)
        for h in range(mean.shape[0]):
            out[(l, h)] = mean[h].detach().cpu()
    return out


def _vit_fn(blk: _Block, heads: Sequence[int], mask: HeadMask, layer: int, store: dict, ln_path: str,
            ln_layout: str):
    c = blk.out_proj.in_features
    nh = blk.attn.num_heads
    dh = c // nh
    gamma = blk.gamma
    idx = list(heads)

    def fn(out: torch.Tensor, lay) -> torch.Tensor:
        x = _to_nld(store[ln_path], ln_layout)
        z = _vit_z(blk.attn, x.to(blk.attn.in_proj_weight.dtype), idx)  # (B, k, T, dh)
        if mask.mode == "mean":
            m = torch.stack([mask.means[(layer, h)] for h in idx]).to(z.device, z.dtype)  # (k, T, dh)
            z = z - m
        w_o = blk.out_proj.weight.view(-1, nh, dh)[:, idx]  # (C, k, dh)
        delta = torch.einsum("bktd,ckd->btc", z, w_o.to(z.dtype))
        if gamma is not None:
            delta = delta * gamma
        delta = delta.permute(1, 0, 2) if lay.layout == "lnd" else delta
        return out - delta.to(out.dtype)
    return fn


def _pool_fn(pool, heads: Sequence[int], mask: HeadMask, store: dict):
    c = pool.c_proj.in_features
    nh = int(pool.num_heads)
    dh = c // nh
    idx = list(heads)

    def fn(out: torch.Tensor, _lay) -> torch.Tensor:
        z = _pool_z(pool, store["visual.layer4"].to(pool.q_proj.weight.dtype), idx)  # (B, k, dh)
        if mask.mode == "mean":
            z = z - torch.stack([mask.means[(0, h)] for h in idx]).to(z.device, z.dtype)
        w_c = pool.c_proj.weight.view(-1, nh, dh)[:, idx]
        return out - torch.einsum("bkd,okd->bo", z, w_c.to(z.dtype)).to(out.dtype)
    return fn


@contextmanager
def ablate_heads(model, mask: HeadMask | None) -> Iterator[HeadMask | None]:
    """Every forward of ``model`` inside the block runs with ``mask``'s heads ablated.

    Built from :func:`clipaudit.hooks.capture` (the attention input of the same forward) and
    :func:`clipaudit.hooks.patch` (the attention output); every hook is removed on exit, also on
    errors, so outputs return bit for bit. ``mask`` None or empty: no change.

    Raises:
        ClipauditError: a head out of range for the model.

    Example:
        >>> with ablate_heads(m, HeadMask([(2, 1)], "zero")):
        ...     m.encode_images(pixels)
    """
    if mask is None or not mask.heads:
        yield mask
        return
    check_heads(model, mask.heads)
    layers = attention_layers(model)
    by_layer: dict[int, list[int]] = {}
    for l, h in mask.heads:
        by_layer.setdefault(l, []).append(h)
    with ExitStack() as stack:
        if layers == ["visual.attnpool"]:
            store = stack.enter_context(capture(model, "visual.layer4", detach=False))
            stack.enter_context(patch(model, "visual.attnpool", _pool_fn(model.model.visual.attnpool, by_layer[0],
                                                                         mask, store)))
        else:
            from clipaudit.hooks import resolve_layer

            blocks = _blocks(model)
            for l, hs in sorted(by_layer.items()):
                ln = resolve_layer(model, blocks[l].ln_path)
                store = stack.enter_context(capture(model, ln, detach=False))  # gradients (attacks) see the ablation
                stack.enter_context(patch(model, blocks[l].patch_path,
                                          _vit_fn(blocks[l], hs, mask, l, store, ln.path, ln.layout)))
        yield mask


def all_heads(model) -> list[Head]:
    n_layers, per_layer = n_heads(model)
    return [(l, h) for l in range(n_layers) for h in range(per_layer)]


__all__ = ["HeadMask", "MASK_FORMAT", "MODES", "ablate_heads", "all_heads", "check_heads", "head_means",
           "read_mask", "write_mask"]
