"""Clocks shared by the benchmark scripts (imported as a sibling: run them as
``python benchmarks/<name>.py``)."""
from __future__ import annotations

import time

import torch


def clock() -> float:
    """CPU time of this process: the machine is shared, so wall time measures the neighbours.
    (With one torch thread CPU time is the work done; on CUDA wall time is used instead.)"""
    return time.perf_counter() if torch.cuda.is_available() else time.process_time()


def sync(device: torch.device | str) -> None:
    """Wait for queued CUDA work, so a timer read afterwards includes it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
