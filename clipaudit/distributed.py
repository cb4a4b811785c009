"""Data-parallel runs under ``torchrun``: which process am I, and how are shards merged.

Why in the core: the activation scan and the zero-shot passes (typographic, bias) all shard a
source the same way (``ImageSource.shard``: every world_size-th item from rank) and must merge
back to exactly what one process would have produced, in source order, so that numbers do not
depend on how many processes ran. gloo on CPU, nccl on CUDA.
"""
from __future__ import annotations

import os
from typing import Any

import torch


def distributed_context() -> tuple[int, int]:
    """(rank, world_size) of the default process group, or (0, 1) outside one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed_from_env(device: torch.device | str = "cpu") -> tuple[int, int]:
    """Join the ``torchrun`` process group when its environment is set (gloo on CPU, nccl on
    CUDA); returns (rank, world_size), (0, 1) when not launched by torchrun."""
    import torch.distributed as dist

    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) < 2:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" and dist.is_nccl_available() else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (a one-item list outside a process group)."""
    import torch.distributed as dist

    rank, world = distributed_context()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out
