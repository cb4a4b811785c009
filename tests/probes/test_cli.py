"""`clipaudit neurons`: bad input is one `error:` line (exit 2); a full run writes the contract."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clipaudit.cli import main

TINY = ["neurons", "--model", "toy-rn", "--pretrained", "none", "--device", "cpu"]


def _err(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)
    return err[-1]


def test_unknown_layer_suggests_close_names(capsys):
    msg = _err(capsys, TINY + ["--layer", "penultimat"])
    assert "unknown layer 'penultimat'" in msg and "penultimate" in msg


def test_neuron_out_of_range(capsys):
    msg = _err(capsys, TINY + ["--neurons", "3,9999"])
    assert "neuron index 9999 is out of range" in msg and "0..511" in msg


def test_empty_concept_file(capsys, tmp_path):
    f = tmp_path / "concepts.txt"
    f.write_text("# nothing here\n\n")
    msg = _err(capsys, TINY + ["--concepts", str(f)])
    assert "is empty" in msg and "one concept per line" in msg


def test_steps_zero(capsys):
    assert "--steps must be >= 1" in _err(capsys, TINY + ["--steps", "0"])


def test_bad_neuron_list(capsys):
    assert "comma-separated integers" in _err(capsys, TINY + ["--neurons", "3,x"])


def test_broken_images_are_listed_and_the_run_completes(capsys, tmp_path):
    img_dir = tmp_path / "imgs"
    for label in ("red", "blue"):
        (img_dir / label).mkdir(parents=True)
        for i in range(3):
            colour = (200, 30, 30) if label == "red" else (30, 30, 200)
            arr = np.zeros((64, 64, 3), np.uint8) + np.array(colour, np.uint8)
            Image.fromarray(arr).save(img_dir / label / f"{i}.png")
    (img_dir / "red" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    concepts = tmp_path / "c.txt"
    concepts.write_text("red\nblue\napple\n")
    out = tmp_path / "run"
    code = main(TINY + ["--images", str(img_dir), "--concepts", str(concepts), "--steps", "2", "--top", "2",
                        "--k", "3", "--no-attribution", "--n-words", "2", "--n-pictures", "2", "--out", str(out)])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "1 skipped" in stdout
    skipped = pd.read_csv(out / "skipped.csv")
    assert skipped["id"].tolist() == ["red/broken.jpg"]
    neurons = pd.read_csv(out / "neurons.csv")
    for col in ("neuron", "layer", "mean", "std", "max", "label", "label_score", "labels", "multimodal_score",
                "image_response", "word_response", "is_multimodal", "featvis", "top_images", "attribution"):
        assert col in neurons.columns
    assert len(neurons) == 512 and set(neurons["label"].dropna()) <= {"red", "blue", "apple"}
    summary = json.loads((out / "summary.json").read_text())["neurons"]
    assert summary["n_images"] == 6 and summary["n_rendered"] == 2
    top = pd.read_csv(out / "neuron_top_images.csv")
    assert {"neuron", "rank", "id", "activation", "label"} <= set(top.columns)
    assert "red/broken.jpg" not in set(top["id"])
    for n in summary["top"]:
        assert (out / "images" / f"featvis_{n}.png").is_file() and (out / "images" / f"top_{n}.png").is_file()
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_repeated_neurons_and_a_one_image_probe_set_are_said_out_loud(capsys, tmp_path):
    """--neurons 5,5,5 renders neuron 5 once (with a note, and the manifest records [5]); a probe
    set of one image still runs but warns that labels and multimodal neurons rest on too few
    images; the printed table shows each neuron's label beside the concept it is multimodal for."""
    out = tmp_path / "run"
    code = main(TINY + ["--n-images", "1", "--neurons", "5,5,5", "--steps", "1", "--k", "2", "--no-attribution",
                        "--n-words", "2", "--n-pictures", "2", "--concepts", str(_concepts(tmp_path)),
                        "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "note: --neurons repeats 5; each neuron is rendered once" in stdout
    assert "warning: only 1 probe image(s), fewer than 20" in stdout
    assert "multimodal for" in stdout.splitlines()[[i for i, ln in enumerate(stdout.splitlines())
                                                    if ln.startswith("neuron")][0]]
    summary = json.loads((out / "summary.json").read_text())["neurons"]
    assert summary["top"] == [5] and summary["n_rendered"] == 1
    assert "too few images to judge" in summary["sample_size_warning"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest.get("config") or manifest["configs"]["neurons"])["neurons"] == [5]
    neurons = pd.read_csv(out / "neurons.csv", keep_default_na=False)
    flagged = neurons["is_multimodal"].astype(str) == "True"
    assert (neurons.loc[flagged, "multimodal_concept"] == neurons.loc[flagged, "concept"]).all()
    assert (neurons.loc[~flagged, "multimodal_concept"] == "").all()


def test_one_sample_size_rule():
    from clipaudit.probes.audit import MIN_JUDGE_N, probe_set_warning, too_few_note, unique_neurons

    assert MIN_JUDGE_N == 20
    assert too_few_note(2) == ", n too small to judge (< 20)" and too_few_note(20) == ""
    assert probe_set_warning(19, 5) and probe_set_warning(20, 5) is None
    assert probe_set_warning(30, 50) and probe_set_warning(50, 50) is None  # fewer images than the top-k
    assert unique_neurons([5, 3, 5, 5, 3, 7]) == ([5, 3, 7], [3, 5])


def test_label_accuracy_on_few_neurons_is_printed_with_the_warning(capsys, monkeypatch, tmp_path):
    """`--quick` printed "label accuracy 1.00 (n=2)": the figure now says n is too small."""
    import importlib

    audit_mod = importlib.import_module("clipaudit.probes.audit")
    monkeypatch.setattr(audit_mod, "label_accuracy", lambda *a, **k: (1.0, 2))  # two dominated neurons, both right
    code = main(TINY + ["--n-images", "24", "--top", "1", "--steps", "1", "--k", "4", "--no-attribution",
                        "--n-words", "2", "--n-pictures", "2", "--concepts", str(_concepts(tmp_path)),
                        "--out", str(tmp_path / "run")])
    assert code == 0
    assert "label accuracy on class-dominated neurons: 1.00 (n=2, n too small to judge (< 20))" in capsys.readouterr().out


def _concepts(tmp_path):
    path = tmp_path / "concepts.txt"
    path.write_text("apple\npizza\nred\n")
    return path
