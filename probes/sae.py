"""Sparse autoencoders on one layer: the model, activation streaming and training.

Why an SAE of our own (about 150 lines of torch) rather than a library: of the three evaluated
(``overcomplete`` 0.3.0, ``sae-lens`` 6.54, ``saev`` 0.1.0), ``overcomplete`` fails at import with
matplotlib >= 3.9 (``matplotlib.cm.get_cmap`` is gone) and pulls opencv and scikit-image, its TopK
encoder carries a BatchNorm and it has no dead-latent auxiliary loss wired into training;
``sae-lens`` needs transformer-lens, transformers, datasets and nltk; ``saev`` needs marimo, polars,
datasets and submitit, and trains from activation shards written to disk. The method itself is
small and standard; the project's benchmark (``benchmarks/sae.py``) measures it.

Method (cited per piece):

- TopK activation: keep the k largest pre-activations per row (Gao et al. 2024, "Scaling and
  evaluating sparse autoencoders", arXiv:2406.04093), with their AuxK loss on dead latents
  (a latent is dead after ``dead_after`` training rows without firing) and unit-norm decoder rows
  with the gradient's parallel component removed.
- BatchTopK: keep the ``k * batch`` largest pre-activations over the whole batch; at inference a
  threshold (running mean of the smallest kept value) replaces the top-k (Bussmann et al. 2024,
  "BatchTopK Sparse Autoencoders", arXiv:2412.06410).
- Matryoshka: BatchTopK codes, and the loss sums the reconstruction error of nested prefixes of the
  dictionary, so early latents must stand on their own (Bussmann et al. 2025, "Learning
  Multi-Level Features with Matryoshka Sparse Autoencoders", arXiv:2503.17547; Zaigrajew et al.
  2025 for CLIP).
- Input normalisation: rows are centred by the mean of the first buffer and divided by the root
  mean squared norm, so ``E||x||^2 = 1`` whatever the layer's scale.

Activations are streamed: :func:`activation_rows` runs :func:`clipaudit.hooks.run_with_cache`
with an early exit batch by batch, and :class:`ShuffleBuffer` mixes rows in memory; when the whole
layer fits in the buffer it is collected once and resampled, otherwise the source is re-read
epoch by epoch. Nothing is written to disk.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn

from clipaudit.distributed import distributed_context
from clipaudit.errors import ClipauditError
from clipaudit.hooks import Layer, neurons, resolve_layer, run_with_cache

VARIANTS = ("topk", "batchtopk", "matryoshka")
TOKENS = ("all", "cls", "mean")


@dataclass(frozen=True)
class SAEConfig:
    """What one SAE is and how it is trained; each field is the CLI flag of the same name.

    Args:
        latents: dictionary size m (>= 1).
        k: active latents per row (1 <= k < latents).
        variant: ``topk`` | ``batchtopk`` | ``matryoshka``.
        tokens: which rows a layer gives per image: ``mean`` (positions averaged: one row),
            ``cls`` (token 0 of a token layer) or ``all`` (every position / token is a row).
        steps: optimiser steps.
        batch_size: rows per step.
        lr: Adam learning rate.
        aux_k: dead latents used by the AuxK loss (Gao et al. use 512; capped at ``latents``).
        aux_coef: weight of the AuxK loss (1/32 as in Gao et al.).
        dead_after: rows without firing after which a latent counts as dead.
        buffer: shuffle-buffer capacity in rows.
        image_batch: images per forward while collecting.
        matryoshka_groups: prefix sizes as fractions of ``latents`` (matryoshka only).
        seed: initialisation, shuffling and sampling.
    """

    latents: int = 4096
    k: int = 32
    variant: str = "topk"
    tokens: str = "mean"
    steps: int = 3000
    batch_size: int = 1024
    lr: float = 1e-3
    aux_k: int = 512
    aux_coef: float = 1 / 32
    dead_after: int = 200_000
    buffer: int = 65_536
    image_batch: int = 128
    matryoshka_groups: tuple[float, ...] = (1 / 16, 1 / 4, 1.0)
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`ClipauditError` naming a bad field and its valid range."""
        if self.latents < 1:
            raise ClipauditError(f"--latents must be >= 1, got {self.latents}")
        if not 1 <= self.k < self.latents:
            raise ClipauditError(f"--k must be between 1 and latents - 1 = {self.latents - 1}, got {self.k} "
                                 "(k active latents out of --latents)")
        if self.variant not in VARIANTS:
            raise ClipauditError(f"unknown SAE variant {self.variant!r}; valid: {', '.join(VARIANTS)}")
        if self.tokens not in TOKENS:
            raise ClipauditError(f"unknown --tokens {self.tokens!r}; valid: {', '.join(TOKENS)}")
        for name in ("steps", "batch_size", "buffer", "image_batch"):
            if getattr(self, name) < 1:
                raise ClipauditError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ClipauditError(f"--lr must be > 0, got {self.lr}")


class SparseAutoencoder(nn.Module):
    """x (rows, d) -> codes (rows, m) -> reconstruction (rows, d), in the layer's own units.

    ``encode`` normalises, ``decode`` undoes it, so callers never see normalised values.
    Weights: ``W_enc`` (d, m), ``b_enc`` (m,), ``W_dec`` (m, d) with unit-norm rows, ``b_dec`` (d,);
    buffers ``mean`` (d,) and ``scale`` () of the input normalisation and ``threshold`` () used by
    BatchTopK at inference.
    """

    def __init__(self, d: int, config: SAEConfig) -> None:
        super().__init__()
        self.d, self.config = d, config
        g = torch.Generator().manual_seed(config.seed)
        w = torch.randn(config.latents, d, generator=g)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w.clone())
        self.W_enc = nn.Parameter(w.t().clone())
        self.b_enc = nn.Parameter(torch.zeros(config.latents))
        self.b_dec = nn.Parameter(torch.zeros(d))
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("threshold", torch.zeros(()))

    @property
    def n_latents(self) -> int:
        return self.config.latents

    def set_normalisation(self, rows: torch.Tensor, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Centre on ``rows``' mean and scale so the mean squared norm of a centred row is 1.

        ``reduce`` sums a tensor over data-parallel ranks (so every rank gets the statistics of
        all ranks' rows); None: these rows alone.
        """
        rows = rows.float()
        total = reduce or (lambda t: t)
        n = total(rows.new_tensor(float(len(rows))))
        self.mean.copy_(total(rows.sum(0)) / n)
        self.scale.copy_((total((rows - self.mean).pow(2).sum()) / n).sqrt().clamp_min(1e-8))

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, d) in layer units -> (rows, m) ReLU'd pre-activations."""
        xn = (x.to(self.W_enc.dtype) - self.mean) / self.scale
        return torch.relu((xn - self.b_dec) @ self.W_enc + self.b_enc)

    def _sparsify(self, pre: torch.Tensor, train: bool) -> torch.Tensor:
        k = self.config.k
        if self.config.variant == "topk" or (not train and float(self.threshold) <= 0):
            top = pre.topk(k, dim=-1)
            return torch.zeros_like(pre).scatter(-1, top.indices, top.values)
        if not train:
            return pre * (pre > self.threshold)
        flat = pre.flatten()
        top = flat.topk(min(k * pre.shape[0], flat.numel()))
        codes = torch.zeros_like(flat).scatter(0, top.indices, top.values).view_as(pre)
        kept_min = top.values[top.values > 0].min() if (top.values > 0).any() else pre.new_zeros(())
        with torch.no_grad():
            self.threshold.copy_(0.99 * self.threshold + 0.01 * kept_min if self.threshold > 0 else kept_min)
        return codes

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, d) layer units -> (rows, m) sparse non-negative codes."""
        return self._sparsify(self.pre_activations(x), train=False)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(rows, m) codes -> (rows, d) reconstruction in layer units."""
        return (codes @ self.W_dec + self.b_dec) * self.scale + self.mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the gradient component parallel to each decoder row (Gao et al. 2024, A.4)."""
        if self.W_dec.grad is not None:
            w = self.W_dec
            self.W_dec.grad -= (self.W_dec.grad * w).sum(1, keepdim=True) * w


def _prefix_sizes(config: SAEConfig) -> list[int]:
    if config.variant != "matryoshka":
        return [config.latents]
    sizes = sorted({max(1, min(config.latents, round(f * config.latents))) for f in config.matryoshka_groups})
    return sizes if sizes[-1] == config.latents else sizes + [config.latents]


def training_loss(sae: SparseAutoencoder, x: torch.Tensor, fired_since: torch.Tensor,
                  rows_seen: int | None = None) -> tuple[torch.Tensor, dict]:
    """Loss on one batch of normalised-space errors: prefix reconstructions (+ AuxK on dead latents).

    Args:
        x: (B, d) layer units. fired_since: (m,) rows seen since each latent last fired
            (updated in place). rows_seen: rows this step counts towards ``fired_since``
            (default B; data-parallel training counts every rank's batch).

    Returns:
        (loss, {"mse": normalised MSE of the full reconstruction, "aux": AuxK loss, "l0": mean active}).
    """
    cfg = sae.config
    xn = (x - sae.mean) / sae.scale
    pre = torch.relu((xn - sae.b_dec) @ sae.W_enc + sae.b_enc)
    codes = sae._sparsify(pre, train=True)
    rows, cols = codes.nonzero(as_tuple=True)  # decode only the active entries: B*k*d, not B*m*d
    vals = codes[rows, cols]
    loss = x.new_zeros(())
    recon = xn
    for size in _prefix_sizes(cfg):
        keep = cols < size
        recon = _sparse_decode(rows[keep], cols[keep], vals[keep], sae.W_dec, x.shape[0]) + sae.b_dec
        loss = loss + (recon - xn).pow(2).sum(1).mean()
    with torch.no_grad():
        fired = (codes > 0).any(0)
        fired_since += x.shape[0] if rows_seen is None else rows_seen
        fired_since[fired] = 0
    dead = fired_since >= cfg.dead_after
    aux = x.new_zeros(())
    if dead.any():
        k_aux = int(min(cfg.aux_k, int(dead.sum())))
        residual = (xn - recon).detach()
        top = pre.masked_fill(~dead, 0.0).topk(k_aux, dim=-1)
        # dense: k_aux is up to 512 of m, where gathering k_aux decoder rows per row costs more than a matmul
        aux_recon = torch.zeros_like(pre).scatter(-1, top.indices, top.values) @ sae.W_dec
        aux = (aux_recon - residual).pow(2).sum(1).mean() / residual.pow(2).sum(1).mean().clamp_min(1e-8)
        aux = torch.nan_to_num(aux)
        loss = loss + cfg.aux_coef * aux
    mse = (recon - xn).detach().pow(2).sum(1).mean()
    return loss, {"mse": float(mse), "aux": float(aux.detach()), "l0": float(len(vals) / x.shape[0])}


def _sparse_decode(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, w_dec: torch.Tensor,
                   n: int) -> torch.Tensor:
    """sum_j codes[r, j] W_dec[j] from the nonzero entries only (rows, cols, vals) -> (n, d)."""
    out = w_dec.new_zeros(n, w_dec.shape[1])
    return out.index_add(0, rows, vals[:, None] * w_dec[cols])


# -- activation rows ------------------------------------------------------------------------------

def rows_of(act: torch.Tensor, layer: Layer, tokens: str) -> torch.Tensor:
    """A layer's raw activation -> (rows, d) training rows.

    ``mean``/``cls``: one row per image (:func:`clipaudit.hooks.neurons`); ``all``: one row per
    position (conv maps) or token, image-major.
    """
    if tokens in ("mean", "cls"):
        return neurons(act, layer.layout, tokens)
    if layer.layout == "nchw":
        return act.flatten(2).transpose(1, 2).reshape(-1, act.shape[1])
    if layer.layout == "lnd":
        act = act.permute(1, 0, 2)
    return act.reshape(-1, act.shape[-1])


def rows_per_image(layer: Layer, tokens: str) -> int:
    """How many rows :func:`rows_of` gives per image."""
    if tokens != "all" or layer.layout == "nd":
        return 1
    if layer.layout == "nchw":
        return int(layer.shape[2] * layer.shape[3])
    return int(layer.shape[0 if layer.layout == "lnd" else 1])


def check_layer_tokens(layer: Layer, tokens: str) -> None:
    if tokens == "cls" and layer.layout not in ("nld", "lnd"):
        raise ClipauditError(f"--tokens cls needs a token layer; {layer.path} is {layer.layout} "
                             "(use --tokens mean or all)")


def activation_rows(model, source, layer: Layer | str, tokens: str = "mean", image_batch: int = 128,
                    progress: Callable | None = None, desc: str = "collect", rank: int = 0,
                    world_size: int = 1) -> Iterator[tuple[torch.Tensor, list[str]]]:
    """Stream (rows (n, d) float32 on the model's device, the image ids of those rows) per batch.

    Uses :func:`clipaudit.hooks.run_with_cache` with ``stop_at=True``, so layers after ``layer``
    are never computed. Memory is one batch of activations, whatever the number of images.
    With ``world_size`` > 1 (torchrun), this process reads only its shard of the source
    (``ImageSource.shard``: every world_size-th image from ``rank``), as the activation scan does.
    """
    layer = layer if isinstance(layer, Layer) else resolve_layer(model, layer)
    check_layer_tokens(layer, tokens)
    per = rows_per_image(layer, tokens)
    if world_size > 1:
        source = source.shard(rank, world_size)
    batches = source.batches(model, image_batch)
    if progress is not None:
        batches = progress(batches, desc=desc)
    for batch in batches:
        with torch.no_grad():
            _, cache = run_with_cache(model, batch.pixels, layer, stop_at=True)
        rows = rows_of(cache[layer.path], layer, tokens).float()
        yield rows, [i for i in batch.ids for _ in range(per)]


class ShuffleBuffer:
    """Rows mixed in memory: fill to ``capacity``, then serve random batches and refill the
    served slots with newer rows (a reservoir-style shuffle; Gao et al. shuffle the same way).

    ``rows`` is a callable returning a fresh iterator of (n, d) tensors (one epoch); when an
    epoch ends before the buffer is full, the buffer holds the whole data set and is resampled
    without re-reading the source.
    """

    def __init__(self, rows: Callable[[], Iterator[torch.Tensor]], capacity: int, seed: int) -> None:
        self.rows, self.capacity = rows, capacity
        self.gen = torch.Generator().manual_seed(seed)
        self.buf: torch.Tensor | None = None
        self.filled = 0
        self.complete = False  # the whole data set sits in the buffer
        self._it: Iterator[torch.Tensor] | None = None
        self._pending: torch.Tensor | None = None
        self.epochs = 0

    def _next_chunk(self) -> torch.Tensor | None:
        if self._pending is not None and len(self._pending):
            chunk, self._pending = self._pending, None
            return chunk
        if self._it is None:
            self._it = iter(self.rows())
        try:
            return next(self._it)
        except StopIteration:
            self._it = None
            self.epochs += 1
            return None

    def fill(self) -> torch.Tensor:
        """Fill the buffer (first call); returns the filled rows."""
        while self.buf is None or (self.filled < self.capacity and not self.complete):
            chunk = self._next_chunk()
            if chunk is None:
                if self.buf is None:
                    raise ClipauditError("the image source gave no activation rows")
                self.complete = True
                break
            if self.buf is None:
                self.buf = chunk.new_empty(self.capacity, chunk.shape[1])
            take = min(len(chunk), self.capacity - self.filled)
            self.buf[self.filled:self.filled + take] = chunk[:take]
            self.filled += take
            if take < len(chunk):
                self._pending = chunk[take:]
        assert self.buf is not None
        return self.buf[:self.filled]

    def sample(self, n: int) -> torch.Tensor:
        """n random rows; the served slots are refilled from the stream (unless complete)."""
        data = self.fill()
        idx = torch.randperm(self.filled, generator=self.gen)[:n].to(data.device)
        out = data[idx].clone()
        if not self.complete:
            self._refill(idx)
        return out

    def _refill(self, idx: torch.Tensor) -> None:
        assert self.buf is not None
        at = 0
        while at < len(idx):
            chunk = self._next_chunk()
            if chunk is None:  # epoch boundary: start the next pass over the source
                continue
            take = min(len(chunk), len(idx) - at)
            self.buf[idx[at:at + take]] = chunk[:take]
            if take < len(chunk):
                self._pending = chunk[take:]
            at += take


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    t = t.clone()
    dist.all_reduce(t)
    return t


def _sync_step(sae: "SparseAutoencoder", fired_since: torch.Tensor, world: int) -> None:
    """Data-parallel step (what DistributedDataParallel does, on an SAE whose loss is not its
    forward): average the gradients over ranks, so every rank takes the same Adam step on the
    union of their batches; a latent fired if it fired on any rank; BatchTopK's threshold is the
    ranks' mean."""
    import torch.distributed as dist

    for p in sae.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world
    dist.all_reduce(fired_since, op=dist.ReduceOp.MIN)
    dist.all_reduce(sae.threshold)
    sae.threshold /= world


@dataclass
class TrainLog:
    """Per-step training curve (normalised MSE, AuxK loss, L0, dead latents)."""

    steps: list[dict] = field(default_factory=list)


def train_sae(rows: Callable[[], Iterator[torch.Tensor]], d: int, config: SAEConfig,
              device: torch.device | str = "cpu", progress: Callable | None = None,
              log_every: int = 50) -> tuple[SparseAutoencoder, TrainLog]:
    """Train an SAE on streamed rows (Gao et al. 2024 recipe; see the module docstring).

    Args:
        rows: callable returning one epoch of (n, d) float tensors (e.g. a lambda over
            :func:`activation_rows`).
        d: row width. config: :class:`SAEConfig` (validated here).
        device: where the SAE trains (rows are moved there).

    Returns:
        (the trained SAE in eval mode, its :class:`TrainLog`). Inside a ``torch.distributed``
        group (torchrun; gloo on CPU, nccl on CUDA) every rank streams its own rows and the
        gradients are averaged each step, so all ranks end with the same SAE. Deterministic for a seed on one
        device: initialisation, sampling and the stream order are seeded.

    Raises:
        ClipauditError: a bad config, or an empty stream.
    """
    config.validate()
    rank, world = distributed_context()
    sae = SparseAutoencoder(d, config).to(device)  # same seed: the same start on every rank
    buffer = ShuffleBuffer(lambda: (r.to(device) for r in rows()), config.buffer, config.seed + 1 + rank)
    first = buffer.fill()
    sae.set_normalisation(first, reduce=_all_reduce_sum if world > 1 else None)
    with torch.no_grad():  # start b_dec at zero in normalised units (the data mean)
        sae.b_dec.zero_()
    opt = torch.optim.Adam(sae.parameters(), lr=config.lr, betas=(0.9, 0.999))
    fired_since = torch.zeros(config.latents, device=device, dtype=torch.long)
    log = TrainLog()
    steps = range(config.steps)
    if progress is not None:
        steps = progress(steps, total=config.steps, desc="train SAE")
    sae.train()
    for step in steps:
        x = buffer.sample(config.batch_size)
        lr = config.lr * min(1.0, (config.steps - step) / max(1, 0.2 * config.steps))  # linear decay, last 20%
        for group in opt.param_groups:
            group["lr"] = lr
        loss, parts = training_loss(sae, x, fired_since, rows_seen=x.shape[0] * world)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1:
            _sync_step(sae, fired_since, world)
        sae.project_decoder_grad()
        opt.step()
        sae.normalise_decoder()
        if step % log_every == 0 or step == config.steps - 1:
            log.steps.append({"step": step, **parts, "dead": int((fired_since >= config.dead_after).sum())})
    sae.eval()
    return sae, log


# -- saving and loading ---------------------------------------------------------------------------

WEIGHTS = "sae/weights.safetensors"
CONFIG = "sae/config.json"


def sae_bytes(sae: SparseAutoencoder) -> bytes:
    """The SAE's tensors as safetensors bytes."""
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in sae.state_dict().items()})


def sae_meta(sae: SparseAutoencoder, model, layer: Layer) -> dict:
    """The JSON saved next to the weights: SAE config, d, and the model and layer it reads."""
    return {"sae": asdict(sae.config), "d": sae.d, "layer": layer.path, "model": getattr(model, "name", str(model)),
            "weights_hash": getattr(model, "weights_hash", None)}


def sae_from_bytes(data: bytes, meta: dict, device: torch.device | str = "cpu") -> SparseAutoencoder:
    from safetensors.torch import load

    values = dict(meta["sae"])
    values["matryoshka_groups"] = tuple(values.get("matryoshka_groups", SAEConfig.matryoshka_groups))
    sae = SparseAutoencoder(int(meta["d"]), SAEConfig(**values))
    sae.load_state_dict(load(data))
    return sae.to(device).eval()


def load_sae_run(run_dir, model=None, layer: Layer | str | None = None,
                 device: torch.device | str = "cpu") -> tuple[SparseAutoencoder, dict]:
    """An SAE saved in run folder ``run_dir`` (``sae/weights.safetensors`` + ``sae/config.json``).

    With ``model``/``layer`` given, refuses an SAE trained on another model or layer, naming both.
    The returned meta adds ``weights_sha256``, the SHA-256 of the weights file as read.

    Raises:
        ClipauditError: no SAE in the folder, or a model/layer mismatch.
    """
    from pathlib import Path

    root = Path(run_dir)
    wpath, cpath = root / WEIGHTS, root / CONFIG
    if not wpath.is_file() or not cpath.is_file():
        raise ClipauditError(f"{str(root)!r} holds no SAE ({WEIGHTS} and {CONFIG}); pass the run folder "
                             "of a `clipaudit sae` run")
    meta = json.loads(cpath.read_text())
    if model is not None:
        name = getattr(model, "name", str(model))
        if meta.get("model") != name or (meta.get("weights_hash") and getattr(model, "weights_hash", None)
                                         and meta["weights_hash"] != model.weights_hash):
            raise ClipauditError(f"the SAE in {str(root)!r} was trained on model {meta.get('model')!r} "
                                 f"(weights {meta.get('weights_hash')}), not on {name!r} "
                                 f"(weights {getattr(model, 'weights_hash', None)}); pass --model {meta.get('model')} with its "
                                 "weights, or train an SAE for this model with `clipaudit sae`")
        if layer is not None:
            lay = layer if isinstance(layer, Layer) else resolve_layer(model, layer)
            if meta.get("layer") != lay.path:
                raise ClipauditError(f"the SAE in {str(root)!r} reads layer {meta.get('layer')!r}, not "
                                     f"{lay.path!r}; pass --layer {meta.get('layer')} or train a new one")
    data = wpath.read_bytes()
    meta["weights_sha256"] = hashlib.sha256(data).hexdigest()  # of the file as read, for the manifest
    return sae_from_bytes(data, meta, device), meta


__all__ = ["SAEConfig", "ShuffleBuffer", "SparseAutoencoder", "TOKENS", "TrainLog", "VARIANTS", "activation_rows",
           "check_layer_tokens", "load_sae_run", "rows_of", "rows_per_image", "sae_bytes", "sae_from_bytes",
           "sae_meta", "train_sae", "training_loss"]
