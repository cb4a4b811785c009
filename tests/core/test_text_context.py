"""Text the model never reads: prompts past the text context are named, heads that read the same
are refused, and templates must have exactly one '{}' (through the API and the CLI)."""
from __future__ import annotations

import warnings

import pytest

from clipaudit.cli import main
from clipaudit.errors import ClipauditError
from clipaudit.model import check_template
from clipaudit.zeroshot import read_templates

# 16 tokens is the toys' context: "a photo of a" + this stem already fills it
STEM = "very long and detailed name of a red apple on a wooden table with"


def test_context_length_and_token_counts(tiny_vit):
    assert tiny_vit.context_length == 16
    # start + "a photo of a apple ." (6 words/marks) + end = 8, counted by hand
    assert tiny_vit.token_counts(["a photo of a apple."]) == [8]
    assert tiny_vit.cut_texts(["a photo of a apple.", f"a photo of a {STEM} one."]) == [f"a photo of a {STEM} one."]


def test_classes_that_differ_only_past_the_context_are_refused(tiny_vit):
    with pytest.raises(ValueError, match=f"classes '{STEM} one' and '{STEM} two' read the same"):
        tiny_vit.classifier([f"{STEM} one", f"{STEM} two", "apple"])


def test_cut_prompts_are_named_in_a_warning(tiny_vit):
    with pytest.warns(UserWarning, match="prompt 'a photo of a very long .*16-token text context"):
        head = tiny_vit.classifier([f"{STEM} one", "apple"])
    assert head.weights.shape[0] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_vit.encode_texts(["a photo of a apple.", "pizza"])  # short prompts: silent


@pytest.mark.parametrize("template,found", [("a {} of a {}.", "2 fields"), ("no placeholder", "no '{}' placeholder"),
                                            ("a photo of {0}", "['0']"), ("a {name}", "['name']"),
                                            ("a photo of a {", "unbalanced")])
def test_bad_templates_are_refused_by_the_core_and_at_read_time(tmp_path, tiny_vit, template, found):
    with pytest.raises(ValueError, match="exactly one"):
        check_template(template)
    with pytest.raises(ValueError, match=found.replace("[", r"\[").replace("]", r"\]")):
        tiny_vit.classifier(["apple"], [template])
    path = tmp_path / "t.txt"
    path.write_text(f"a photo of a {{}}.\n{template}\n")
    with pytest.raises(ClipauditError, match="exactly one"):
        read_templates(str(path))


def test_literal_braces_are_fine():
    assert check_template("a {{boxed}} photo of a {}.") == "a {{boxed}} photo of a {}."


@pytest.mark.parametrize("command", ["typographic", "adversarial"])
def test_cli_two_placeholder_template_is_one_line_exit_2(tmp_path, capsys, command):
    path = tmp_path / "t.txt"
    path.write_text("a {} of a {}.\n")
    argv = [command, "--model", "toy-rn", "--pretrained", "none", "--templates", str(path),
            "--out", str(tmp_path / "run"), *(["--target", "pizza"] if command == "typographic" else [])]
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "exactly one '{}'" in err[0]


def test_cli_classes_that_read_the_same_are_one_line_exit_2(tmp_path, capsys):
    classes = tmp_path / "classes.txt"
    classes.write_text(f"apple\n{STEM} one\n{STEM} two\n")
    argv = ["typographic", "--model", "toy-rn", "--pretrained", "none", "--classes", str(classes),
            "--target", "apple", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and f"'{STEM} one' and '{STEM} two'" in errors[0]
    assert "Traceback" not in err


def test_bias_label_and_prompt_templates_use_the_same_check(tmp_path):
    import json

    from clipaudit.bias.labelsets import load_label_set

    labels = tmp_path / "l.json"
    labels.write_text(json.dumps({"classes": ["a", "b"], "harmful": ["a"], "templates": ["a {} and a {}."]}))
    with pytest.raises(ClipauditError, match="exactly one"):
        load_label_set("toy", labels=labels)
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps({"skew": {"concepts": ["hero"], "templates": ["a {0}."]}}))
    with pytest.raises(ClipauditError, match="exactly one"):
        load_label_set("toy", prompts=prompts)
