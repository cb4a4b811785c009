"""The one place an audit's results go: tables, images and summary values, written as produced.

Why one object: before it, each audit wrote through its own closures and some tables reached
disk twice. A :class:`ResultSink` keeps the in-memory :class:`~clipaudit.result.Result` the
caller gets back *and*, when it has a run folder, writes each item at once and atomically (a
Ctrl-C keeps everything finished), after checking it against the audit's run-folder contract
(:mod:`clipaudit.contract`). No audit opens a file itself.

Example:
    >>> sink = ResultSink(contract.TYPOGRAPHIC, run)          # or ResultSink(contract.TYPOGRAPHIC)
    >>> sink.table("typographic_images", df)
    >>> path = sink.image("typographic_examples", fig)         # 'images/typographic_examples.png'
    >>> sink.summary(attack_success_rate=0.9, attack_success_ci=[0.85, 0.94])
    >>> sink.file("sae/weights.safetensors", data)            # any other declared file, as bytes
    >>> sink.result.tables["typographic_images"] is df
    True
"""
from __future__ import annotations

from typing import Any, Callable

import pandas as pd

from clipaudit.contract import AuditContract, check_file, check_summary, check_table
from clipaudit.result import Result
from clipaudit.runs import IMAGES, RunFolder


class ResultSink:
    """Collects one audit's results and writes them to ``run`` (when given) as they arrive.

    Args:
        contract: the audit's :class:`~clipaudit.contract.AuditContract` (its ``section`` names
            the summary section); None only for ad-hoc use outside the registry.
        run: the run folder, or None to keep results in memory only (notebooks, other ranks).
        section: summary section name when ``contract`` is None.
        progress: ``progress(iterable, total=None, desc="stage")`` wrapping long loops (default: none).
        log: one-line messages about what the audit is doing (default: dropped).

    Raises (from each method):
        ContractError: a table lacks a declared column or has the wrong dtype, a summary key
            is undeclared or of the wrong kind — a bug in the audit, caught where it is made.
    """

    def __init__(self, contract: AuditContract | None, run: RunFolder | None = None,
                 section: str | None = None, progress: Callable | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.contract = contract
        self.run = run
        #: presentation callbacks the caller chooses (the CLI: tqdm bars named for the stage, stderr)
        self.progress: Callable = progress or (lambda iterable, total=None, desc="": iterable)
        self.log: Callable[[str], None] = log or (lambda _msg: None)
        self.section = contract.section if contract is not None else (section or "results")
        self.result = Result(self.section)

    def table(self, name: str, df: pd.DataFrame) -> pd.DataFrame:
        """Record table ``name`` (replacing an earlier version of it) and write it."""
        check_table(self.contract, name, df)
        self.result.tables[name] = df
        if self.run is not None:
            self.run.write_table(name, df)
        return df

    def image(self, name: str, image: Any) -> str:
        """Record a PIL image or matplotlib figure; returns its path relative to the run folder."""
        self.result.images[name] = image
        if self.run is not None:
            return str(self.run.write_png(name, image))
        return f"{IMAGES}/{name}.png"

    def file(self, name: str, data: bytes) -> str:
        """Record any other file (weights, a config) at relative path ``name`` and write it
        atomically; ``name`` must be one of the contract's ``files``. Returns ``name``.

        Raises:
            ContractError: ``name`` is not declared by the audit's contract.
        """
        check_file(self.contract, name)
        self.result.files[name] = bytes(data)
        if self.run is not None:
            self.run.write_bytes(name, data)
        return name

    def summary(self, values: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
        """Merge headline values into the audit's summary section (and ``summary.json``)."""
        merged = {**(values or {}), **more}
        check_summary(self.contract, merged)
        self.result.summary.update(merged)
        if self.run is not None:
            self.run.update_summary(merged, section=self.section)
        return self.result.summary

    # RunFolder-shaped aliases, so helper functions written against a run folder accept a sink.
    def write_table(self, name: str, df: pd.DataFrame) -> pd.DataFrame:
        return self.table(name, df)

    def write_png(self, name: str, image: Any) -> str:
        return self.image(name, image)

    def update_summary(self, values: dict[str, Any], section: str | None = None) -> dict[str, Any]:
        if section not in (None, self.section):
            raise ValueError(f"this sink writes section {self.section!r}, not {section!r}")
        return self.summary(values)


__all__ = ["ResultSink"]
