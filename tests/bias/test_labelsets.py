"""Label sets: the built-in CLIP-study and toy sets, overrides, and clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipaudit.bias.labelsets import load_label_set
from clipaudit.errors import ClipauditError


def test_fairface_builtin_matches_the_clip_study():
    ls = load_label_set("fairface")
    assert len(ls.classes) == 21
    assert set(ls.harmful["non-human"]) == {"animal", "gorilla", "chimpanzee", "orangutan"}
    assert set(ls.harmful["crime"]) == {"thief", "criminal", "suspicious person"}
    ext, added = ls.extended_classes()
    assert "child" in added and ext[:21] == ls.classes


def test_toy_builtin():
    ls = load_label_set("toy")
    assert set(ls.harmful_classes) == {"criminal", "thief"}
    assert {w.kind for w in ls.weat} == {"image", "text"}


def test_labels_file_overrides_and_yaml(tmp_path: Path):
    f = tmp_path / "labels.yaml"
    f.write_text("classes: [person, robot, villain]\nharmful: [villain]\nneutral_additions: [child]\n")
    ls = load_label_set("toy", labels=f)
    assert ls.classes == ("person", "robot", "villain") and ls.harmful_classes == ("villain",)
    assert ls.skew_concepts  # prompts still from the built-in set
    p = tmp_path / "prompts.json"
    p.write_text(json.dumps({"skew": {"concepts": ["hero"], "templates": ["a {}."]}}))
    assert load_label_set("toy", prompts=p).skew_concepts == ("hero",)


@pytest.mark.parametrize("content,match", [
    ({"classes": ["a", "b"], "harmful": ["c"]}, "harmful class 'c' is not in 'classes'"),
    ({"classes": ["a", "a"], "harmful": ["a"]}, "classes repeat a"),
    ({"classes": ["a"], "harmful": ["a"]}, "every class is harmful"),
    ({"classes": ["a", "b"]}, "needs 'classes' and 'harmful'"),
    ({"classes": ["a", "b"], "harmful": ["a"], "templates": ["photo"]}, "no '{}' placeholder"),
])
def test_bad_label_files(tmp_path: Path, content, match):
    f = tmp_path / "l.json"
    f.write_text(json.dumps(content))
    with pytest.raises(ClipauditError, match=match):
        load_label_set("toy", labels=f)


def test_unparseable_and_missing_files(tmp_path: Path):
    f = tmp_path / "l.json"
    f.write_text("{not json")
    with pytest.raises(ClipauditError, match="cannot parse labels file"):
        load_label_set("toy", labels=f)
    with pytest.raises(ClipauditError, match="does not exist"):
        load_label_set("toy", prompts=tmp_path / "nope.json")
