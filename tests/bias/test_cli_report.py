"""The CLI end to end on a random-init toy (plumbing: contract tables, summary keys, reports)
and every bad input the issue lists as a one-line error with exit 2."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from clipaudit.cli import main

FAST = ["--pretrained", "none", "--bootstrap", "200", "--permutations", "200", "--k", "10"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bias") / "run"
    assert main(["bias", "--images", "toy:64", *FAST, "--out", str(out)]) == 0
    return out


def test_run_folder_follows_the_contract(run_dir: Path):
    cols = {
        "bias_denigration": ["attribute", "group", "n", "n_harmful", "rate", "ci_low", "ci_high", "p", "p_holm",
                             "p_bh", "mdd"],
        "bias_intersectional": ["attribute", "group", "n", "n_harmful", "rate", "ci_low", "ci_high", "p", "p_holm",
                                "p_bh", "mdd"],
        "bias_label_sensitivity": ["attribute", "group", "rate_base", "rate_extended", "delta", "added_classes"],
        "bias_skew": ["prompt", "k", "max_skew", "max_skew_ci_low", "max_skew_ci_high", "ndkl", "target"],
        "bias_weat": ["test", "kind", "X", "Y", "A", "B", "d", "p", "p_holm", "p_bh", "n_permutations", "exact"],
    }
    for name, want in cols.items():
        df = pd.read_csv(run_dir / f"{name}.csv")
        assert set(want) <= set(df.columns), name
        assert (run_dir / f"{name}.parquet").is_file()
    den = pd.read_csv(run_dir / "bias_denigration.csv")
    assert set(den.attribute) == {"skin", "hair", "age"} and den.n.groupby(den.attribute).sum().eq(64).all()
    inter = pd.read_csv(run_dir / "bias_intersectional.csv")
    assert set(inter.attribute) <= {"skin x hair", "skin x age", "hair x age"}
    summary = json.loads((run_dir / "summary.json").read_text())["bias"]
    for key in ["dataset", "n_images", "attributes", "harmful_rate_ratio", "harmful_rate_ratio_ci",
                "harmful_rate_ratio_attribute", "max_harmful_rate", "max_label_set_shift", "weat_d", "weat_p",
                "max_skew", "flagged"]:
        assert key in summary, key
    assert summary["n_images"] == 64 and summary["label_set"]["name"] == "toy-people"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["config"]["k"] == 10


def test_html_report_is_self_contained(run_dir: Path, capsys):
    assert main(["bias", "report", str(run_dir), "--format", "html"]) == 0
    text = (run_dir / "bias_report.html").read_text()
    assert not re.search(r"<script[^>]+src=", text) and not re.search(r"<link[^>]+href=\"http", text)
    assert "Plotly.newPlot" in text and "bias_denigration" in text and "not a face" in text
    assert "Method notes" in text and json.loads((run_dir / "summary.json").read_text())["bias"]["dataset_hash"] in text


def test_markdown_pairs_model_card_ids_with_figures(run_dir: Path, tmp_path: Path):
    assert main(["bias", "report", str(run_dir), "--format", "md", "--to", str(tmp_path / "card.md")]) == 0
    md = (tmp_path / "card.md").read_text()
    assert md.startswith("## Bias, risks and limitations")
    for lid in ("L-bias", "L-denigration", "L-surveillance"):
        assert f"`{lid}`" in md
    assert re.search(r"Measured: harmful-label rate of .*95% CI", md)
    assert "surveillance" in md.lower() and "not a face" in md


def test_csv_and_json_exports(run_dir: Path, tmp_path: Path):
    assert main(["bias", "report", str(run_dir), "--format", "csv", "--to", str(tmp_path / "csv")]) == 0
    assert {p.name for p in (tmp_path / "csv").iterdir()} >= {"bias_denigration.csv", "bias_weat.csv", "summary.json"}
    assert main(["bias", "report", str(run_dir), "--format", "json"]) == 0
    data = json.loads((run_dir / "bias_report.json").read_text())
    assert len(data["tables"]["bias_denigration"]) == len(pd.read_csv(run_dir / "bias_denigration.csv"))
    assert "harmful_rate_ratio" in data["summary"]


def _err(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("argv,match", [
    (["bias", "--images", "/no/such/dir", *FAST], "does not exist"),
    (["bias", "--images", "toy:32", "--probe", "denigraton", *FAST], "unknown --probe denigraton; valid: denigration"),
    (["bias", "--images", "toy:32", "--attributes", "race", *FAST], "attribute 'race' is not a column"),
    (["bias", "--images", "toy:32", "--k", "0", *FAST[:-2]], "--k must be >= 1"),
    (["bias", "--images", "toy:32", "--bootstrap", "5", "--pretrained", "none"], "--bootstrap must be >= 100"),
    (["bias", "--images", "toy:32", "--labels", "/no/labels.json", *FAST], "labels file .* does not exist"),
    (["bias", "report"], "needs a run folder"),
    (["bias", "report", "/no/run"], "is not a clipaudit run folder"),
    (["bias", "runs/x"], "invalid choice|unexpected argument"),
])
def test_bad_inputs_are_one_line_errors(capsys, argv, match):
    if argv == ["bias", "runs/x"]:
        with pytest.raises(SystemExit) as exc:  # argparse rejects an unknown action itself
            main(argv)
        assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
        return
    assert re.search(match, _err(capsys, argv))


def test_labels_file_with_unmarked_harmful_class(tmp_path: Path, capsys):
    f = tmp_path / "labels.json"
    f.write_text(json.dumps({"classes": ["person", "thief"], "harmful": ["villain"]}))
    err = _err(capsys, ["bias", "--images", "toy:32", "--labels", str(f), *FAST])
    assert "harmful class 'villain' is not in 'classes'" in err


def test_report_on_a_run_without_bias(tmp_path: Path, capsys):
    from clipaudit.runs import RunFolder

    RunFolder.create("neurons", tmp_path / "other").finish()
    assert "has no bias results" in _err(capsys, ["bias", "report", str(tmp_path / "other"), "--format", "md"])


def test_unknown_report_format_rejected(run_dir: Path, capsys):
    with pytest.raises(SystemExit):
        main(["bias", "report", str(run_dir), "--format", "pdf"])
    assert "invalid choice" in capsys.readouterr().err


def test_fairface_run_lists_skips_and_uses_the_clip_label_set(tmp_path: Path, capsys):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = ["file,age,gender,race"]
    races = ["White", "Black", "Indian"]
    for i in range(18):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,20-29,{'Male' if i % 2 else 'Female'},{races[i % 3]}")
    rows += ["gone.png,20-29,Male,White", "0.png,20-29,Robot,White"]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert main(["bias", "--images", str(tmp_path), "--probe", "denigration,weat", *FAST, "--out", str(out)]) == 0
    skipped = pd.read_csv(out / "skipped.csv")
    assert set(skipped.id) == {"gone.png", "0.png"} and skipped.reason.str.contains("file not found|gender").all()
    summary = json.loads((out / "summary.json").read_text())["bias"]
    assert summary["layout"] == "fairface" and summary["n_images"] == 18 and summary["n_skipped"] == 2
    assert summary["label_set"]["name"] == "fairface-clip-study" and "max_skew" not in summary
    assert not (out / "bias_skew.csv").exists()
    assert set(pd.read_csv(out / "bias_intersectional.csv").attribute) <= {"race x gender", "race x age", "gender x age"}
    weat = pd.read_csv(out / "bias_weat.csv")
    assert "race Black vs White ~ pleasant vs unpleasant" in set(weat.test)
    assert main(["bias", "report", str(out), "--format", "md"]) == 0
    assert "Not measured in this run" in (out / "bias_report.md").read_text()


def test_fairface_missing_column_via_cli(tmp_path: Path, capsys):
    (tmp_path / "labels.csv").write_text("file,age,race\na.png,20-29,White\n")
    err = _err(capsys, ["bias", "--images", str(tmp_path / "labels.csv"), "--layout", "fairface", *FAST])
    assert "missing column(s) gender" in err


def test_markdown_model_card_escapes_dataset_values(tmp_path):
    """Group names are user data: in the Markdown export they stay literal text, never HTML or markup
    (checked by rendering with markdown-it, a CommonMark implementation)."""
    from markdown_it import MarkdownIt

    from clipaudit.bias.report import markdown as bias_markdown
    from tests.fixtures.synthetic_runs import SyntheticModel, bias_result
    from clipaudit.runs import RunFolder, open_run

    hostile = "<script>alert(1)</script> | *bold* _x_ [link](http://e.vil) `code` # h"
    plain = RunFolder.create("bias", tmp_path / "plain", model=SyntheticModel(), seed=0, argv=["bias"])
    bias_result().save(plain)
    plain.finish()
    res = bias_result()
    res.summary.update({"harmful_rate_ratio_group": hostile, "harmful_rate_ratio_attribute": "skin|tone",
                        "max_harmful_rate_group": hostile, "flagged": [f"skin={hostile}"],
                        "dataset": "csv:<img src=x onerror=alert(2)>", "max_label_set_shift_group": hostile,
                        "added_classes": ["<b>child</b>"]})
    run = RunFolder.create("bias", tmp_path / "b", model=SyntheticModel(), seed=0, argv=["bias"])
    res.save(run)
    run.finish()
    md = bias_markdown(open_run(tmp_path / "b"))
    assert "<script>" not in md and "<img" not in md and "<b>" not in md
    rendered = MarkdownIt("commonmark").enable("table").render(md)
    assert "<script" not in rendered and "<img" not in rendered and "<a " not in rendered
    benign = MarkdownIt("commonmark").enable("table").render(bias_markdown(open_run(tmp_path / "plain")))
    for tag in ("<em>", "<strong>", "<code>", "<a ", "<h1>", "<table"):  # no markup from the values
        assert rendered.count(tag) == benign.count(tag), tag
    # the value still reads as itself once rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt; | *bold* _x_ [link](http://e.vil) `code` # h" in rendered
