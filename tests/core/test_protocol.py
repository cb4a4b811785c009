"""The audit protocol: the registry, the result sink and the machine-checked run-folder contract."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clipaudit import AUDITS, contract
from clipaudit.audits import register, unregister
from clipaudit.contract import ContractError, check_folder, render_markdown
from clipaudit.modelcard import LIMITATIONS
from clipaudit.runs import RunFolder
from clipaudit.sink import ResultSink

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = ["neurons", "typographic", "adversarial", "bias"]


def test_registry_holds_the_four_audits_in_run_order():
    assert AUDITS.names()[:4] == BUILTIN
    for name in BUILTIN:
        audit = AUDITS[name]
        assert audit.name == name == audit.contract.section
        assert callable(audit.run) and callable(audit.plan)


def test_registry_entries_are_consistent_with_contract_and_model_card():
    ids = {lim.id for lim in LIMITATIONS}
    for audit in AUDITS.values():
        declared = {k.name for k in audit.contract.summary}
        for h in audit.headlines:
            assert h.key in declared, (audit.name, h.key)
            assert h.ci_key is None or h.ci_key in declared, (audit.name, h.ci_key)
        for lim, keys in audit.limitations.items():
            assert lim in ids, (audit.name, lim)
            assert set(keys) <= declared, (audit.name, keys)
        for metric in audit.paired:
            spec = audit.contract.table(metric.table)
            assert spec.key, f"{audit.name}: paired table {metric.table} declares no key"


def test_unknown_audit_name_suggests_the_close_one():
    with pytest.raises(Exception, match="typographic"):
        AUDITS["typografic"]


# -- the sink ----------------------------------------------------------------------------------

def _images_df(**over):
    df = pd.DataFrame({"id": ["a", "b"], "true_class": ["apple", "ipod"], "pred_clean": ["apple", "ipod"],
                       "pred_attacked": ["pizza", "ipod"], "p_true_clean": [0.9, 0.8], "p_true_attacked": [0.1, 0.7],
                       "p_target_clean": [0.05, 0.1], "p_target_attacked": [0.8, 0.2],
                       "success": [True, False], "flipped": [True, False], "excluded": [False, False]})
    for k, v in over.items():
        df[k] = v
    return df


def test_sink_writes_each_table_once_and_keeps_it_in_the_result(tmp_path):
    run = RunFolder.create("typographic", tmp_path / "r", seed=0)
    sink = ResultSink(contract.TYPOGRAPHIC, run)
    df = _images_df()
    sink.table("typographic_images", df)
    sink.summary(target="pizza", n_images=2, attack_success_rate=0.5)
    assert sink.result.tables["typographic_images"] is df
    back = pd.read_parquet(tmp_path / "r" / "typographic_images.parquet")
    pd.testing.assert_frame_equal(back, df)
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["typographic"]["attack_success_rate"] == 0.5
    assert not list((tmp_path / "r").glob(".*.tmp"))  # atomic writes leave no temporaries


def test_sink_refuses_a_table_missing_a_declared_column():
    sink = ResultSink(contract.TYPOGRAPHIC)
    with pytest.raises(ContractError, match="success"):
        sink.table("typographic_images", _images_df().drop(columns=["success"]))


def test_sink_refuses_a_column_of_the_wrong_type():
    sink = ResultSink(contract.TYPOGRAPHIC)
    with pytest.raises(ContractError, match="p_true_clean"):
        sink.table("typographic_images", _images_df(p_true_clean=["high", "low"]))


def test_sink_refuses_undeclared_tables_and_summary_keys():
    sink = ResultSink(contract.TYPOGRAPHIC)
    with pytest.raises(ContractError, match="declares no table"):
        sink.table("typographic_everything", _images_df())
    with pytest.raises(ContractError, match="not declared"):
        sink.summary(attack_succes_rate=0.4)
    with pytest.raises(ContractError, match="contract says float"):
        sink.summary(attack_success_rate="high")


def test_sink_writes_declared_binary_files_atomically_and_refuses_others(tmp_path):
    from clipaudit.probes.sae_audit import CONTRACT as SAE

    run = RunFolder.create("sae", tmp_path / "r", seed=0)
    sink = ResultSink(SAE, run)
    data = bytes(range(256)) * 3
    assert sink.file("sae/weights.safetensors", data) == "sae/weights.safetensors"
    assert (tmp_path / "r" / "sae" / "weights.safetensors").read_bytes() == data
    assert sink.result.files["sae/weights.safetensors"] == data
    assert not list((tmp_path / "r").rglob(".*.tmp"))
    with pytest.raises(ContractError, match="declares no file"):
        sink.file("sae/other.bin", b"x")
    for bad in ("../escape.bin", str(tmp_path / "abs.bin")):
        with pytest.raises(ValueError, match="inside the folder"):
            run.write_bytes(bad, b"x")
    assert not (tmp_path / "escape.bin").exists() and not (tmp_path / "abs.bin").exists()
    from clipaudit.result import Result

    again = RunFolder.create("sae", tmp_path / "r2", seed=0)
    Result("sae", files={"sae/w.bin": b"ab"}).save(again)
    assert (tmp_path / "r2" / "sae" / "w.bin").read_bytes() == b"ab"


def test_sink_accepts_the_shared_skipped_table_and_missing_figures():
    sink = ResultSink(contract.NEURONS)
    sink.table("skipped", pd.DataFrame({"id": ["x.png"], "reason": ["truncated"]}))
    sink.summary(label_accuracy=None, n_neurons=np.int64(4))
    assert sink.result.summary["n_neurons"] == 4


# -- the contract as documentation ------------------------------------------------------------------

def test_docs_run_folders_is_generated_from_the_contract():
    text = (ROOT / "docs" / "run-folders.md").read_text()
    assert text == render_markdown(), \
        "docs/run-folders.md is stale: python -m clipaudit.contract > docs/run-folders.md"


# -- every audit against the contract, end to end -------------------------------------------------

@pytest.fixture(scope="module", params=["toy-vit", "toy-rn"])
def quick_audit(request, tmp_path_factory):
    from clipaudit.cli import main

    out = tmp_path_factory.mktemp("audit") / request.param
    code = main(["audit", "--quick", "--model", request.param, "--pretrained", "none", "--seed", "3",
                 "--out", str(out)])
    assert code == 0
    return out


PLANNED = [name for name in AUDITS if AUDITS[name].plan is not None]


def test_every_registered_audit_writes_what_its_contract_declares(quick_audit):
    assert set(BUILTIN) <= set(PLANNED)
    assert check_folder(quick_audit, [AUDITS[n].contract for n in PLANNED]) == []


def test_manifest_keeps_every_audit_config_and_it_rebuilds_the_config(quick_audit):
    manifest = json.loads((quick_audit / "manifest.json").read_text())
    assert set(manifest["configs"]) >= set(PLANNED)
    for name in PLANNED:
        audit = AUDITS[name]
        rebuilt = audit.config_from_dict(manifest["configs"][name])
        assert audit.config_dict(rebuilt) == manifest["configs"][name]


def test_two_quick_audits_diff(quick_audit, tmp_path):
    from clipaudit.diff import diff_runs

    table = diff_runs(quick_audit, quick_audit)
    assert set(table["audit"]) >= {"typographic", "adversarial", "bias"}
    assert (table["difference"].fillna(0) == 0).all()


# -- a fifth audit plugs in through one registry line -----------------------------------------------

@pytest.fixture
def plugin():
    from tests.core.plugins import brightness_audit

    register(brightness_audit.AUDIT)
    yield brightness_audit.AUDIT
    unregister("brightness")


def test_a_fifth_audit_reaches_cli_diff_model_card_and_dashboard(plugin, tmp_path, capsys):
    from clipaudit.cli import build_parser, main
    from clipaudit.diff import diff_runs
    from clipaudit.modelcard import measured_figures
    from clipaudit.runs import open_run

    assert "brightness" in build_parser()._subparsers._group_actions[0].choices
    runs = []
    for seed in (0, 0):
        out = tmp_path / f"run{len(runs)}"
        assert main(["brightness", "--model", "toy-rn", "--pretrained", "none", "--n", "12", "--seed", str(seed),
                     "--out", str(out)]) == 0
        runs.append(out)
    assert check_folder(runs[0], [plugin.contract]) == []
    table = diff_runs(runs[0], runs[1])
    row = table[(table["audit"] == "brightness") & (table["metric"] == "accuracy")]
    assert len(row) == 1 and row["difference"].iloc[0] == 0
    summary = open_run(runs[0]).summary
    ood = [m for m in measured_figures(summary) if m.limitation.id == "L-ood"][0]
    assert ood.metric == "brightness.accuracy" and ood.value == summary["brightness"]["accuracy"]

    from clipaudit.dashboard.data import headline_rows

    rows = headline_rows(open_run(runs[0]))
    assert any(r["audit"] == "brightness" and r["measure"] == "plugin zero-shot accuracy" for r in rows)

    from clipaudit.dashboard.app import pages, render_page
    from clipaudit.dashboard.data import RunStore

    assert "/brightness" in [p.PATH for p in pages()]
    page = str(render_page(RunStore(tmp_path), "/brightness", "run0", None))
    assert "plugin zero-shot accuracy" in page and "brightness_images" in page and "Could not show" not in page


def test_a_fifth_audit_runs_inside_clipaudit_audit(plugin, tmp_path):
    from clipaudit.cli import main

    out = tmp_path / "all"
    others = [name for name in AUDITS if AUDITS[name].plan is not None and name != "brightness"]
    assert main(["audit", "--quick", "--model", "toy-rn", "--pretrained", "none", "--skip", ",".join(others),
                 "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["configs"]) == ["brightness"]
    assert check_folder(out, [plugin.contract]) == []


def test_run_audit_can_replace_a_run_from_python(tmp_path, tiny_rn):
    from clipaudit.data import toy_source
    from clipaudit.errors import ClipauditError
    from clipaudit.runner import run_audit
    from tests.core.plugins.brightness_audit import AUDIT as BRIGHTNESS, BrightnessConfig

    register(BRIGHTNESS)
    try:
        src = toy_source(6, seed=1, kind="object")
        run_audit("brightness", tiny_rn, src, BrightnessConfig(), out=tmp_path / "r")
        with pytest.raises(ClipauditError, match="--force"):
            run_audit("brightness", tiny_rn, src, BrightnessConfig(), out=tmp_path / "r")
        result, _ = run_audit("brightness", tiny_rn, src, BrightnessConfig(), out=tmp_path / "r", existing="force")
        assert result.summary["n_images"] == 6
    finally:
        unregister("brightness")


def test_headline_table_keeps_its_value_column_aligned():
    from clipaudit.audit_cli import format_summary

    summary = {"typographic": {"attack_success_rate": 0.9, "attack_success_ci": [0.8, 0.95]},
               "limitations": {"mean_effective_robustness": 0.004, "base_accuracy": 0.99}}
    header, *rows = format_summary(summary).splitlines()
    col = header.index("value")
    assert len(rows) >= 2
    for row in rows:  # every value starts in the header's value column, after two spaces
        assert row[col - 2:col] == "  " and row[col] in "0123456789-"
