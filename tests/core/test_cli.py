"""The CLI: --help with an example everywhere, one-line errors with non-zero exits."""
from __future__ import annotations

import subprocess
import sys

import pytest

from clipaudit.cli import build_parser, main


def _subcommands(parser):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subcommands(sub))


def test_every_command_has_help_with_an_example():
    names = []
    for name, sub in _subcommands(build_parser()):
        names.append(name)
        assert "example:" in sub.format_help(), name
    assert {"layers", "toy", "toy train", "toy validate"} <= set(names)


def test_layers_lists_aliases(capsys):
    assert main(["layers", "--model", "toy-rn", "--pretrained", "none"]) == 0
    out = capsys.readouterr().out
    assert "visual.layer4.0" in out and "penultimate" in out and "nchw" in out


@pytest.mark.parametrize("argv,message", [
    (["layers", "--model", "toy-xl"], "unknown model 'toy-xl'; did you mean: toy-rn"),
    (["layers", "--model", "ViT-B-32", "--pretrained", "/nonexistent/w.pt"], "does not exist"),
    (["layers", "--model", "toy", "--pretrained", "none", "--device", "cuda:7"], "device"),
    (["toy", "train", "--steps", "0", "--out", "/tmp/x"], "steps must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_console_script_exit_code():
    proc = subprocess.run([sys.executable, "-m", "clipaudit.cli", "layers", "--model", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown model 'nope'")


def _help_of(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0, argv
    return capsys.readouterr().out


def test_top_level_and_every_subcommand_help_is_clean(capsys):
    """`clipaudit --help` once crashed on the '%' of "95% CIs"; defaults were printed twice."""
    commands = [[]] + [name.split() for name, _ in _subcommands(build_parser())]
    assert len(commands) >= 10
    for argv in commands:
        text = _help_of(argv, capsys)
        flat = " ".join(text.split())
        assert "example:" in text, argv
        assert "(default: None)" not in flat and "(default: False)" not in flat, argv
        assert "(default: (default" not in flat, argv
    assert "95% CIs" in " ".join(_help_of([], capsys).split())


def test_each_flag_states_its_default_at_most_once():
    from clipaudit.cli import _Formatter

    for name, sub in [("clipaudit", build_parser())] + list(_subcommands(build_parser())):
        fmt = _Formatter(name)
        for action in sub._actions:
            if action.help:
                text = fmt._expand_help(action)
                assert text.count("(default:") <= 1, (name, action.option_strings, text)
    seed = next(a for a in _subcommands(build_parser()) if a[0] == "toy validate")[1]
    assert "(default: 0)" in " ".join(seed.format_help().split())  # an informative zero is kept


def test_bare_command_prints_help_not_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "clipaudit.cli"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "example:" in proc.stdout


# -- one vocabulary on the command line -------------------------------------------------------------

def _subparsers():
    from clipaudit.cli import build_parser

    return build_parser()._subparsers._group_actions[0].choices


def _flags(parser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def test_every_image_audit_spells_its_shared_flags_the_same():
    cmds = _subparsers()
    for name in ("neurons", "typographic", "adversarial", "bias", "heads", "limitations"):
        flags = _flags(cmds[name])
        assert {"--images", "--n-images", "--batch-size"} <= flags, (name, sorted(flags))
    for name in ("typographic", "bias"):
        assert "--bootstrap" in _flags(cmds[name]), name
    assert "--skew-reference" in _flags(cmds["bias"])  # bias's --target (a reference distribution) renamed


def test_old_spellings_still_work_and_say_the_new_name(capsys):
    cmds = _subparsers()
    args = cmds["typographic"].parse_args(["--target", "pizza", "--n", "12", "--n-resamples", "300"])
    assert args.n == 12 and args.n_resamples == 300
    err = capsys.readouterr().err
    assert "--n is now --n-images" in err and "--n-resamples is now --bootstrap" in err
    args = cmds["bias"].parse_args(["--dataset", "toy:40", "--target", "equal"])
    assert args.dataset == "toy:40" and args.target == "equal"
    assert "--dataset is now --images" in capsys.readouterr().err
    args = cmds["neurons"].parse_args(["--batch-size", "8"])
    assert args.batch == 8 and capsys.readouterr().err == ""
