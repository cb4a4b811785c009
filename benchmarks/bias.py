"""Benchmark: 10,000 bootstrap resamples of per-group harmful-label rates on 10,000 images.

Goal (issue 7): under 2 s on CPU. Prints the time of the vectorised path the probe uses
(``clipaudit.stats.grouped_rates_bootstrap`` + ``ci_from_draws``), the same CIs from a plain
row-resampling bootstrap (one index array per resample, chunked) for comparison, their ratio,
and the whole denigration table (rates, CIs, exact permutation tests, Holm/BH, ratios) at that size.

Run: python benchmarks/bias.py [--images 10000] [--resamples 10000]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--resamples", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from clipaudit import stats
    from clipaudit.bias import probes

    rng = np.random.default_rng(args.seed)
    n = args.images
    race = rng.choice([f"race{i}" for i in range(7)], size=n)
    gender = rng.choice(["Male", "Female"], size=n)
    harmful = rng.random(n) < np.where(race == "race1", 0.14, 0.06)
    groups = sorted(set(race))
    succ = np.array([harmful[race == g].sum() for g in groups])
    tot = np.array([(race == g).sum() for g in groups])

    t0 = time.perf_counter()
    draws = stats.grouped_rates_bootstrap(succ, tot, n_resamples=args.resamples, seed=args.seed)
    lo, hi = stats.ci_from_draws(draws)
    t_fast = time.perf_counter() - t0

    # Plain bootstrap: resample the 10,000 rows of each group (stratified), chunked like stats.bootstrap_ci.
    t0 = time.perf_counter()
    slow_lo = []
    for g in groups:
        x = harmful[race == g].astype(np.float32)
        slow_lo.append(stats.bootstrap_ci(x, n_resamples=args.resamples, seed=args.seed)[0])
    t_slow = time.perf_counter() - t0

    meta = pd.DataFrame({"id": np.arange(n).astype(str), "race": race, "gender": gender})
    t0 = time.perf_counter()
    table = probes.denigration(harmful, meta, ["race", "gender"], n_bootstrap=args.resamples)
    t_table = time.perf_counter() - t0

    print(f"per-group rate CIs, {args.resamples:,} resamples x {n:,} images x {len(groups)} groups")
    print(f"  vectorised (grouped_rates_bootstrap): {t_fast:.3f} s  (goal < 2 s: {'PASS' if t_fast < 2 else 'MISS'})")
    print(f"  row-resampling bootstrap_ci per group: {t_slow:.3f} s")
    print(f"  speed-up: {t_slow / t_fast:.1f}x; max |CI low difference|: {np.max(np.abs(np.array(slow_lo) - lo)):.4f}")
    print(f"full denigration table ({len(table)} groups, {args.resamples:,} resamples, exact permutation "
          f"test per group, Holm/BH): {t_table:.3f} s")


if __name__ == "__main__":
    main()
