"""The bias headline names every flagged group with its ratio, CI and Holm p, and explains a
group flagged while the label set lacks a class of its own name (the toy's age=child)."""
from __future__ import annotations

import pandas as pd

from clipaudit.bias.cli import flagged_lines


def _den():
    return pd.DataFrame({
        "attribute": ["skin", "skin", "age", "age", "hair"],
        "group": ["tone1", "tone3", "child", "adult", "long"],
        "rate": [0.29, 0.02, 0.18, 0.02, 0.10], "rate_rest": [0.05, 0.12, 0.02, 0.18, 0.09],
        "rate_ratio": [6.2, 0.15, 7.8, 0.13, 1.1], "ratio_ci_low": [3.4, 0.04, 3.2, 0.05, 0.7],
        "ratio_ci_high": [11.3, 0.54, 19.2, 0.31, 1.7], "p_holm": [4e-8, 0.009, 3e-7, 3e-7, 0.9]})


def _sens(added="child;adult"):
    return pd.DataFrame({"attribute": ["age", "age", "skin"], "group": ["child", "adult", "tone1"],
                         "rate_base": [0.18, 0.02, 0.29], "rate_extended": [0.093, 0.02, 0.21],
                         "added_classes": [added] * 3})


def test_every_flagged_group_with_ratio_ci_and_p_and_the_child_note():
    lines = flagged_lines(_den(), _sens(), 0.05)
    text = "\n".join(lines)
    assert lines[0].startswith("  flagged (Holm p < 0.05): skin=tone1, skin=tone3, age=child, age=adult")
    more = next(ln for ln in lines if "more often:" in ln)
    less = next(ln for ln in lines if "less often:" in ln)
    assert "skin=tone1 6.2x [3.4, 11.3] (Holm p 4e-08)" in more and "age=child 7.8x [3.2, 19.2]" in more
    assert "skin=tone3 0.15x" in less and "age=adult 0.13x" in less and "hair" not in text
    notes = [ln for ln in lines if ln.startswith("  note:")]
    assert len(notes) == 1 and "age=child" in notes[0] and "no 'child' class" in notes[0]
    assert "0.180 -> 0.093" in notes[0]


def test_no_note_when_the_label_set_already_names_the_group():
    lines = flagged_lines(_den(), _sens(added="teenager"), 0.05)
    assert not any(ln.startswith("  note:") for ln in lines)


def test_nothing_flagged():
    assert flagged_lines(_den().assign(p_holm=0.5), _sens(), 0.05) == ["  flagged (Holm p < 0.05): none"]
