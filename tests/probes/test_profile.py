"""Examples across the activation range, histograms and text feature visualisation (issue 22)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from clipaudit.probes.profile import histograms, quantile_examples, text_features


def test_quantile_examples_by_hand():
    acts = np.array([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0], [3.0, 13.0], [4.0, 14.0]])
    t = quantile_examples(acts, list("abcde"), quantiles=(0.0, 0.5, 1.0))
    n0 = t[t["neuron"] == 0]
    assert n0["value"].tolist() == [0.0, 2.0, 4.0] and n0["id"].tolist() == ["a", "c", "e"]
    t = quantile_examples(acts, list("abcde"), quantiles=(0.3,))  # quantile 1.2: image b (1.0) is closest
    assert t.loc[t["neuron"] == 1, "id"].item() == "b" and t.loc[t["neuron"] == 1, "value"].item() == pytest.approx(11.2)


def test_histogram_by_hand():
    acts = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    h = histograms(acts, bins=2)
    assert h["count"].tolist() == [2, 3] and h["bin_low"].tolist() == [0.0, 2.0] and h["bin_high"].tolist() == [2.0, 4.0]


def test_text_features_find_the_planted_word(monkeypatch):
    import clipaudit.probes.multimodal as mm

    words = ["apple", "pizza", "ipod", "car"]

    def fake_responses(model, layer, pixels, tokens, batch_size):  # 2 renders per word, word-major
        acts = torch.zeros(len(pixels), 3)
        acts[4:6, 0] = 5.0   # neuron 0 answers "ipod"
        acts[2:4, 1] = 3.0   # neuron 1 answers "pizza"
        acts[0:2, 1] = 1.0   # ...and a little "apple"
        return acts          # neuron 2 answers nothing

    monkeypatch.setattr(mm, "responses", fake_responses)
    monkeypatch.setattr(mm, "_to_pixels", lambda model, imgs: torch.zeros(len(imgs), 3, 8, 8))

    class M:
        image_size = 16

    t = text_features(M(), None, words, n_renders=2, top=2)
    top1 = t[t["rank"] == 1].set_index("neuron")["word"]
    assert top1[0] == "ipod" and top1[1] == "pizza"
    assert t[(t["neuron"] == 1) & (t["rank"] == 2)]["word"].item() == "apple"
    assert t[t["neuron"] == 0]["activation"].tolist()[0] == pytest.approx(5.0)


def test_neurons_audit_writes_the_profile_and_the_unit_page_shows_it(tmp_path):
    from clipaudit.cli import main
    from clipaudit.dashboard.data import RunStore
    from clipaudit.dashboard.units import get_unit, unit_url

    out = tmp_path / "run"
    assert main(["neurons", "--model", "toy-rn", "--n-images", "64", "--top", "2", "--steps", "4", "--n-words", "4",
                 "--n-pictures", "4", "--attribution-images", "1", "--profile-n", "40", "--text-words", "30",
                 "--out", str(out)]) == 0
    q = pd.read_csv(out / "neuron_quantile_images.csv")
    h = pd.read_csv(out / "neuron_histogram.csv")
    tf = pd.read_csv(out / "neuron_text_features.csv")
    assert q["neuron"].nunique() == h["neuron"].nunique() == tf["neuron"].nunique() == 512
    assert (h.groupby("neuron")["count"].sum() == 40).all()
    # the top quantile's example is the sample's maximum, never above the scan's best over all images
    top = pd.read_csv(out / "neuron_top_images.csv").groupby("neuron")["activation"].max()
    q1 = q[q["quantile"] == q["quantile"].max()].set_index("neuron")["activation"]
    assert (q1 <= top.loc[q1.index] + 1e-4).all()
    unit = get_unit(RunStore(tmp_path), unit_url("neuron", "run", ("visual.layer4.0", "30")))
    assert "quantile samples" in unit.tables and "activation histogram" in unit.tables
    assert any(k.startswith("words that excite it") for k in unit.tables)


def test_embedding_search_finds_pizza_units_by_meaning(tmp_path, toy_rn):
    """Issue 22: a query's text embedding against each neuron's direction (its top images' mean
    embedding): searching "pizza" by embedding alone puts a neuron labelled pizza in the top 3;
    without a model the page says why embedding search is off."""
    from clipaudit.cli import main
    from clipaudit.dashboard.data import RunStore
    from clipaudit.dashboard.search import EMBEDDING_NOTE, embedding_available, embedding_hits, search_units

    out = tmp_path / "run"
    assert main(["neurons", "--model", "toy-rn", "--n-images", "256", "--top", "1", "--steps", "2", "--n-words", "2",
                 "--n-pictures", "2", "--no-attribution", "--profile-n", "0", "--text-words", "0",
                 "--out", str(out)]) == 0
    directions = pd.read_csv(out / "neuron_text_directions.csv")
    e = directions.drop(columns="neuron").to_numpy()
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    store = RunStore(tmp_path)
    assert not embedding_available(store)
    store.text_encoder = lambda texts: toy_rn.encode_texts(list(texts)).cpu().numpy()
    assert embedding_available(store)
    hits = embedding_hits(store, "pizza", limit=3)
    labels = pd.read_csv(out / "neurons.csv").set_index("neuron")["label"]
    top3 = [labels[int(a.split("/")[-1])] for a in hits["address"]]
    assert "pizza" in top3, top3
    # a query no label matches still returns the nearest units, marked as found by embedding
    found = search_units(store, "a pepperoni pie")
    assert not found.empty and set(found["how"]) == {"embedding"}
    assert "needs a model" in EMBEDDING_NOTE
