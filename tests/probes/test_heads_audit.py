"""The heads audit end to end: registry, contract, CLI, bad input."""
from __future__ import annotations

import json

import pytest

from clipaudit.audits import AUDITS
from clipaudit.cli import main
from clipaudit.contract import check_folder, render_markdown
from clipaudit.data import toy_source
from clipaudit.probes.heads_audit import HeadsConfig
from clipaudit.runner import run_audit


@pytest.fixture(scope="module")
def tiny_run(tiny_vit, tmp_path_factory):
    out = tmp_path_factory.mktemp("heads") / "run"
    src = toy_source(24, seed=7, kind="object", text=False)
    cfg = HeadsConfig(defend="typographic", random_sets=3, batch_size=32)
    result, run = run_audit("heads", tiny_vit, src, cfg, out=out, seed=0)
    return result, run


def test_registered_with_its_contract_and_documented():
    audit = AUDITS["heads"]
    assert audit.plan is None and audit.cli == "clipaudit.probes.heads_cli"
    assert "## heads" in render_markdown([audit.contract])


def test_run_folder_meets_the_contract_with_the_issue_summary_keys(tiny_run):
    result, run = tiny_run
    assert check_folder(run.path, [AUDITS["heads"].contract]) == []
    s = result.summary
    for key in ("decomposition_max_rel_error", "attack_success_rate", "defended_attack_success_rate",
                "attacked_accuracy", "defended_attacked_accuracy", "clean_accuracy", "defended_clean_accuracy",
                "heads_ablated"):
        assert key in s, key
    assert s["decomposition_max_rel_error"] <= 1e-4
    assert s["n_layers"] == 4 and s["n_heads"] == 4
    assert len(result.tables["heads_ablation"]) == 16
    if s["heads_ablated"]:
        mask = json.loads((run.path / s["mask_file"]).read_text())
        assert [f"{l}.{h}" for l, h in mask["heads"]] == s["heads_ablated"]


def test_resnet_runs_without_a_defence(tiny_rn):
    src = toy_source(12, seed=3, kind="object", text=False)
    result, _ = run_audit("heads", tiny_rn, src, HeadsConfig(batch_size=16), write=False)
    assert result.summary["n_layers"] == 1 and result.summary["heads_ablated"] == []
    assert result.summary["decomposition_max_rel_error"] <= 1e-4


def test_sweep_layers_ablates_only_the_last_layers_heads_but_scores_every_head(tiny_vit, tmp_path):
    src = toy_source(12, seed=7, kind="object", text=False)
    result, _ = run_audit("heads", tiny_vit, src, HeadsConfig(random_sets=2, sweep_layers=2, maps=0, batch_size=16),
                          out=tmp_path / "r", seed=0)
    sweep, scores = result.tables["heads_ablation"], result.tables["heads_scores"]
    assert sorted(set(sweep["layer"])) == [2, 3] and len(sweep) == 2 * 4  # toy-vit: 4 layers x 4 heads
    assert len(scores) == 16 and result.summary["n_swept_heads"] == 8


@pytest.mark.parametrize("argv, message", [
    (["--budget", "1.5"], "--budget must be a clean-accuracy drop in [0, 1], got 1.5"),
    (["--budget", "-0.1"], "--budget must be a clean-accuracy drop in [0, 1]"),
    (["--n-images", "0"], "--n-images must be >= 1"),
    (["--sweep-layers", "-1"], "--sweep-layers must be >= 0 (0: all layers), got -1"),
    (["--sweep-layers", "9"], "--sweep-layers 9: toy-vit has 4 attention layer(s); pass 1..4, or 0 for all"),
])
def test_bad_flags_fail_in_one_line_before_any_model_work(argv, message, capsys, tmp_path):
    code = main(["heads", "--model", "toy-vit", "--out", str(tmp_path / "r"), *argv])
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err


def test_dashboard_heads_page_shows_the_grid_and_links_each_head(tiny_run):
    from clipaudit.dashboard.app import pages, render_page
    from clipaudit.dashboard.data import RunStore

    _, run = tiny_run
    assert "/heads" in [p.PATH for p in pages()]
    page = str(render_page(RunStore(run.path.parent), "/heads", run.path.name, None))
    assert "Could not show" not in page and "typographic score per head" in page
    for layer in range(4):
        for head in range(4):
            assert f"/unit/head/{run.path.name}/{layer}/{head}" in page


def test_spatial_maps_are_saved_for_the_top_reading_heads_and_shown_on_their_pages(tiny_run):
    from clipaudit.dashboard.data import RunStore
    from clipaudit.dashboard.units import get_unit, unit_url

    result, run = tiny_run
    maps = result.tables["heads_token_maps"]
    top = result.tables["heads_scores"].sort_values("typographic_score", ascending=False).head(4)
    chosen = {(int(r.layer), int(r.head)) for r in top.itertuples()}
    assert set(zip(maps["layer"], maps["head"])) == chosen
    assert maps.groupby(["layer", "head", "image"]).size().eq(64).all()  # an 8 x 8 patch grid per image
    store = RunStore(run.path.parent)
    l, h = sorted(chosen)[0]
    unit = get_unit(store, unit_url("head", run.path.name, (str(l), str(h))))
    rel = next(v for k, v in unit.images.items() if k.startswith("spatial map"))
    assert (run.path / rel).is_file()
    other = next((a, b) for a in range(4) for b in range(4) if (a, b) not in chosen)
    assert not any(k.startswith("spatial map") for k in
                   get_unit(store, unit_url("head", run.path.name, (str(other[0]), str(other[1])))).images)


def test_maps_zero_writes_an_empty_map_table_with_its_columns(tiny_vit, tmp_path):
    src = toy_source(8, seed=3, kind="object", text=False)
    result, run = run_audit("heads", tiny_vit, src, HeadsConfig(maps=0, random_sets=2, batch_size=8),
                            out=tmp_path / "run", seed=0)
    assert result.tables["heads_token_maps"].empty
    assert list(result.tables["heads_token_maps"].columns) == ["layer", "head", "image", "row", "col", "contribution"]
    assert check_folder(run.path, [AUDITS["heads"].contract]) == []
    assert not any(p.name.startswith("head_map_") for p in (run.path / "images").glob("*.png"))
