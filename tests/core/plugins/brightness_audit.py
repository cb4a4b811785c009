"""A fifth audit, written the way a contributor would add one: this module plus one registry line.

It measures zero-shot accuracy and mean image brightness per image; the tests register it at
run time and check that the CLI, ``clipaudit audit``, ``diff``, the dashboard and the model card
all pick it up without being edited.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from clipaudit.audits import Audit, Headline, PairedMetric, column
from clipaudit.contract import AuditContract, SummaryKey, TableSpec, _c
from clipaudit.result import Result

NAME = "brightness"

CONTRACT = AuditContract(
    NAME, doc="Toy plugin: brightness and zero-shot accuracy per image.",
    tables=(TableSpec("brightness_images", _c("id:str brightness:float correct:bool"), "one row per image",
                      key=("id",)),),
    summary=(SummaryKey("n_images", "int", "images", True), SummaryKey("accuracy", "float", "zero-shot accuracy", True),
             SummaryKey("mean_brightness", "float", "mean pixel value")),
)


@dataclass(frozen=True)
class BrightnessConfig:
    classes: tuple[str, ...] = ("apple", "pizza", "ipod")
    batch_size: int = 16


def run(model, source, config: BrightnessConfig, sink) -> Result:
    head = model.classifier(list(config.classes))
    rows = []
    for batch in sink.progress(source.batches(model, config.batch_size), desc="brightness"):
        pred = head(batch.pixels).argmax(-1).tolist()
        truth = batch.meta["label"].astype(str).tolist() if "label" in batch.meta else [""] * len(pred)
        for i, p, px, t in zip(batch.ids, pred, batch.pixels, truth):
            rows.append({"id": str(i), "brightness": float(px.mean()), "correct": config.classes[p] == t})
    df = pd.DataFrame(rows)
    sink.table("brightness_images", df)
    sink.summary(n_images=len(df), accuracy=float(df["correct"].mean()),
                 mean_brightness=float(df["brightness"].mean()))
    return sink.result


def plan(args) -> list[str]:
    return [NAME, "--n", "12" if args.quick else "64"]


AUDIT = Audit(
    name=NAME, config=BrightnessConfig, run=run, contract=CONTRACT, cli="tests.core.plugins.brightness_cli",
    plan=plan, description="toy plugin",
    headlines=(Headline("accuracy", "plugin zero-shot accuracy"),),
    limitations={"L-ood": ("accuracy",)},
    paired=(PairedMetric(NAME, "brightness_images", "accuracy", column("correct")),),
)
