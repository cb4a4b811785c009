"""Clocks and the result row shared by the benchmark scripts (imported as a sibling: run them
as ``python benchmarks/<name>.py``, or all at once with ``python benchmarks/run_all.py``)."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch


def clock() -> float:
    """CPU time of this process: the machine is shared, so wall time measures the neighbours.
    (With one torch thread CPU time is the work done; on CUDA wall time is used instead.)"""
    return time.perf_counter() if torch.cuda.is_available() else time.process_time()


def sync(device: torch.device | str) -> None:
    """Wait for queued CUDA work, so a timer read afterwards includes it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@dataclass(frozen=True)
class Row:
    """One measured ratio: what was measured, its value, the goal and whether it is met.

    ``lower`` says which side of ``goal`` is good (a cost ratio: lower; a speed-up: higher).
    """

    benchmark: str
    case: str
    measured: float
    goal: float | None = None
    lower: bool = True
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.goal is None:
            return ""
        ok = self.measured <= self.goal if self.lower else self.measured >= self.goal
        return "meets" if ok else "MISSES"

    def line(self) -> str:
        goal = "" if self.goal is None else f"{'<=' if self.lower else '>='} {self.goal:.3f}"
        value = "" if self.measured != self.measured else f"{self.measured:9.3f}"  # NaN: a printed line
        return (f"{self.benchmark:14s} {self.case:44s} {value:>9s}  {goal:10s} {self.verdict:6s} "
                f"{self.note}").rstrip()


def table(rows: list[Row]) -> str:
    head = f"{'benchmark':14s} {'case':44s} {'measured':>9s}  {'goal':10s} {'':6s} note"
    return "\n".join([head, "-" * len(head)] + [r.line() for r in rows])
