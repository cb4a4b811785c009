"""Run every benchmark in this folder and print one table of measured ratios.

Why one script: the figures the project still lacks on a GPU (batched feature vis vs
sequential, scan and hook overhead, early exit, PGD vs torchattacks, bias bootstrap, the
dashboard) are then one short run the day a GPU is available:
``python benchmarks/run_all.py --device auto --quick``.

A benchmark module that defines ``run(quick, device) -> list[Row]`` (see ``_timing.Row``) is
imported and called in this process; any other ``benchmarks/*.py`` runs as a subprocess with
the arguments in :data:`ARGS` (``--quick`` ones when asked; unlisted scripts get ``--quick`` and
``--device`` when they accept them), and its printed lines go into the table as they are. A benchmark that fails is reported as a failed row; the others still run.

Run: python benchmarks/run_all.py [--device auto] [--quick] [--only a,b] [--threads N]
"""
from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _timing import Row, table  # noqa: E402

# Command lines of the scripts without ``run()``: (full, quick). ``{device}`` is filled in.
ARGS: dict[str, tuple[list[str], list[str]]] = {
    "adversarial": (["--device", "{device}"], ["--device", "{device}", "--batch", "8", "--steps", "5",
                                               "--ensemble-models", "toy-rn", "--ensemble-batch", "16", "--queries", "500"]),
    "bias": ([], []),
    "dashboard": ([], ["--repeats", "3"]),
    "typographic": ([], ["--n", "32"]),
}


def benchmarks(only: list[str] | None = None) -> list[str]:
    """Every benchmark script in this folder (not ``_*`` helpers nor this runner), by name."""
    names = sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_") and p.stem != "run_all")
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise SystemExit(f"error: unknown benchmark(s) {', '.join(unknown)}; valid: {', '.join(names)}")
        names = [n for n in names if n in only]
    return names


def _script_args(name: str, quick: bool, device: str) -> list[str]:
    """:data:`ARGS` when listed; otherwise ``--quick``/``--device`` when the script takes them."""
    if name in ARGS:
        return [a.format(device=device) for a in ARGS[name][1 if quick else 0]]
    source = (HERE / f"{name}.py").read_text()
    return (["--quick"] if quick and '"--quick"' in source else []) + \
        (["--device", device] if '"--device"' in source else [])


def _as_subprocess(name: str, quick: bool, device: str, threads: int | None) -> list[Row]:
    args = _script_args(name, quick, device)
    if threads and name in ("adversarial", "typographic"):
        args += ["--threads", str(threads)]
    done = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *args], capture_output=True, text=True,
                          cwd=HERE)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [Row(name, "FAILED", float("nan"), note=last[:120])]
    lines = [ln.rstrip() for ln in done.stdout.splitlines() if ln.strip()]
    return [Row(name, "(printed)", float("nan"), note=ln.strip()) for ln in lines]


def run_one(name: str, quick: bool, device: str, threads: int | None) -> list[Row]:
    module = importlib.import_module(name)
    if hasattr(module, "run"):
        try:
            return module.run(quick=quick, device=device)
        except Exception as err:  # one broken benchmark must not hide the others' figures
            traceback.print_exc(file=sys.stderr)
            return [Row(name, "FAILED", float("nan"), note=f"{type(err).__name__}: {err}"[:120])]
    return _as_subprocess(name, quick, device, threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    ap.add_argument("--quick", action="store_true", help="each benchmark's quick sizes")
    ap.add_argument("--only", default=None, help="comma-separated benchmark names")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from clipaudit.model import pick_device

    device = str(pick_device(args.device))
    rows: list[Row] = []
    timings = []
    for name in benchmarks([s.strip() for s in args.only.split(",")] if args.only else None):
        t = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        done = run_one(name, args.quick, device, args.threads)
        rows += done
        timings.append(f"{name} {time.perf_counter() - t:.0f} s")
        print("\n".join(r.line() for r in done) + f"\n({timings[-1]})", file=sys.stderr, flush=True)
    print(f"benchmarks on {device}{' (quick)' if args.quick else ''}, torch threads {torch.get_num_threads()}")
    print(table(rows))
    print("wall time: " + ", ".join(timings))


if __name__ == "__main__":
    main()
