"""One streaming pass over probe images: per-neuron top-k images, mean and std.

Why streaming: a layer of 2560 neurons over 100k images is a 1 GB activation matrix; keeping
only the running top-k (values + image positions), the count, mean and sum of squared
deviations per neuron costs O(N * k) on the device, whatever the number of images.

Why a mergeable state: under ``torchrun`` every rank scans its shard and the states are merged
exactly (top-k by value with ties broken by image position; moments by Chan's parallel
update), so one process and many give the same answer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from clipaudit.data import ImageSource
from clipaudit.errors import ClipauditError
from clipaudit.distributed import gather
from clipaudit.hooks import Layer, resolve_layer, run_with_cache


@dataclass
class ScanState:
    """Running statistics of one layer's neurons.

    Attributes:
        values: (N, k) top activations per neuron, descending (``-inf`` where unfilled).
        positions: (N, k) long, the images' positions in the full source (-1 where unfilled).
        count: images seen.
        mean: (N,) float64 running mean.
        m2: (N,) float64 running sum of squared deviations from the mean.
    """

    values: torch.Tensor
    positions: torch.Tensor
    count: int
    mean: torch.Tensor
    m2: torch.Tensor

    @classmethod
    def empty(cls, n_neurons: int, k: int, device: torch.device | str = "cpu") -> "ScanState":
        return cls(torch.full((n_neurons, k), float("-inf"), device=device),
                   torch.full((n_neurons, k), -1, dtype=torch.long, device=device), 0,
                   torch.zeros(n_neurons, dtype=torch.float64, device=device),
                   torch.zeros(n_neurons, dtype=torch.float64, device=device))

    @property
    def k(self) -> int:
        return self.values.shape[1]

    @property
    def n_neurons(self) -> int:
        return self.values.shape[0]

    @property
    def std(self) -> torch.Tensor:
        """(N,) population standard deviation."""
        return (self.m2 / max(self.count, 1)).sqrt()

    def update(self, acts: torch.Tensor, positions: torch.Tensor) -> None:
        """Fold in one batch: ``acts`` (B, N) and the images' source positions (B,).

        In a stream (positions ascending and past everything seen) one stable sort of
        [state, batch] already breaks ties by position, so the batch skips its own top-k and
        the position sort; otherwise this falls back to the general :meth:`merge_`.
        """
        positions = positions.to(self.values.device).long()
        streaming = positions.numel() > 0 and bool((positions[1:] > positions[:-1]).all()) and \
            (self.count == 0 or int(positions[0]) > int(self.positions.max()))
        if not streaming:
            self.merge_(ScanState._from_batch(acts, positions, self.k))
            return
        a = acts.detach().float().t()  # (N, B)
        # Only neurons whose batch maximum beats their current k-th value can change (a tie
        # loses to the earlier image), and once the lists fill that is a small minority.
        rows = (a.max(1).values > self.values[:, -1]).nonzero().squeeze(1)
        if rows.numel():
            a_rows = a.index_select(0, rows)
            vals = torch.cat([self.values.index_select(0, rows), a_rows], 1)
            pos = torch.cat([self.positions.index_select(0, rows), positions.expand_as(a_rows)], 1)
            order = torch.argsort(vals, dim=1, descending=True, stable=True)[:, :self.k]
            self.values[rows] = vals.gather(1, order)
            self.positions[rows] = pos.gather(1, order)
        self._fold_moments(a.shape[1], *_moments(a))

    @staticmethod
    def _from_batch(acts: torch.Tensor, positions: torch.Tensor, k: int) -> "ScanState":
        a = acts.detach().float().t()  # (N, B)
        pos = positions.to(a.device).long().expand_as(a)
        vals, pos = _top(a, pos, k)
        return ScanState(vals, pos, a.shape[1], *_moments(a))

    def merge_(self, other: "ScanState") -> "ScanState":
        """Merge ``other`` into this state in place (exact: order of merges does not matter
        for the top-k; the moments follow Chan et al.'s pairwise update)."""
        if other.n_neurons != self.n_neurons:
            raise ValueError(f"cannot merge scans of {other.n_neurons} and {self.n_neurons} neurons")
        if other.count == 0:
            return self
        vals = torch.cat([self.values, other.values.to(self.values.device)], 1)
        pos = torch.cat([self.positions, other.positions.to(self.positions.device)], 1)
        self.values, self.positions = _top(vals, pos, self.k)
        self._fold_moments(other.count, other.mean.to(self.mean.device), other.m2.to(self.m2.device))
        return self

    def _fold_moments(self, count: int, mean: torch.Tensor, m2: torch.Tensor) -> None:
        """Combine this state's count, mean and m2 with another set's (Chan et al.)."""
        n_a, n = self.count, self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / n)
        self.m2 = self.m2 + m2 + delta ** 2 * (n_a * count / n)
        self.count = n

    def to(self, device: torch.device | str) -> "ScanState":
        return ScanState(self.values.to(device), self.positions.to(device), self.count,
                         self.mean.to(device), self.m2.to(device))

    def all_merge(self) -> "ScanState":
        """Merge the states of every rank of the default process group (rank order), so each
        rank ends with the full-data result. A no-op outside ``torch.distributed``."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self
        world = dist.get_world_size()
        device = self.values.device
        if dist.get_backend() == "nccl" and device.type != "cuda":
            device = torch.device("cuda", torch.cuda.current_device())
        parts = {}
        for name in ("values", "positions", "mean", "m2"):
            t = getattr(self, name).to(device).contiguous()
            parts[name] = [torch.empty_like(t) for _ in range(world)]
            dist.all_gather(parts[name], t)
        count = torch.tensor([self.count], dtype=torch.long, device=device)
        counts = [torch.empty_like(count) for _ in range(world)]
        dist.all_gather(counts, count)
        merged = ScanState.empty(self.n_neurons, self.k, self.values.device)
        for r in range(world):
            merged.merge_(ScanState(parts["values"][r], parts["positions"][r], int(counts[r].item()),
                                    parts["mean"][r], parts["m2"][r]).to(self.values.device))
        return merged


def _moments(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, sum of squared deviations) per row of ``a`` (N, B), in float64."""
    a64 = a.double()
    mean = a64.mean(1)
    return mean, ((a64 - mean[:, None]) ** 2).sum(1)


def _top(vals: torch.Tensor, pos: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k per row by value, ties broken by the smaller position (deterministic merges).

    Unfilled slots (-inf, position -1) sort last.
    """
    key_pos = torch.where(pos < 0, torch.full_like(pos, torch.iinfo(torch.long).max), pos)
    order = torch.argsort(key_pos, dim=1, stable=True)
    vals, pos = vals.gather(1, order), pos.gather(1, order)
    order = torch.argsort(vals, dim=1, descending=True, stable=True)[:, :k]
    return vals.gather(1, order), pos.gather(1, order)


@dataclass
class ScanResult:
    """A finished scan: the merged state plus what it needs to be read.

    Attributes:
        layer: the scanned :class:`~clipaudit.hooks.Layer`.
        state: the merged :class:`ScanState` (on CPU).
        ids: image ids by source position (the full source, all ranks).
        embeddings: (n_images, D) image embeddings by position (NaN rows for skipped images)
            when kept, else None. They come from the same forward pass as the activations.
        skipped: (id, reason) pairs of images that could not be decoded.
    """

    layer: Layer
    state: ScanState
    ids: list[str]
    embeddings: torch.Tensor | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def top_positions(self, neuron: int, k: int | None = None) -> list[int]:
        pos = self.state.positions[neuron, : (k or self.state.k)]
        return [int(p) for p in pos if p >= 0]

    def text_directions(self, k: int | None = None) -> pd.DataFrame | None:
        """Each neuron's direction in the joint image-text space: the L2-normalised mean of the
        L2-normalised image embeddings of its top ``k`` images (None when embeddings were not
        kept). Table: neuron, e0..e{D-1}. A query's text embedding scored against it finds units
        by meaning rather than by label (the dashboard's embedding search)."""
        if self.embeddings is None:
            return None
        e = torch.nn.functional.normalize(self.embeddings.float(), dim=-1)
        pos = self.state.positions[:, : (k or self.state.k)]
        valid = (pos >= 0).float().unsqueeze(-1)
        gathered = e[pos.clamp_min(0)] * valid  # (N, k, D)
        d = torch.nn.functional.normalize(torch.nan_to_num(gathered).sum(1), dim=-1).numpy()
        out = pd.DataFrame(d, columns=[f"e{i}" for i in range(d.shape[1])])
        out.insert(0, "neuron", np.arange(len(out)))
        return out

    def stats_table(self) -> pd.DataFrame:
        """neuron, mean, std, max for every neuron."""
        s = self.state
        top = s.values[:, 0].clone()
        top[torch.isinf(top)] = float("nan")
        return pd.DataFrame({"neuron": np.arange(s.n_neurons), "layer": self.layer.path,
                             "mean": s.mean.numpy(), "std": s.std.numpy(), "max": top.numpy()})

    def top_images_table(self, items: pd.DataFrame, neurons_: Sequence[int], k: int | None = None) -> pd.DataFrame:
        """neuron, rank, id, activation (+ the source's metadata columns) for ``neurons_``."""
        rows = []
        for n in neurons_:
            for rank, (p, v) in enumerate(zip(self.state.positions[n, : (k or self.state.k)].tolist(),
                                              self.state.values[n, : (k or self.state.k)].tolist())):
                if p >= 0:
                    rows.append({"neuron": int(n), "rank": rank, "position": p, "activation": float(v)})
        df = pd.DataFrame(rows, columns=["neuron", "rank", "position", "activation"])
        meta = items.reset_index(drop=True).copy()
        meta.insert(0, "position", np.arange(len(meta)))
        meta = meta.drop(columns=[c for c in ("path",) if c in meta.columns])
        out = df.merge(meta, on="position", how="left").drop(columns=["position"])
        cols = ["neuron", "rank", "id", "activation"]
        return out[cols + [c for c in out.columns if c not in cols]]


def scan(model, source: ImageSource, layer: Layer | str = "penultimate", k: int = 50, batch_size: int = 64,
         tokens: str = "mean", keep_embeddings: bool = True, rank: int = 0, world_size: int = 1,
         progress: Callable | None = None) -> ScanResult:
    """Scan ``source`` once through ``model``, recording every neuron of ``layer``.

    Args:
        model: an :class:`~clipaudit.model.AuditModel`.
        source: probe images; positions refer to ``source.items`` rows.
        layer: a Layer, alias or path.
        k: top images kept per neuron.
        batch_size: images per forward.
        tokens: token reduction for token layouts (``mean``/``cls``/``max``).
        keep_embeddings: also keep the (n_images, D) image embeddings (for labels), taken
            from the same forward as the activations. Without them each forward stops
            right after ``layer`` (an early exit: the layers above it are never run).
        rank, world_size: this process's shard; with ``world_size`` > 1 the states and
            embeddings are merged across the default ``torch.distributed`` group.
        progress: wraps the batch iterator (a progress bar).

    Returns:
        A :class:`ScanResult` with the merged state on CPU.

    Raises:
        ClipauditError: ``k`` < 1, or no image of the source could be decoded.
    """
    if k < 1:
        raise ClipauditError(f"top-k must be >= 1, got {k}")
    lay = layer if isinstance(layer, Layer) else resolve_layer(model, layer)
    ids = source.ids
    where = {i: p for p, i in enumerate(ids)}
    shard = source.shard(rank, world_size) if world_size > 1 else source
    state = ScanState.empty(lay.n_neurons, min(k, len(ids)), model.device)
    emb_rows: list[torch.Tensor] = []
    emb_pos: list[torch.Tensor] = []
    n_batches = (len(shard) + batch_size - 1) // batch_size
    batches = shard.batches(model, batch_size)
    if progress is not None:
        batches = progress(batches, total=n_batches, desc="scan")
    with torch.no_grad():
        for batch in batches:
            emb, cache = run_with_cache(model, batch.pixels.to(model.device), lay,
                                        stop_at=None if keep_embeddings else True)
            pos = torch.tensor([where[i] for i in batch.ids], dtype=torch.long, device=model.device)
            state.update(cache.neurons(lay.path, tokens), pos)
            if emb is not None:
                emb_rows.append(emb.float())
                emb_pos.append(pos)
    skipped = list(shard.skipped)
    if world_size > 1:
        state, emb_rows, emb_pos, skipped = _merge_ranks(state, emb_rows, emb_pos, skipped, keep_embeddings)
    if state.count == 0:
        reasons = "; ".join(f"{i}: {r}" for i, r in skipped[:3])
        raise ClipauditError(f"none of the {len(ids)} probe images could be decoded ({reasons}); "
                             "check the --images folder or CSV")
    embeddings = None
    if keep_embeddings and emb_rows:
        e = torch.cat(emb_rows).cpu()
        embeddings = torch.full((len(ids), e.shape[1]), float("nan"))
        embeddings[torch.cat(emb_pos).cpu()] = e
    return ScanResult(lay, state.to("cpu"), ids, embeddings, skipped)


def _merge_ranks(state: ScanState, emb_rows, emb_pos, skipped, keep_embeddings: bool):
    merged = state.all_merge()
    local = ([e.cpu() for e in emb_rows], [p.cpu() for p in emb_pos], skipped) if keep_embeddings \
        else ([], [], skipped)
    gathered = gather(local)
    rows = [e for g in gathered for e in g[0]]
    pos = [p for g in gathered for p in g[1]]
    skip = [s for g in gathered for s in g[2]]
    return merged, rows, pos, skip


