"""Run one registered audit into a run folder: the single path every audit command takes.

Why one path: the run folder, the manifest's ``configs[<audit>]`` entry, the result sink with
its contract, eval mode, progress bars and status all happen here, identically for
``clipaudit neurons``, ``clipaudit audit`` and any audit added to :data:`clipaudit.AUDITS`.
"""
from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from clipaudit.audits import AUDITS
from clipaudit.model import eval_mode
from clipaudit.result import Result
from clipaudit.runs import MANIFEST, RunFolder
from clipaudit.sink import ResultSink


@dataclass(frozen=True)
class Intervention:
    """An edit of the model that an audit runs under: ``kind`` (``ablate_heads``, ``sae_edit``),
    ``spec`` as the user gave it, and ``enter()`` returning the context manager that applies it."""

    kind: str
    spec: str
    enter: Callable[[], Any]


def _run_edited(audit, model, source, config, sink: ResultSink, options: dict | None) -> Result:
    """``audit.run`` in eval mode, under every intervention the model carries (``--ablate-heads``,
    ``--sae-edit``), each removed on the way out."""
    with eval_mode(model), ExitStack() as stack:
        for edit in getattr(model, "interventions", None) or []:
            stack.enter_context(edit.enter())
        return audit.run(model, source, config, sink, **(options or {}))


def run_audit(name: str, model, source, config, out: str | Path | None = None, seed: int | None = None,
              progress: Callable | None = None, log: Callable[[str], None] | None = None,
              write: bool = True, extra: dict | None = None,
              inputs: dict | None = None, options: dict | None = None,
              existing: str | None = None) -> tuple[Result, RunFolder | None]:
    """Run audit ``name`` on ``model`` over ``source`` with ``config``.

    Args:
        name: a key of :data:`clipaudit.AUDITS`.
        model: an :class:`~clipaudit.model.AuditModel` (put in eval mode for the run and handed
            back in the mode it came in).
        source: a :class:`~clipaudit.data.ImageSource`.
        config: an instance of the audit's config class.
        out: run folder (None: ``runs/<name>-<timestamp>``).
        seed: recorded in the manifest.
        progress, log: presentation callbacks for the sink.
        write: False keeps results in memory only (other torchrun ranks, notebooks).
        extra: more manifest fields (e.g. ``world_size``).
        inputs: how ``source`` was opened (the CLI's image flags: spec, count, seed), kept under
            ``manifest.json["inputs"][name]`` so the run can be reproduced from its manifest.
        options: extra keyword arguments for the audit's ``run`` (objects that are not config,
            e.g. the adversarial audit's ``transfer_model``).
        existing: an ``out`` that already holds a run: ``"refuse"`` (the default), ``"force"``
            (replace it) or ``"resume"`` (add this audit of the same model), as ``--force`` /
            ``--resume`` on the command line.

    Returns:
        ``(result, run)``; ``run`` is None when ``write`` is False.

    Raises:
        ClipauditError: whatever the audit refuses, the run folder being occupied or unwritable.
    """
    audit = AUDITS[name]
    if not isinstance(config, audit.config):
        raise TypeError(f"audit {name!r} needs a {audit.config.__name__}, got {type(config).__name__}")
    if not write:
        return _run_edited(audit, model, source, config, ResultSink(audit.contract, None, progress=progress, log=log),
                           options), None
    edits = getattr(model, "interventions", None) or []
    cfg = audit.config_dict(config)
    if edits:  # an edited model is not the checkpoint: the manifest says so
        extra = {**(extra or {}), "interventions": [{"kind": e.kind, "spec": e.spec} for e in edits]}
    run = RunFolder.create(name, out, model=model, seed=seed, config=cfg, extra=extra, existing=existing)
    with run:  # RunFolder.create keeps cfg under manifest["configs"][name], with per-audit provenance
        if inputs is not None:
            manifest = json.loads((run.path / MANIFEST).read_text())
            known = manifest.get("inputs") if isinstance(manifest.get("inputs"), dict) else {}
            run.update_manifest({"inputs": {**known, name: inputs}})
        result = _run_edited(audit, model, source, config,
                             ResultSink(audit.contract, run, progress=progress, log=log), options)
    return result, run


__all__ = ["Intervention", "run_audit"]
