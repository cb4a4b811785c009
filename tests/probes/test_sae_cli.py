"""`clipaudit sae` end to end on a tiny random-init model: run folder, contract, --load, bad input."""
from __future__ import annotations

import json

import pytest

from clipaudit.cli import main

TINY = ["--model", "toy-vit", "--pretrained", "none", "--latents", "32", "--k", "4", "--steps", "3",
        "--batch-size", "32", "--images", "toy", "--n-images", "120", "--min-positives", "4", "--no-labels"]


@pytest.fixture(scope="module")
def sae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sae") / "run"
    assert main(["sae", *TINY, "--out", str(out)]) == 0
    return out


def test_run_folder_holds_weights_config_tables_and_conforms_to_the_contract(sae_run):
    from clipaudit.contract import check_folder
    from clipaudit.probes.sae_audit import CONTRACT

    assert (sae_run / "sae" / "weights.safetensors").is_file()
    meta = json.loads((sae_run / "sae" / "config.json").read_text())
    assert meta["model"] == "toy-vit" and meta["sae"]["latents"] == 32
    assert check_folder(sae_run, [CONTRACT]) == []
    s = json.loads((sae_run / "summary.json").read_text())["sae"]
    for key in ("fvu", "l0", "dead_fraction", "spliced_accuracy", "clean_accuracy", "planted_factor_recall",
                "neuron_factor_recall", "linear_probe_factor_recall"):
        assert key in s, key
    assert s["l0"] <= 4
    import pandas as pd
    latents = pd.read_csv(sae_run / "sae_latents.csv", keep_default_na=False)
    assert list(latents["latent"]) == list(range(32))
    fired = latents["fire_rate"] > 0
    assert (latents.loc[fired, "q10"] <= latents.loc[fired, "q90"]).all()


def test_load_reuses_the_weights_and_gives_the_same_measurements(sae_run, tmp_path):
    out = tmp_path / "again"
    assert main(["sae", *TINY, "--load", str(sae_run), "--out", str(out)]) == 0
    first = json.loads((sae_run / "summary.json").read_text())["sae"]
    again = json.loads((out / "summary.json").read_text())["sae"]
    assert again["loaded_from"] == str(sae_run)
    assert again["fvu"] == pytest.approx(first["fvu"], rel=1e-6)
    import hashlib

    assert again["loaded_weights_sha256"] == hashlib.sha256((sae_run / "sae" / "weights.safetensors").read_bytes()
                                                            ).hexdigest()
    # same toy seed: the training scenes again, and both runs say so
    assert first["measured_on_training_images"] is True and again["measured_on_training_images"] is True
    # the manifest describes the SAE used, not the command line's training defaults
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["configs"]["sae"]["sae"]["latents"] == 32 and manifest["configs"]["sae"]["sae"]["k"] == 4
    assert manifest["inputs"]["sae"] == {"images": "toy", "n_images": 120, "seed": 1234}
    trained_on = json.loads((sae_run / "sae" / "config.json").read_text())["trained_on"]
    assert trained_on == {"images": "toy", "n_images": 120, "seed": 1234}


def test_load_on_other_scenes_is_held_out_and_too_few_images_are_refused(sae_run, tmp_path, capsys):
    out = tmp_path / "held-out"
    assert main(["sae", *TINY, "--seed", "1", "--load", str(sae_run), "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["sae"]["measured_on_training_images"] is False
    capsys.readouterr()
    few = tmp_path / "few"
    code = main(["sae", *TINY[:-5], "--n-images", "5", "--min-positives", "4", "--no-labels", "--load", str(sae_run),
                 "--out", str(few)])
    err = capsys.readouterr().err
    assert code != 0 and "5 images are too few to measure an SAE" in err and not few.exists()


def test_load_refuses_another_layer_naming_both(sae_run, tmp_path, capsys):
    code = main(["sae", *TINY, "--layer", "block:0", "--load", str(sae_run), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code != 0 and "reads layer 'visual.transformer.resblocks" in err and "not 'visual.transformer.resblocks.0'" in err


def test_load_refuses_another_model_naming_both(sae_run, tmp_path, capsys):
    args = [a if a != "toy-vit" else "toy-rn" for a in TINY]
    code = main(["sae", *args, "--load", str(sae_run), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code != 0 and "trained on model 'toy-vit'" in err and "not on 'toy-rn'" in err


@pytest.mark.parametrize("extra, needle", [(["--k", "32"], "--k must be between 1 and latents - 1 = 31"),
                                           (["--latents", "0"], "--latents must be >= 1, got 0"),
                                           (["--n-images", "5"], "5 images are too few to train an SAE"),
                                           (["--tokens", "cls", "--model", "toy-rn"], "--tokens cls needs a token layer")])
def test_bad_input_is_one_line_and_non_zero(extra, needle, tmp_path, capsys):
    code = main(["sae", *TINY, *extra, "--out", str(tmp_path / "x")])
    err = [l for l in capsys.readouterr().err.strip().splitlines() if not l.startswith("WARNING: ")]
    assert code != 0 and len(err) == 1 and needle in err[0] and err[0].startswith("error: ")


def test_sae_is_registered_but_not_run_by_clipaudit_audit():
    from clipaudit.audits import AUDITS

    assert AUDITS["sae"].plan is None and AUDITS.cli_module("sae") == "clipaudit.probes.sae_cli"


def test_sae_edit_spec_runs_any_forward_under_the_edit(sae_run, tiny_vit, tiny_rn):
    import torch

    from clipaudit.data import toy_source
    from clipaudit.errors import ClipauditError
    from clipaudit.hooks import resolve_layer, run_with_cache
    from clipaudit.probes.sae import load_sae_run, rows_of
    from clipaudit.probes.sae_edit import sae_edit_from_spec

    pixels = next(toy_source(8, seed=11).batches(tiny_vit, 8)).pixels
    sae, meta = load_sae_run(sae_run)
    layer = resolve_layer(tiny_vit, meta["layer"])
    clean, cache = run_with_cache(tiny_vit, pixels, layer)
    active = (sae.encode(rows_of(cache[layer.path], layer, meta["sae"]["tokens"])) > 0).sum(0).argmax().item()
    with sae_edit_from_spec(tiny_vit, None):
        same, _ = run_with_cache(tiny_vit, pixels, layer)
    with sae_edit_from_spec(tiny_vit, f"{sae_run}:latents={active}"):
        edited, _ = run_with_cache(tiny_vit, pixels, layer)
    after, _ = run_with_cache(tiny_vit, pixels, layer)
    assert torch.equal(same, clean) and torch.equal(after, clean)  # hooks gone after the block
    assert not torch.allclose(edited, clean)
    with pytest.raises(ClipauditError, match="trained on model 'toy-vit'"):
        with sae_edit_from_spec(tiny_rn, f"{sae_run}:latents=0"):
            pass


@pytest.mark.parametrize("edit, needle", [(":latents=999", "outside the SAE's 32 latents"),
                                          (":latents=3,32", "latent(s) 32 outside the SAE's 32 latents (0..31)"),
                                          (":latents=1:scale=0:clamp=2", "scale or clamp, not both")])
def test_a_refused_sae_edit_leaves_no_run_folder(sae_run, tmp_path, capsys, edit, needle):
    out = tmp_path / "typo"
    code = main(["typographic", "--target", "pizza", "--model", "toy-vit", "--pretrained", "none", "--n-images", "8",
                 "--sae-edit", f"{sae_run}{edit}", "--out", str(out)])
    err = capsys.readouterr().err
    assert code != 0 and needle in err and "Traceback" not in err
    assert not out.exists()


def test_an_edited_run_records_the_saes_weights_hash_and_says_it_is_edited(sae_run, tmp_path, capsys):
    import hashlib

    out = tmp_path / "typo"
    assert main(["typographic", "--target", "pizza", "--model", "toy-vit", "--pretrained", "none", "--n-images", "8",
                 "--sae-edit", f"{sae_run}:latents=1", "--out", str(out)]) == 0
    sha = hashlib.sha256((sae_run / "sae" / "weights.safetensors").read_bytes()).hexdigest()
    manifest = json.loads((out / "manifest.json").read_text())
    assert sha[:16] in manifest["interventions"][0]["spec"]
    assert "edited model" in capsys.readouterr().err


def test_a_refused_load_leaves_no_run_folder(sae_run, tmp_path, capsys):
    out = tmp_path / "again"
    code = main(["sae", *TINY, "--layer", "block:1", "--load", str(sae_run), "--out", str(out)])
    assert code != 0 and "not" in capsys.readouterr().err
    assert not out.exists()


def test_tokens_all_on_a_vit_layer_writes_patch_maps_profiles_and_pngs(tmp_path):
    import pandas as pd

    from clipaudit.contract import check_folder
    from clipaudit.probes.sae_audit import CONTRACT

    out = tmp_path / "all"
    assert main(["sae", *TINY, "--tokens", "all", "--maps", "3", "--patch-top", "2", "--out", str(out)]) == 0
    assert check_folder(out, [CONTRACT]) == []
    patches = pd.read_csv(out / "sae_latent_patches.csv")
    assert len(patches) and patches["rank"].max() <= 1 and (patches["activation"] > 0).all()
    pngs = sorted(out.glob("images/sae_patches_*.png"))
    assert len(pngs) == 3
    assert {int(p.stem.rsplit("_", 1)[1]) for p in pngs} <= set(patches["latent"])
    from PIL import Image

    w, h = Image.open(pngs[0]).size
    assert h == 2 * 64 + 16 and w % (2 * 64) == 0  # the strip of 64 px images upscaled twice, under its title line
    latents = pd.read_csv(out / "sae_latents.csv", keep_default_na=False)
    hist = pd.read_csv(out / "sae_latent_histogram.csv")
    n = json.loads((out / "summary.json").read_text())["sae"]["n_images"]
    fired = hist.groupby("latent")["count"].sum()  # every firing image lands in one bin
    expected = (latents.set_index("latent")["fire_rate"] * n).round().astype(int)
    assert (fired == expected.loc[fired.index]).all()
    quant = pd.read_csv(out / "sae_latent_quantiles.csv")
    assert set(quant["latent"]) == set(fired.index)


def test_tokens_mean_writes_no_patch_maps(sae_run):
    assert not (sae_run / "sae_latent_patches.csv").exists()
    assert not list(sae_run.glob("images/sae_patches_*.png"))
