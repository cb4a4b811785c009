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
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Sequence

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
        blocks = [p for p in paths if re.fullmatch(r"visual\.transformer\.resblocks\.\d+", p)
                  or re.fullmatch(r"visual\.body\.encoder\.layers\.\d+", p)]  # open_clip | transformers (clipaudit.hf)
    for i, p in enumerate(blocks):
        aliases[f"block:{i}"] = p
    if blocks:
        aliases[f"block:-1"] = blocks[-1]
        if model_arch == "resnet":
            aliases["penultimate"] = blocks[-1]
        else:
            acts = [a for a in (f"{blocks[-1]}.mlp.gelu", f"{blocks[-1]}.mlp.activation_fn") if a in table]
            aliases["penultimate"] = acts[0] if acts else blocks[-1]
    return aliases


def layer_table(model) -> dict[str, Layer]:
    """Every hookable module of the vision tower, keyed by path (cached on the AuditModel).

    One probe forward pass on a batch of two blank images records each module's output shape
    and the order in which the modules finish (what "deepest" means for an early exit).
    """
    cached = getattr(model, "_layer_table", None)
    if cached is not None and _clip(model) in _ORDER:
        return cached
    clip = _clip(model)
    shapes: dict[str, tuple[int, ...]] = {}
    calls: list[str] = []
    handles = []

    def make_hook(path: str):
        def hook(_mod, _inp, out):
            calls.append(path)
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
    _ORDER[clip] = {path: (i, calls.count(path)) for i, path in enumerate(calls)}
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


# clip module -> {path: (position of its last completion in the forward, calls per forward)}
_ORDER: "weakref.WeakKeyDictionary[torch.nn.Module, dict[str, tuple[int, int]]]" = weakref.WeakKeyDictionary()


def _forward_position(model, layer: Layer) -> tuple[int, int]:
    """(when ``layer`` last finishes in one image forward, how often it runs per forward)."""
    layer_table(model)
    return _ORDER[_clip(model)][layer.path]


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


class ActivationCache(Mapping[str, torch.Tensor]):
    """Activations of one forward, keyed by layer path, that know each layer's layout.

    Indexing accepts a path (``visual.`` optional) or an alias of a cached layer.

    Example:
        >>> emb, cache = run_with_cache(m, pixels, ["block:1", "penultimate"])
        >>> cache.layout("block:1"), cache.neurons("penultimate").shape   # ('nld', (B, N))
    """

    def __init__(self, layers: Sequence[Layer], activations: dict[str, torch.Tensor]) -> None:
        self._layers = {l.path: l for l in layers}
        self._acts = activations

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The cached layers, in the order they were asked for."""
        return tuple(self._layers.values())

    def layer(self, name: str) -> Layer:
        """The :class:`Layer` behind a path or alias; KeyError naming the cached ones otherwise."""
        name = str(name).strip()
        for candidate in (name, f"visual.{name}"):
            if candidate in self._layers:
                return self._layers[candidate]
        for layer in self._layers.values():
            if name in layer.aliases:
                return layer
        raise KeyError(f"layer {name!r} is not in this cache{suggest(name, self._layers)} "
                       f"(cached: {', '.join(self._layers)})")

    def layout(self, name: str) -> str:
        """The :data:`LAYOUTS` entry of a cached layer."""
        return self.layer(name).layout

    def neurons(self, name: str, tokens: str = "mean") -> torch.Tensor:
        """(B, N) one value per neuron per image (:func:`neurons` with the layer's layout)."""
        layer = self.layer(name)
        return neurons(self._acts[layer.path], layer.layout, tokens)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._acts[self.layer(name).path]

    def __iter__(self) -> Iterator[str]:
        return iter(p for p in self._layers if p in self._acts)

    def __len__(self) -> int:
        return sum(p in self._acts for p in self._layers)

    def __repr__(self) -> str:
        return "ActivationCache(" + ", ".join(f"{l.path}: {l.layout}" for l in self.layers) + ")"


class _StopForward(Exception):
    """Raised by the early-exit hook and caught by :func:`run_with_cache` only."""


def _stop_layer(model, wanted: Sequence[Layer], stop_at: Layer | str | bool | None) -> Layer | None:
    """The layer after which the forward stops (None: run it to the end).

    ``True`` picks the deepest of ``wanted``; a name must not come before any of them.
    """
    if stop_at is None or stop_at is False:
        return None
    deepest = max(wanted, key=lambda l: _forward_position(model, l)[0])
    if stop_at is True:
        return deepest
    (stop,) = _as_layers(model, [stop_at])
    if _forward_position(model, stop)[0] < _forward_position(model, deepest)[0]:
        raise ClipauditError(f"stop_at {stop.path!r} comes before {deepest.path!r} in the forward, so "
                             f"{deepest.path!r} would never be reached; stop at {deepest.path!r} or later "
                             "(stop_at=True picks it)")
    return stop


def _record_hook(store: dict[str, torch.Tensor], path: str, detach: bool):
    def hook(_mod, _inp, out):
        store[path] = out.detach() if detach else out
    return hook


def _stop_hook(calls: int):
    seen = [0]

    def hook(_mod, _inp, _out):
        seen[0] += 1
        if seen[0] >= calls:
            raise _StopForward
    return hook


def run_with_cache(model, pixels: torch.Tensor, layers: Layer | str | Sequence[Layer | str],
                   stop_at: Layer | str | bool | None = None,
                   detach: bool = True) -> tuple[torch.Tensor | None, ActivationCache]:
    """One image forward that returns the embeddings and the activations of ``layers``
    (TransformerLens's ``run_with_cache``, with its ``stop_at_layer`` early exit).

    Args:
        model: an :class:`~clipaudit.model.AuditModel`.
        pixels: (B, 3, S, S) in [0, 1] (normalised inside, as :meth:`encode_images` does).
        layers: Layer(s), aliases or paths to record.
        stop_at: None runs the whole tower; ``True`` stops right after the deepest of
            ``layers``; a layer name stops right after that layer. Layers after the stop
            are never computed (a forward hook raises a private exception that is caught
            here), so reading ``block:2`` of a 12-block ViT costs about 3/12 of a pass.
        detach: False keeps the activations' graph (feature visualisation, attribution).

    Returns:
        (embeddings (B, D) L2-normalised, or None when ``stop_at`` is set; the
        :class:`ActivationCache`). Every hook is removed before returning, also on errors.

    Raises:
        ClipauditError: an unknown layer (close names suggested), or a ``stop_at`` that
            comes before a requested layer.
        ValueError: no layers.

    Example:
        >>> _, cache = run_with_cache(m, pixels, "block:2", stop_at=True)
        >>> cache.neurons("block:2").shape   # (B, N)
    """
    wanted = list({l.path: l for l in _as_layers(model, layers)}.values())
    if not wanted:
        raise ValueError("run_with_cache needs at least one layer")
    stop = _stop_layer(model, wanted, stop_at)
    store: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for layer in wanted:
            handles.append(layer.module(model).register_forward_hook(_record_hook(store, layer.path, detach)))
        if stop is not None:  # registered last: on a shared module it fires after the recorder
            handles.append(stop.module(model).register_forward_hook(_stop_hook(_forward_position(model, stop)[1])))
        try:
            embeddings = model.encode_images(pixels)
        except _StopForward:
            embeddings = None
    finally:
        for h in handles:
            h.remove()
    return embeddings, ActivationCache(wanted, store)


PatchFn = Callable[[torch.Tensor, Layer], "torch.Tensor | None"]


@contextmanager
def patch(model, layer: Layer | str, fn: PatchFn) -> Iterator[Layer]:
    """Replace ``layer``'s output by ``fn(activation, layer)`` in every forward inside the block.

    The one intervention primitive (TransformerLens's hook functions): ablation, clamping, head
    masks and SAE edits are each an ``fn``. ``fn`` gets the raw activation (layout
    ``layer.layout``) and returns a tensor of the same shape, or None to keep it. The module
    is untouched; the hook is removed on exit, also when the body or ``fn`` raises, so outputs
    return bit for bit to what they were.

    Raises:
        ClipauditError: unknown layer. ValueError (during the forward): ``fn`` returned a
        tensor of another shape. TypeError: ``fn`` returned something else.

    Example:
        >>> with patch(m, "block:1", lambda a, l: a * 0.5):
        ...     m.encode_images(pixels)
    """
    (resolved,) = _as_layers(model, [layer])

    def hook(_mod, _inp, out):
        new = fn(out, resolved)
        if new is None:
            return out
        if not isinstance(new, torch.Tensor):
            raise TypeError(f"patch function for {resolved.path} returned {type(new).__name__}, not a tensor or None")
        if new.shape != out.shape:
            raise ValueError(f"patch function for {resolved.path} returned shape {tuple(new.shape)}; "
                             f"the layer's output is {tuple(out.shape)}")
        return new

    handle = resolved.module(model).register_forward_hook(hook)
    try:
        yield resolved
    finally:
        handle.remove()


def _overwrite(ids: list[int], vals: torch.Tensor, dim: int) -> PatchFn:
    """A patch function writing ``vals`` (scalar or one per id) into neurons ``ids`` on ``dim``."""
    index = torch.tensor(ids, dtype=torch.long)

    def fn(out: torch.Tensor, _layer: Layer) -> torch.Tensor:
        out = out.clone()
        v = vals.to(out.device, out.dtype)
        moved = out.movedim(dim, -1)  # a view: writing it writes ``out``
        moved[..., index.to(out.device)] = v.expand(len(ids)) if v.ndim == 1 else v
        return out
    return fn


@contextmanager
def ablate(model, layer: Layer | str, neuron_ids: Sequence[int], value: float | torch.Tensor = 0.0) -> Iterator[Layer]:
    """Overwrite neurons of ``layer`` with ``value`` (a scalar, or one value per listed neuron:
    use per-neuron means for mean-ablation) in every forward inside the block.

    One use of :func:`patch`: the original module is untouched; leaving the block removes the
    hook, so outputs return bit for bit to what they were.
    """
    (resolved,) = _as_layers(model, [layer])
    ids = resolved.check_neurons(neuron_ids)
    vals = torch.as_tensor(value, dtype=torch.float32)
    if vals.ndim == 1 and vals.numel() != len(ids):
        raise ValueError(f"ablate got {vals.numel()} values for {len(ids)} neurons")
    with patch(model, resolved, _overwrite(ids, vals, _NEURON_DIM[resolved.layout])) as lay:
        yield lay


def list_layers(model) -> list[Layer]:
    """All hookable layers in forward order."""
    return list(layer_table(model).values())
