"""Splicing an SAE into the model and editing its latents, each one :func:`clipaudit.hooks.patch`.

- splice: the layer's rows are replaced by their reconstruction (the error term dropped), which is
  what "spliced zero-shot accuracy" measures;
- edit: latents are suppressed, scaled or clamped and only the change of the reconstruction is
  added to the layer, ``a + decode(edit(z)) - decode(z)`` — the reconstruction error stays, so
  the edit is the only change (Marks et al. 2024, "Sparse Feature Circuits", error nodes).

With ``tokens="mean"`` (an SAE on position-averaged rows) the same change is added at every
position, which changes the positions' mean by exactly that amount; ``cls`` changes token 0;
``all`` changes each position by its own row's change.

``--sae-edit RUN:latents=3,17[:scale=0|:clamp=V]`` (:func:`parse_edit_spec`) names an edit any
audit can run under (:func:`sae_edit_from_spec`).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from clipaudit.errors import ClipauditError
from clipaudit.hooks import Layer, patch, resolve_layer

from clipaudit.probes.sae import SparseAutoencoder, load_sae_run, rows_of


def add_row_delta(out: torch.Tensor, layer: Layer, tokens: str, delta: torch.Tensor) -> torch.Tensor:
    """``out`` (raw layout) plus ``delta`` (rows, d) laid out as :func:`rows_of` read it."""
    delta = delta.to(out.dtype)
    if tokens == "mean":
        if layer.layout == "nchw":
            return out + delta[:, :, None, None]
        if layer.layout == "nld":
            return out + delta[:, None, :]
        if layer.layout == "lnd":
            return out + delta[None, :, :]
        return out + delta
    if tokens == "cls":
        out = out.clone()
        if layer.layout == "nld":
            out[:, 0, :] += delta
        else:
            out[0, :, :] += delta
        return out
    if layer.layout == "nchw":
        b, c, h, w = out.shape
        return out + delta.view(b, h * w, c).transpose(1, 2).reshape(b, c, h, w)
    if layer.layout == "lnd":
        t, b, c = out.shape
        return out + delta.view(b, t, c).permute(1, 0, 2)
    return out + delta.view(out.shape)


@dataclass(frozen=True)
class LatentEdit:
    """Which latents change and how: ``scale`` multiplies them (0 = suppress), or ``clamp`` sets
    them to a value wherever the row is edited (None: scale)."""

    latents: tuple[int, ...]
    scale: float = 0.0
    clamp: float | None = None

    def check(self, n_latents: int, where: str = "") -> None:
        """Raise :class:`ClipauditError` naming any latent outside a dictionary of ``n_latents``."""
        bad = [j for j in self.latents if not 0 <= j < n_latents]
        if bad:
            raise ClipauditError(f"--sae-edit latent(s) {', '.join(map(str, bad))} outside the SAE's {n_latents} "
                                 f"latents (0..{n_latents - 1})" + (f" in {where!r}" if where else ""))

    def apply(self, codes: torch.Tensor) -> torch.Tensor:
        out = codes.clone()
        idx = torch.as_tensor(self.latents, dtype=torch.long, device=codes.device)
        if self.clamp is not None:
            out[:, idx] = float(self.clamp)
        else:
            out[:, idx] = out[:, idx] * float(self.scale)
        return out


def splice_fn(sae: SparseAutoencoder, tokens: str):
    """Patch function: the layer's rows replaced by the SAE's reconstruction."""
    def fn(out: torch.Tensor, layer: Layer) -> torch.Tensor:
        rows = rows_of(out, layer, tokens).float()
        with torch.no_grad():
            recon = sae(rows.to(sae.mean.device)).to(rows.device)
        return add_row_delta(out, layer, tokens, recon - rows)
    return fn


def edit_fn(sae: SparseAutoencoder, tokens: str, edit: LatentEdit):
    """Patch function: ``a + decode(edit(z)) - decode(z)`` (the reconstruction error kept)."""
    edit.check(sae.n_latents)

    def fn(out: torch.Tensor, layer: Layer) -> torch.Tensor:
        rows = rows_of(out, layer, tokens).float().to(sae.mean.device)
        with torch.no_grad():
            codes = sae.encode(rows)
            delta = (edit.apply(codes) - codes) @ sae.W_dec * sae.scale
        return add_row_delta(out, layer, tokens, delta.to(out.device))
    return fn


@contextmanager
def spliced(model, layer: Layer | str, sae: SparseAutoencoder, tokens: str) -> Iterator[Layer]:
    """Every forward inside the block runs with ``layer`` replaced by the SAE's reconstruction."""
    with patch(model, layer, splice_fn(sae, tokens)) as lay:
        yield lay


@contextmanager
def edited(model, layer: Layer | str, sae: SparseAutoencoder, tokens: str, edit: LatentEdit) -> Iterator[Layer]:
    """Every forward inside the block runs with ``edit`` applied to the SAE's latents."""
    with patch(model, layer, edit_fn(sae, tokens, edit)) as lay:
        yield lay


@dataclass(frozen=True)
class EditSpec:
    """A parsed ``--sae-edit`` value."""

    run: str
    edit: LatentEdit


def parse_edit_spec(text: str) -> EditSpec:
    """``RUN:latents=3,17,42[:scale=F | :clamp=V]`` -> :class:`EditSpec`.

    Raises:
        ClipauditError: a missing ``latents=``, a non-integer latent, an unknown option or a
            bad number, naming the valid form.
    """
    form = "use RUN:latents=I,J,...[:scale=F|:clamp=V], e.g. runs/sae-toy:latents=3,17:scale=0"
    text = str(text).strip()
    if ":latents=" not in text:
        raise ClipauditError(f"bad --sae-edit {text!r}: no ':latents='; {form}")
    run, rest = text.split(":latents=", 1)
    if not run:
        raise ClipauditError(f"bad --sae-edit {text!r}: no run folder before ':latents='; {form}")
    parts = rest.split(":")
    try:
        latents = tuple(int(p) for p in parts[0].split(",") if p.strip() != "")
    except ValueError:
        raise ClipauditError(f"bad --sae-edit latents {parts[0]!r}: integers separated by commas; {form}") from None
    if not latents:
        raise ClipauditError(f"bad --sae-edit {text!r}: no latents listed; {form}")
    scale, clamp = 0.0, None
    for opt in parts[1:]:
        key, _, value = opt.partition("=")
        if key not in ("scale", "clamp") or not value:
            raise ClipauditError(f"bad --sae-edit option {opt!r}; valid: scale=F, clamp=V; {form}")
        try:
            number = float(value)
        except ValueError:
            raise ClipauditError(f"bad --sae-edit {key} {value!r}: not a number; {form}") from None
        if key == "scale":
            scale = number
        else:
            clamp = number
    if len(parts) > 2:
        raise ClipauditError(f"bad --sae-edit {text!r}: give scale or clamp, not both; {form}")
    return EditSpec(run, LatentEdit(latents, scale, clamp))


@dataclass(frozen=True)
class PreparedEdit:
    """An ``--sae-edit`` read and checked against a model: the SAE, the layer it reads, its row
    kind, the edit, and the SHA-256 of the SAE's weights file (what the manifest records)."""

    sae: SparseAutoencoder
    layer: Layer
    tokens: str
    edit: LatentEdit
    weights_sha256: str

    def describe(self, spec: str) -> str:
        return f"{spec} (SAE weights sha256 {self.weights_sha256[:16]}, layer {self.layer.path})"


def prepare_sae_edit(model, spec: "EditSpec | str") -> PreparedEdit:
    """Load and check an ``--sae-edit`` now, before any run folder exists.

    Raises:
        ClipauditError: no SAE in the run folder, one trained on another model, or a latent
            outside the SAE's dictionary.
    """
    if isinstance(spec, str):
        spec = parse_edit_spec(spec)
    sae, meta = load_sae_run(spec.run, model=model, device=getattr(model, "device", "cpu"))
    spec.edit.check(sae.n_latents, spec.run)
    return PreparedEdit(sae, resolve_layer(model, meta["layer"]), meta["sae"]["tokens"], spec.edit,
                        meta["weights_sha256"])


@contextmanager
def sae_edit_from_spec(model, spec: "PreparedEdit | EditSpec | str | None") -> Iterator[None]:
    """Run the block under an ``--sae-edit`` (None: no edit); a spec is loaded and checked by
    :func:`prepare_sae_edit` first."""
    if spec is None:
        yield
        return
    prepared = spec if isinstance(spec, PreparedEdit) else prepare_sae_edit(model, spec)
    with edited(model, prepared.layer, prepared.sae, prepared.tokens, prepared.edit):
        yield


__all__ = ["EditSpec", "LatentEdit", "PreparedEdit", "add_row_delta", "edit_fn", "edited", "parse_edit_spec",
           "prepare_sae_edit", "sae_edit_from_spec", "splice_fn", "spliced"]
