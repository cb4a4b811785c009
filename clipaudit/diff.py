"""Paired comparison of two runs of the same audit on the same inputs (e.g. two checkpoints).

Why paired: when both runs saw the same images, each image gives one value per run, and the
bootstrap of the per-image *difference* cancels the image-to-image spread that two independent
CIs would count twice. So the pairing is checked first: runs whose per-image tables hold
different image ids are refused rather than compared on the overlap, because a silent overlap
would make a change of data look like a change of model.

What pairs comes from the audit registry (``clipaudit.AUDITS``): each audit's ``paired`` metrics
name a per-item table, whose key columns and excluded-row column the run-folder contract
declares (docs/run-folders.md), and ``same_inputs`` the summary keys two runs must share (the
neurons' layer and probe count). A new audit is compared without this module changing. Today:

- typographic: ``typographic_images`` keyed by ``id`` (excluded rows dropped in both runs);
- adversarial: ``adversarial_images`` keyed by ``id`` (and ``eps`` when a run holds several);
- neurons: ``neurons`` keyed by ``neuron`` (same layer, same probe images);
- bias: ``bias_predictions`` keyed by ``id`` when a run has it; otherwise the per-group rates of
  ``bias_denigration`` are compared with an *unpaired* CI (``paired`` is False on those rows).

Used by the dashboard's Compare page and by ``clipaudit diff RUN_A RUN_B``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clipaudit.errors import ClipauditError
from clipaudit.runs import RunView, open_run
from clipaudit.stats import bootstrap_ci, ci_from_draws, grouped_rates_bootstrap

__all__ = ["DIFF_COLUMNS", "IncomparableError", "diff_runs", "comparable_audits", "left_out"]


class IncomparableError(ClipauditError):
    """Two runs' results of one audit are not on the same inputs, so they cannot be paired."""


DIFF_COLUMNS = ["audit", "metric", "a", "b", "difference", "ci_low", "ci_high", "n_pairs", "paired"]


def _metrics(audit: str) -> list:
    from clipaudit.audits import AUDITS

    return list(AUDITS[audit].paired)


def _spec(audit: str, table: str):
    from clipaudit.audits import AUDITS

    return AUDITS[audit].contract.table(table)


def _as_view(run: RunView | str | Path) -> RunView:
    return run if isinstance(run, RunView) else open_run(run)


def comparable_audits(run_a: RunView, run_b: RunView) -> list[str]:
    """Audits both runs hold a pairable table for, in registry order."""
    from clipaudit.audits import AUDITS

    out = []
    for audit in AUDITS:
        tables = {m.table for m in _metrics(audit)}
        if audit == "bias":
            tables.add("bias_denigration")
        if any(run_a.has_table(t) and run_b.has_table(t) for t in tables):
            out.append(audit)
    return out


def _keyed(run: RunView, audit: str, table: str) -> pd.DataFrame:
    df = run.table(table)
    spec = _spec(audit, table)
    if not spec.key:
        raise ClipauditError(f"{audit} table {table!r} declares no key columns; its rows cannot be paired")
    keys = [k for k in spec.key if k in df.columns]
    if spec.key[0] not in df.columns:
        raise ClipauditError(f"run {run.name}: table {table!r} has no {spec.key[0]!r} column; "
                             "it does not follow docs/run-folders.md")
    if spec.exclude and spec.exclude in df.columns:
        df = df[~df[spec.exclude].fillna(False).astype(bool)]
    if len(keys) > 1 and df[keys[1]].nunique() <= 1:
        keys = keys[:1]
    df = df.copy()
    df["_key"] = df[keys].astype(str).agg("|".join, axis=1)
    if df["_key"].duplicated().any():
        dup = df.loc[df["_key"].duplicated(), "_key"].iloc[0]
        raise ClipauditError(f"run {run.name}: table {table!r} repeats the key {dup!r}; cannot pair its rows")
    return df.set_index("_key")


def _check_same_inputs(run_a: RunView, run_b: RunView, table: str, a: pd.DataFrame, b: pd.DataFrame,
                       audit: str) -> None:
    from clipaudit.audits import AUDITS

    entry = AUDITS[audit]
    sa, sb = run_a.summary.get(audit) or {}, run_b.summary.get(audit) or {}
    differ = [f"{k} {sa.get(k)} vs {sb.get(k)}" for k in entry.same_inputs if sa.get(k) != sb.get(k)]
    ka, kb = set(a.index), set(b.index)
    if differ or ka != kb:
        shared = len(ka & kb)
        noun = {"id": "images"}.get(_spec(audit, table).key[0], _spec(audit, table).key[0] + "s")
        what = ", ".join(differ + [f"{len(ka)} vs {len(kb)} {noun} in {table}, {shared} shared"])
        raise IncomparableError(
            f"runs {run_a.name} and {run_b.name} are not on the same inputs ({audit}: {what}); a paired diff "
            f"needs identical inputs: rerun both with the same {entry.input_flags}")


def _paired_rows(run_a: RunView, run_b: RunView, audit: str, n_resamples: int, alpha: float,
                 seed: int) -> list[dict]:
    rows = []
    metrics = _metrics(audit)
    for table in dict.fromkeys(m.table for m in metrics):
        if not (run_a.has_table(table) and run_b.has_table(table)):
            continue
        a, b = _keyed(run_a, audit, table), _keyed(run_b, audit, table)
        _check_same_inputs(run_a, run_b, table, a, b, audit)
        b = b.loc[a.index]
        for m in metrics:
            if m.table != table:
                continue
            try:
                va, vb = m.value(a).to_numpy(), m.value(b).to_numpy()
            except KeyError:
                continue  # this run's table lacks an optional column
            ok = ~(np.isnan(va) | np.isnan(vb))
            va, vb = va[ok], vb[ok]
            lo, hi = bootstrap_ci(vb - va, np.mean, n_resamples=n_resamples, alpha=alpha, seed=seed) \
                if len(va) else (float("nan"), float("nan"))
            mean_a = float(va.mean()) if len(va) else float("nan")
            mean_b = float(vb.mean()) if len(vb) else float("nan")
            rows.append({"audit": audit, "metric": m.name, "a": mean_a, "b": mean_b,
                         "difference": mean_b - mean_a, "ci_low": float(lo), "ci_high": float(hi),
                         "n_pairs": int(len(va)), "paired": True})
    return rows


def _group_rows(run_a: RunView, run_b: RunView, n_resamples: int, alpha: float, seed: int) -> list[dict]:
    """Per-group harmful rates when no per-image bias table exists (unpaired CI)."""
    cols = ["attribute", "group", "n", "n_harmful"]
    a, b = run_a.table("bias_denigration"), run_b.table("bias_denigration")
    for name, df in ((run_a.name, a), (run_b.name, b)):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ClipauditError(f"run {name}: bias_denigration lacks {', '.join(missing)}")
    a = a.set_index(["attribute", "group"])
    b = b.set_index(["attribute", "group"])
    if set(a.index) != set(b.index) or not (a["n"].sort_index() == b.loc[a.index, "n"].sort_index()).all():
        raise IncomparableError(
            f"runs {run_a.name} and {run_b.name} are not on the same inputs (their bias groups or group "
            "sizes differ); rerun both with the same --images, --n-images and --seed")
    b = b.loc[a.index]
    da = grouped_rates_bootstrap(a["n_harmful"].to_numpy(), a["n"].to_numpy(), n_resamples, seed=seed)
    db = grouped_rates_bootstrap(b["n_harmful"].to_numpy(), b["n"].to_numpy(), n_resamples, seed=seed + 1)
    lo, hi = ci_from_draws(db - da, alpha=alpha)
    rows = []
    for i, (attr, group) in enumerate(a.index):
        ra = a["n_harmful"].iloc[i] / max(a["n"].iloc[i], 1)
        rb = b["n_harmful"].iloc[i] / max(b["n"].iloc[i], 1)
        rows.append({"audit": "bias", "metric": f"harmful_rate[{attr}={group}]", "a": float(ra), "b": float(rb),
                     "difference": float(rb - ra), "ci_low": float(lo[i]), "ci_high": float(hi[i]),
                     "n_pairs": int(a["n"].iloc[i]), "paired": False})
    return rows


def diff_runs(run_a: RunView | str | Path, run_b: RunView | str | Path, audit: str | None = None,
              n_resamples: int = 2000, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Headline metrics of two runs side by side with the paired difference ``b - a`` and its CI.

    Args:
        run_a, run_b: run folders (paths or :class:`~clipaudit.runs.RunView`); ``a`` is the baseline.
        audit: one registered audit to compare; default every audit both runs hold.
        n_resamples, alpha, seed: the percentile bootstrap of the per-item differences.

    Returns:
        DataFrame with columns ``audit, metric, a, b, difference, ci_low, ci_high, n_pairs, paired``,
        one row per metric (``difference = b - a``; ``n_pairs`` = items paired). Audits both runs
        hold but on different inputs (e.g. the neurons of toy-rn vs toy-vit) are left out, and the
        rest compared: ``left_out(df)`` gives audit -> why.

    Raises:
        ClipauditError: the runs share no audit, or none of the shared audits is on the same
            inputs (:class:`IncomparableError`, with every reason), or the one ``audit`` asked for
            is not, or a table does not follow the run-folder contract.

    Example:
        >>> diff_runs("runs/typo-ckpt1", "runs/typo-ckpt2", audit="typographic")
    """
    ra, rb = _as_view(run_a), _as_view(run_b)
    common = comparable_audits(ra, rb)
    if audit is not None:
        from clipaudit.audits import AUDITS

        AUDITS[audit]  # unknown names: one line naming the registered audits
        if audit not in common:
            raise ClipauditError(f"runs {ra.name} and {rb.name} do not both hold {audit} results; "
                                 f"comparable: {', '.join(common) or 'none'}")
        common = [audit]
    if not common:
        raise ClipauditError(f"runs {ra.name} ({', '.join(ra.audits)}) and {rb.name} ({', '.join(rb.audits)}) "
                             "share no audit with per-image results; compare two runs of the same audit")
    rows: list[dict] = []
    skipped: dict[str, str] = {}
    for name in common:
        try:
            got = _paired_rows(ra, rb, name, n_resamples, alpha, seed)
            if name == "bias" and not got and ra.has_table("bias_denigration") and rb.has_table("bias_denigration"):
                got = _group_rows(ra, rb, n_resamples, alpha, seed)
        except IncomparableError as err:
            skipped[name] = str(err)
            continue
        rows += got
    if skipped and not rows:
        raise IncomparableError("; ".join(skipped.values()))
    df = pd.DataFrame(rows, columns=DIFF_COLUMNS)
    df.attrs["left_out"] = skipped
    return df


def left_out(df: pd.DataFrame) -> dict[str, str]:
    """Audits :func:`diff_runs` left out of ``df`` (audit -> why); empty when it compared them all."""
    return dict(df.attrs.get("left_out") or {})
