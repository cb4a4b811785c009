"""Data-parallel runs under ``torchrun``: which process am I, and how are shards merged.

Why in the core: the activation scan and the zero-shot passes (typographic, bias) all shard a
source the same way (``ImageSource.shard``: every world_size-th item from rank) and must merge
back to exactly what one process would have produced, in source order, so that numbers do not
depend on how many processes ran. gloo on CPU, nccl on CUDA.
"""
from __future__ import annotations

import os
import socket
from typing import Any, Callable

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


def is_main_process() -> bool:
    return distributed_context()[0] == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _local_entry(rank: int, world_size: int, port: int, fn: Callable[..., None], args: tuple) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        fn(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def run_local_group(fn: Callable[..., None], world_size: int, *args: Any) -> None:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` local CPU processes joined by one
    gloo process group, and wait for all of them.

    Why: the sharded passes must merge to exactly the one-process answer, and checking that
    needs a real process group; this gives one on any machine, without ``torchrun``. ``fn`` must
    be a module-level function (it is pickled into each process).
    """
    import torch.multiprocessing as mp

    mp.spawn(_local_entry, args=(world_size, _free_port(), fn, args), nprocs=world_size, join=True)
