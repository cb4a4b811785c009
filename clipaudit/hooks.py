"""The only place that touches forward hooks.

Why a module of its own: hooks left attached corrupt every later measurement, and the layout of
an activation decides what a "neuron" is. On a conv layer (B, C, H, W) a neuron is a channel
(dim 1); on a batch-first token layer (B, T, C) dim 1 is *tokens*, and indexing it as neurons is
the classic feature-visualisation bug. So every layer carries a declared layout:

- ``nchw``: conv maps, neurons on dim 1;
- ``nld``: batch-first tokens (B, T, C), neurons on dim 2;
- ``lnd``: sequence-first tokens (T, B, C), neurons on dim 2;
- ``nd``: vectors (B, C).

Layouts are read off one probe forward pass (the batch axis is the one of size 2), never
guessed from module types, so any open_clip tower works.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch

from clipaudit.errors import ClipauditError, suggest

LAYOUTS = ("nchw", "nld", "lnd", "nd")
TOKEN_REDUCTIONS = ("mean", "cls", "max")
_NEURON_DIM = {"nchw": 1, "nld": 2, "lnd": 2, "nd": 1}


@dataclass(frozen=True)
class Layer:
    """A hookable module of the vision tower.

    Attributes:
        path: dotted path from the CLIP module (``visual.layer4.2``).
        layout: one of :data:`LAYOUTS`.
        n_neurons: channels (conv) or hidden units (tokens).
        shape: the activation shape for a batch of 2 (for display).
        aliases: alias names that resolve here (``penultimate``, ``block:3``...).
    """

    path: str
    layout: str
    n_neurons: int
    shape: tuple[int, ...]
    aliases: tuple[str, ...] = ()

    def module(self, model) -> torch.nn.Module:
        return _module_at(_clip(model), self.path)

    def check_neurons(self, indices: Iterable[int]) -> list[int]:
        """Validate neuron indices against this layer, with a one-line error when out of range."""
        out = [int(i) for i in indices]
        bad = [i for i in out if not 0 <= i < self.n_neurons]
        if bad:
            raise ClipauditError(f"neuron index {bad[0]} is out of range for {self.path} "
                                 f"({self.n_neurons} neurons: valid 0..{self.n_neurons - 1})")
        return out


def _clip(model) -> torch.nn.Module:
    return getattr(model, "model", model)


def _module_at(root: torch.nn.Module, path: str) -> torch.nn.Module:
    mod = root
    for part in path.split("."):
        mod = getattr(mod, part) if not part.isdigit() else mod[int(part)]  # type: ignore[index]
    return mod


def _layout_of(shape: tuple[int, ...], batch: int) -> tuple[str, int] | None:
    if len(shape) == 4 and shape[0] == batch:
        return "nchw", shape[1]
    if len(shape) == 3 and shape[0] == batch:
        return "nld", shape[2]
    if len(shape) == 3 and shape[1] == batch:
        return "lnd", shape[2]
    if len(shape) == 2 and shape[0] == batch:
        return "nd", shape[1]
    return None


def _aliases(model_arch: str, table: dict[str, Layer]) -> dict[str, str]:
    """Alias -> path. penultimate: last ResNet bottleneck (post-ReLU, before attention pooling)
    or the last ViT block's post-GELU MLP units; block:N: the N-th bottleneck / transformer
    block; final: the vision tower's output embedding."""
    paths = list(table)
    aliases: dict[str, str] = {"final": "visual"}
    if model_arch == "resnet":
        blocks = [p for p in paths if re.fullmatch(r"visual\.layer\d+\.\d+", p)]
    else:
        blocks = [p for p in paths if re.fullmatch(r"visual\.transformer\.resblocks\.\d+", p)]
    for i, p in enumerate(blocks):
        aliases[f"block:{i}"] = p
    if blocks:
        aliases[f"block:-1"] = blocks[-1]
        if model_arch == "resnet":
            aliases["penultimate"] = blocks[-1]
        else:
            gelu = f"{blocks[-1]}.mlp.gelu"
            aliases["penultimate"] = gelu if gelu in table else blocks[-1]
    return aliases


def layer_table(model) -> dict[str, Layer]:
    """Every hookable module of the vision tower, keyed by path (cached on the AuditModel).

    One probe forward pass on a batch of two blank images records each module's output shape.
    """
    cached = getattr(model, "_layer_table", None)
    if cached is not None:
        return cached
    clip = _clip(model)
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []

    def make_hook(path: str):
        def hook(_mod, _inp, out):
            if isinstance(out, torch.Tensor):
                shapes[path] = tuple(out.shape)
        return hook

    try:
        for name, mod in clip.visual.named_modules():
            path = "visual" + (f".{name}" if name else "")
            handles.append(mod.register_forward_hook(make_hook(path)))
        size = model.image_size if hasattr(model, "image_size") else 224
        device = next(clip.parameters()).device
        dtype = next(clip.parameters()).dtype
        with torch.no_grad():
            clip.encode_image(torch.zeros(2, 3, size, size, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    table: dict[str, Layer] = {}
    for path, shape in shapes.items():
        lay = _layout_of(shape, 2)
        if lay is not None:
            table[path] = Layer(path, lay[0], lay[1], shape)
    arch = getattr(model, "arch", "vit")
    by_path: dict[str, list[str]] = {}
    for alias, path in _aliases(arch, table).items():
        by_path.setdefault(path, []).append(alias)
    table = {p: Layer(l.path, l.layout, l.n_neurons, l.shape, tuple(by_path.get(p, ()))) for p, l in table.items()}
    if hasattr(model, "_layer_table"):
        object.__setattr__(model, "_layer_table", table)
    return table


def resolve_layer(model, name: str) -> Layer:
    """A :class:`Layer` from a dotted path (``visual.`` optional) or an alias.

    Raises:
        ClipauditError: unknown name, with the closest valid names suggested.
    """
    table = layer_table(model)
    name = str(name).strip()
    for layer in table.values():
        if name in layer.aliases:
            return layer
    for candidate in (name, f"visual.{name}"):
        if candidate in table:
            return table[candidate]
    options = list(table) + [a for l in table.values() for a in l.aliases]
    raise ClipauditError(f"unknown layer {name!r}{suggest(name, options)} "
                         "(run `clipaudit layers` to list them all)")


def _as_layers(model, layers: Layer | str | Sequence[Layer | str]) -> list[Layer]:
    if isinstance(layers, (Layer, str)):
        layers = [layers]
    return [l if isinstance(l, Layer) else resolve_layer(model, l) for l in layers]


@contextmanager
def capture(model, layers: Layer | str | Sequence[Layer | str], detach: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of ``layers`` during forwards run inside the block.

    Yields a dict path -> activation of the latest forward (raw layout). With ``detach=False``
    the activations keep their graph (feature visualisation, attribution). Hooks are removed
    on exit, also when the body raises.

    Example:
        >>> with capture(m, "penultimate") as acts:
        ...     m.encode_images(pixels)
        >>> neurons(acts[layer.path], layer.layout).shape   # (B, N)
    """
    resolved = _as_layers(model, layers)
    store: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(path: str):
        def hook(_mod, _inp, out):
            store[path] = out.detach() if detach else out
        return hook

    try:
        for layer in resolved:
            handles.append(layer.module(model).register_forward_hook(make_hook(layer.path)))
        yield store
    finally:
        for h in handles:
            h.remove()


def neurons(act: torch.Tensor, layout: str, tokens: str = "mean") -> torch.Tensor:
    """Reduce an activation of any layout to (B, N): one value per neuron per image.

    Args:
        act: the raw activation.
        layout: its :data:`LAYOUTS` entry.
        tokens: how positions are reduced: ``mean`` (all positions), ``max``, or ``cls``
            (token 0; token layouts only).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    if tokens not in TOKEN_REDUCTIONS:
        raise ValueError(f"unknown token reduction {tokens!r}; valid: {', '.join(TOKEN_REDUCTIONS)}")
    if layout == "nd":
        return act
    if layout == "lnd":
        act = act.permute(1, 0, 2)
    if layout == "nchw":
        if tokens == "cls":
            raise ValueError("tokens='cls' needs a token layout (nld/lnd); conv maps have no CLS token")
        flat = act.flatten(2)  # (B, C, HW)
        return flat.mean(2) if tokens == "mean" else flat.amax(2)
    if tokens == "cls":
        return act[:, 0, :]
    return act.mean(1) if tokens == "mean" else act.amax(1)


def neuron_dim(layout: str) -> int:
    """The axis that indexes neurons in a raw activation of ``layout``."""
    return _NEURON_DIM[layout]


@contextmanager
def ablate(model, layer: Layer | str, neuron_ids: Sequence[int], value: float | torch.Tensor = 0.0) -> Iterator[Layer]:
    """Overwrite neurons of ``layer`` with ``value`` (a scalar, or one value per listed neuron:
    use per-neuron means for mean-ablation) in every forward inside the block.

    The original module is untouched; leaving the block removes the hook, so outputs return
    bit for bit to what they were.
    """
    (resolved,) = _as_layers(model, [layer])
    ids = resolved.check_neurons(neuron_ids)
    dim = _NEURON_DIM[resolved.layout]
    index = torch.tensor(ids, dtype=torch.long)
    vals = torch.as_tensor(value, dtype=torch.float32)
    if vals.ndim == 1 and vals.numel() != len(ids):
        raise ValueError(f"ablate got {vals.numel()} values for {len(ids)} neurons")

    def hook(_mod, _inp, out):
        out = out.clone()
        shape = [1] * out.ndim
        shape[dim] = len(ids)
        v = vals.to(out.device, out.dtype)
        v = v.view(shape) if v.ndim == 1 else v
        idx = index.to(out.device)
        moved = out.movedim(dim, -1)
        patched = v.movedim(dim, -1) if v.ndim == out.ndim else v
        moved[..., idx] = patched.expand(*moved.shape[:-1], len(ids)) if v.ndim == out.ndim else patched
        return out

    handle = resolved.module(model).register_forward_hook(hook)
    try:
        yield resolved
    finally:
        handle.remove()


def list_layers(model) -> list[Layer]:
    """All hookable layers in forward order."""
    return list(layer_table(model).values())
