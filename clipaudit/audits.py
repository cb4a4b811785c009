"""The audit registry: one entry per audit, read by the CLI, ``clipaudit audit``, ``diff``, the
dashboard and the model card, so a new audit plugs in by adding its module and one line here.

Why a registry (open_clip's model-config registry, Dash's ``register_page``): before it, the list
of audits, their headline figures, their paired metrics and the model-card limitations they
measure were kept in five places that drifted apart.

An :class:`Audit` says everything a consumer needs:

- ``config``: its frozen config dataclass (only what the science needs; image folders and
  counts stay in the CLI), saved in ``manifest.json["configs"][name]``;
- ``run(model, source, config, sink) -> Result``: the audit itself; ``source`` is always a
  :class:`clipaudit.data.ImageSource`, ``sink`` a :class:`clipaudit.sink.ResultSink`;
- ``contract``: the tables and summary keys it writes (:mod:`clipaudit.contract`);
- ``headlines``: the figures ``clipaudit audit`` prints and the dashboard's overview shows;
- ``limitations``: model-card limitation id -> summary keys that measure it, most telling first;
- ``paired``: per-item metrics ``clipaudit diff`` can pair between two runs;
- ``cli``: the module whose ``register(subparsers)`` adds its command;
- ``plan(args)``: its command line inside ``clipaudit audit`` (``args.quick`` picks small sizes);
- ``input_flags``/``same_inputs``: what makes two of its runs comparable, for ``diff``.

Entries load lazily (``"name": "module.path"``, the module exposing ``AUDIT``), so importing
clipaudit stays cheap. :func:`register` adds one at run time (plugins, tests).
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Callable

from clipaudit.contract import AuditContract
from clipaudit.errors import ClipauditError, suggest

# One line per audit: name -> (module exposing ``AUDIT``, module whose ``register(sub)`` adds its
# command). The second lets ``clipaudit --help`` list commands without importing torch-heavy audits.
# Order = the order ``clipaudit audit`` runs them.
_BUILTIN: dict[str, tuple[str, str]] = {
    "neurons": ("clipaudit.probes.audit", "clipaudit.probes.cli"),
    "typographic": ("clipaudit.attacks.typographic_audit", "clipaudit.attacks.typographic_cli"),
    "adversarial": ("clipaudit.attacks.adversarial_audit", "clipaudit.attacks.adversarial_cli"),
    "bias": ("clipaudit.bias.audit", "clipaudit.bias.cli"),
    "sae": ("clipaudit.probes.sae_audit", "clipaudit.probes.sae_cli"),
    "heads": ("clipaudit.probes.heads_audit", "clipaudit.probes.heads_cli"),
    "limitations": ("clipaudit.probes.limitations_audit", "clipaudit.probes.limitations_cli"),
}


@dataclass(frozen=True)
class Headline:
    """One headline figure: ``key`` in the audit's summary section, its label, and its CI key."""

    key: str
    label: str
    ci_key: str | None = None


@dataclass(frozen=True)
class PairedMetric:
    """A rate or mean computed per item (row of ``table``) so two runs can be paired by ``diff``.

    ``value(df)`` returns one float per row (NaN rows are dropped from both runs).
    """

    audit: str
    table: str
    name: str
    value: Callable[[Any], Any]


def column(name: str) -> Callable[[Any], Any]:
    """Paired value: a numeric column as float (non-numbers become NaN)."""
    import pandas as pd

    return lambda df: pd.to_numeric(df[name], errors="coerce").astype(float)


def equals(a: str, b: str) -> Callable[[Any], Any]:
    """Paired value: 1.0 where columns ``a`` and ``b`` hold the same text, else 0.0."""
    return lambda df: (df[a].astype(str) == df[b].astype(str)).astype(float)


def minus(a: str, b: str) -> Callable[[Any], Any]:
    """Paired value: column ``a`` minus column ``b``."""
    import pandas as pd

    return lambda df: pd.to_numeric(df[a], errors="coerce") - pd.to_numeric(df[b], errors="coerce")


@dataclass(frozen=True)
class Audit:
    name: str
    config: type
    run: Callable[..., Any]
    contract: AuditContract
    headlines: tuple[Headline, ...] = ()
    limitations: dict[str, tuple[str, ...]] = field(default_factory=dict)
    paired: tuple[PairedMetric, ...] = ()
    cli: str | None = None
    plan: Callable[[Any], list[str]] | None = None
    description: str = ""
    #: the flags that fix the audit's inputs (what to pass alike so two runs pair), for messages
    input_flags: str = "--images, --n-images and --seed"
    #: summary keys two runs must share before their tables are paired (e.g. the neurons' layer)
    same_inputs: tuple[str, ...] = ()
    #: its dashboard page module (None: the generic page shows its contract's tables and summary)
    page: str | None = None

    def __post_init__(self) -> None:
        if not is_dataclass(self.config):
            raise TypeError(f"audit {self.name!r}: config must be a dataclass, got {self.config!r}")
        if self.contract.section != self.name:
            raise ValueError(f"audit {self.name!r}: its contract's section is {self.contract.section!r}")

    def config_dict(self, config: Any) -> dict[str, Any]:
        """JSON-ready config for ``manifest.json["configs"][name]`` (nested dataclasses included;
        tuples become lists, as JSON has them), so a config and its manifest entry compare equal."""
        import json
        from dataclasses import asdict

        from clipaudit.runs import to_json

        return json.loads(to_json(asdict(config)))

    def config_from_dict(self, values: dict[str, Any]) -> Any:
        """Rebuild a config from its manifest entry (unknown keys refused, naming them)."""
        names = {f.name for f in fields(self.config)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ClipauditError(f"{self.name} config has unknown field(s) {', '.join(unknown)}; "
                                 f"valid: {', '.join(sorted(names))}")
        kwargs = {}
        for f in fields(self.config):
            if f.name not in values:
                continue
            value = values[f.name]
            default = self.config.__dataclass_fields__[f.name]
            sub = default.default_factory() if callable(default.default_factory) else default.default  # type: ignore[misc]
            if is_dataclass(sub) and isinstance(value, dict):
                value = type(sub)(**value)
            elif isinstance(value, list) and isinstance(sub, tuple):
                value = tuple(value)
            kwargs[f.name] = value
        return self.config(**kwargs)


@dataclass(frozen=True)
class HeadlineValue:
    """A headline figure found in a run's summary: its audit, its :class:`Headline`, the value
    and the value's interval (``[lo, hi]`` or None)."""

    audit: str
    headline: Headline
    value: Any
    ci: list | None


def headline_values(summary: dict) -> list[HeadlineValue]:
    """Every registered audit's headline figures present in ``summary`` (a run's summary.json),
    in registry order; the one walk the CLI table and the dashboard overview both format."""
    out = []
    for audit in AUDITS.values():
        section = summary.get(audit.name)
        if not isinstance(section, dict):
            continue
        for h in audit.headlines:
            if section.get(h.key) is None:
                continue
            ci = section.get(h.ci_key) if h.ci_key else None
            ok = isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(c, (int, float)) for c in ci)
            out.append(HeadlineValue(audit.name, h, section[h.key], list(ci) if ok else None))
    return out


class _Registry(Mapping[str, Audit]):
    """name -> :class:`Audit`, loading each module on first access."""

    def __init__(self, entries: dict[str, tuple[str, str]]) -> None:
        self._entries: dict[str, tuple[str, str] | Audit] = dict(entries)

    def __getitem__(self, name: str) -> Audit:
        if name not in self._entries:
            raise ClipauditError(f"unknown audit {name!r}{suggest(name, list(self._entries))}; "
                                 f"registered: {', '.join(self._entries)}")
        entry = self._entries[name]
        if isinstance(entry, tuple):
            module = importlib.import_module(entry[0])
            loaded = getattr(module, "AUDIT")
            if not isinstance(loaded, Audit) or loaded.name != name:
                raise TypeError(f"{entry[0]}.AUDIT is not the Audit {name!r}")
            self._entries[name] = entry = loaded
        return entry

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def cli_module(self, name: str) -> str | None:
        """The module adding ``name``'s command, without importing the audit itself."""
        entry = self._entries[name]
        return entry[1] if isinstance(entry, tuple) else entry.cli


AUDITS = _Registry(_BUILTIN)


def register(audit: Audit, replace: bool = False) -> Audit:
    """Add ``audit`` to :data:`AUDITS` (refusing a name already taken unless ``replace``)."""
    if audit.name in AUDITS.names() and not replace:
        raise ClipauditError(f"an audit named {audit.name!r} is already registered")
    AUDITS._entries[audit.name] = audit
    return audit


def unregister(name: str) -> None:
    """Remove a run-time registration (tests); the built-in audits stay."""
    if name in _BUILTIN:
        raise ClipauditError(f"{name!r} is a built-in audit")
    AUDITS._entries.pop(name, None)


__all__ = ["AUDITS", "Audit", "Headline", "HeadlineValue", "PairedMetric", "headline_values", "column", "equals", "minus", "register",
           "unregister"]
