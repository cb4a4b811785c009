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
    skipped = pd.read_csv(out / "skipped_images.csv")
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
