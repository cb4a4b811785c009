"""The shape every audit returns: named tables, named images and headline numbers.

Why one shape: the CLI, notebooks, dashboard and reports then handle every audit the same way,
and ``save`` is the single place results reach disk (atomically, through ``clipaudit.runs``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from clipaudit.runs import RunFolder


@dataclass
class Result:
    """Tables + images + summary of one audit.

    Attributes:
        section: the audit's name; its headline numbers go under ``summary.json[section]``.
        tables: table name -> DataFrame (saved as CSV + Parquet).
        images: image name -> PIL image or matplotlib figure (saved as ``images/<name>.png``).
        summary: headline numbers (JSON-serialisable).
        files: relative path -> bytes of any other file (model weights such as an SAE's).
    """

    section: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    images: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)

    def save(self, run: RunFolder) -> RunFolder:
        for name, df in self.tables.items():
            run.write_table(name, df)
        for name, img in self.images.items():
            run.write_png(name, img)
        for name, data in self.files.items():
            run.write_bytes(name, data)
        if self.summary:
            run.update_summary(self.summary, section=self.section)
        return run
