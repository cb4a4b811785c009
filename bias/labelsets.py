"""Label sets and prompt sets for the bias probes, as data (JSON or YAML files).

Why data: the CLIP study showed that the class list changes the answer (adding 'child' moved the
harmful rate for ages 3-9 from 35.0% to 4.3%), so every report records exactly which classes,
templates and word sets were used, and an auditor swaps them with ``--labels`` / ``--prompts``.

File format (every key optional except ``classes`` and ``harmful`` in a label file)::

    {"name": "...", "templates": ["a photo of a {}."],
     "classes": [...], "harmful": {"crime": [...], "non-human": [...]}   # or a plain list
     "neutral_additions": ["child", "person", ...],
     "skew": {"templates": [...], "concepts": [...]},
     "weat": {"templates": [...], "image": [{"name", "attribute", "x", "y", "a", "b"}],
              "text": [{"name", "x": [...], "y": [...], "a": [...], "b": [...]}]}}

``--labels FILE`` replaces the label keys (classes, harmful, neutral additions, templates);
``--prompts FILE`` replaces the ``skew`` and ``weat`` sections.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from clipaudit.errors import ClipauditError

BUILTIN = ("fairface", "toy")
_LABEL_KEYS = ("name", "description", "templates", "classes", "harmful", "neutral_additions")
_PROMPT_KEYS = ("skew", "weat")


@dataclass(frozen=True)
class WeatTest:
    """One WEAT. Image form: X/Y are values of ``attribute`` (Y None = every other value).
    Text form: X/Y are word lists. A/B are attribute words; ``templates`` wrap them."""

    name: str
    kind: str  # "image" | "text"
    x: tuple[str, ...]
    y: tuple[str, ...] | None
    a: tuple[str, ...]
    b: tuple[str, ...]
    attribute: str = ""
    templates: tuple[str, ...] = ("{}",)
    target_templates: tuple[str, ...] = ("{}",)


@dataclass(frozen=True)
class LabelSet:
    """Everything the probes need to know about classes, prompts and word sets."""

    name: str
    classes: tuple[str, ...]
    harmful: dict[str, tuple[str, ...]]
    templates: tuple[str, ...] = ("a photo of a {}.",)
    neutral_additions: tuple[str, ...] = ()
    skew_concepts: tuple[str, ...] = ()
    skew_templates: tuple[str, ...] = ("a photo of a {}.",)
    weat: tuple[WeatTest, ...] = ()
    description: str = ""
    sources: tuple[str, ...] = field(default=())

    @property
    def harmful_classes(self) -> tuple[str, ...]:
        return tuple(c for kind in self.harmful.values() for c in kind)

    def extended_classes(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(classes with the neutral additions, the additions that were not already there)."""
        added = tuple(c for c in self.neutral_additions if c not in self.classes)
        return self.classes + added, added

    def describe(self) -> dict:
        return {"name": self.name, "classes": list(self.classes),
                "harmful": {k: list(v) for k, v in self.harmful.items()},
                "templates": list(self.templates), "neutral_additions": list(self.neutral_additions),
                "skew_concepts": list(self.skew_concepts), "skew_templates": list(self.skew_templates),
                "weat": [w.name for w in self.weat], "sources": list(self.sources)}


def _read(path: Path | str, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ClipauditError(f"{what} file {str(path)!r} does not exist; pass a JSON or YAML file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as err:  # json.JSONDecodeError, yaml.YAMLError
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ClipauditError(f"cannot parse {what} file {str(path)!r} ({first[:100]}); "
                             "it must be JSON (.json) or YAML (.yaml)") from None
    if not isinstance(data, dict):
        raise ClipauditError(f"{what} file {str(path)!r} must hold a mapping (JSON object) at the top")
    return data


def builtin(name: str) -> dict:
    """The raw dict of a shipped label set (``fairface`` or ``toy``)."""
    if name not in BUILTIN:
        raise ClipauditError(f"unknown built-in label set {name!r}; valid: {', '.join(BUILTIN)}")
    return json.loads(resources.files("clipaudit.bias").joinpath(f"data/{name}.json").read_text("utf-8"))


def _strs(value: Any, key: str, where: str, allow_empty: bool = False) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) \
            or not all(isinstance(v, str) and v.strip() for v in value):
        raise ClipauditError(f"{where}: {key!r} must be a list of non-empty strings")
    if not value and not allow_empty:
        raise ClipauditError(f"{where}: {key!r} is empty; give at least one entry")
    return tuple(v.strip() for v in value)


def _templates(value: Any, key: str, where: str) -> tuple[str, ...]:
    from clipaudit.model import check_template

    out = _strs(value, key, where)
    for t in out:
        try:
            check_template(t)
        except ValueError as err:
            raise ClipauditError(f"{where}: {err} (in {key!r})") from None
    return out


def _weat(section: dict, where: str) -> tuple[WeatTest, ...]:
    if not isinstance(section, dict):
        raise ClipauditError(f"{where}: 'weat' must be a mapping with 'image' and/or 'text' lists")
    default_t = _templates(section.get("templates", ["{}"]), "weat.templates", where)
    tests = []
    for kind in ("image", "text"):
        for i, spec in enumerate(section.get(kind, []) or []):
            w = f"{where}: weat.{kind}[{i}]"
            if not isinstance(spec, dict):
                raise ClipauditError(f"{w} must be a mapping with x, y, a, b")
            missing = [k for k in ("x", "a", "b") if k not in spec]
            if missing:
                raise ClipauditError(f"{w} is missing {', '.join(missing)}")
            templates = _templates(spec.get("attribute_templates", spec.get("templates", default_t))
                                   if kind == "text" else spec.get("templates", default_t), "templates", w)
            if kind == "image":
                if not spec.get("attribute"):
                    raise ClipauditError(f"{w} needs 'attribute' (the metadata column X and Y are values of)")
                x = (str(spec["x"]),) if not isinstance(spec["x"], list) else _strs(spec["x"], "x", w)
                y = None if spec.get("y") in (None, "", "rest") else \
                    ((str(spec["y"]),) if not isinstance(spec["y"], list) else _strs(spec["y"], "y", w))
                target_t = ("{}",)
            else:
                x, y = _strs(spec["x"], "x", w), _strs(spec.get("y", []), "y", w)
                target_t = _templates(spec.get("templates", ["{}"]), "templates", w)
            tests.append(WeatTest(name=str(spec.get("name") or f"{kind}-{i}"), kind=kind, x=x, y=y,
                                  a=_strs(spec["a"], "a", w), b=_strs(spec["b"], "b", w),
                                  attribute=str(spec.get("attribute", "")), templates=templates,
                                  target_templates=target_t))
    return tuple(tests)


def build_label_set(data: dict, where: str = "label set", sources: tuple[str, ...] = ()) -> LabelSet:
    """Validate a raw dict (the file format above) into a :class:`LabelSet`."""
    if "classes" not in data or "harmful" not in data:
        raise ClipauditError(f"{where} needs 'classes' (the zero-shot class list) and 'harmful' "
                             "(which of them count as harmful, a list or {kind: [...]})")
    classes = _strs(data["classes"], "classes", where)
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise ClipauditError(f"{where}: classes repeat {', '.join(dup[:5])}; each class once")
    raw_h = data["harmful"]
    harmful = {k: _strs(v, f"harmful.{k}", where) for k, v in raw_h.items()} if isinstance(raw_h, dict) \
        else {"harmful": _strs(raw_h, "harmful", where)}
    unknown = [c for v in harmful.values() for c in v if c not in classes]
    if unknown:
        raise ClipauditError(f"{where}: harmful class {unknown[0]!r} is not in 'classes'; "
                             "harmful classes must be offered to the model")
    if not any(harmful.values()):
        raise ClipauditError(f"{where}: 'harmful' marks no class; mark at least one")
    if len(classes) - sum(len(v) for v in harmful.values()) < 1:
        raise ClipauditError(f"{where}: every class is harmful; add at least one neutral class")
    skew = data.get("skew", {}) or {}
    if not isinstance(skew, dict):
        raise ClipauditError(f"{where}: 'skew' must be a mapping with 'concepts' and 'templates'")
    return LabelSet(
        name=str(data.get("name", "custom")), classes=classes, harmful=harmful,
        templates=_templates(data.get("templates", ["a photo of a {}."]), "templates", where),
        neutral_additions=_strs(data.get("neutral_additions", []), "neutral_additions", where, allow_empty=True),
        skew_concepts=_strs(skew.get("concepts", []), "skew.concepts", where, allow_empty=True),
        skew_templates=_templates(skew.get("templates", ["a photo of a {}."]), "skew.templates", where),
        weat=_weat(data.get("weat", {}) or {}, where),
        description=str(data.get("description", "")), sources=sources)


def load_label_set(default: str = "fairface", labels: str | Path | None = None,
                   prompts: str | Path | None = None) -> LabelSet:
    """The built-in ``default`` set, with label keys from ``labels`` and prompt sections from
    ``prompts`` replacing the built-in ones when given."""
    data = builtin(default)
    sources = [f"builtin:{default}"]
    if labels:
        override = _read(labels, "labels")
        if "classes" not in override or "harmful" not in override:
            raise ClipauditError(f"labels file {str(labels)!r} needs 'classes' and 'harmful' "
                                 "(which classes count as harmful)")
        for key in _LABEL_KEYS:
            data.pop(key, None)
        data.update({k: v for k, v in override.items() if k in _LABEL_KEYS + _PROMPT_KEYS})
        sources.append(f"labels:{labels}")
    if prompts:
        override = _read(prompts, "prompts")
        if not any(k in override for k in _PROMPT_KEYS):
            raise ClipauditError(f"prompts file {str(prompts)!r} has neither 'skew' nor 'weat'; "
                                 "give at least one of them")
        data.update({k: override[k] for k in _PROMPT_KEYS if k in override})
        sources.append(f"prompts:{prompts}")
    return build_label_set(data, where=" + ".join(sources), sources=tuple(sources))
