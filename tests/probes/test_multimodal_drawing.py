"""The drawing facet of multimodality (issue 19 item 7): photo, drawing and written word."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clipaudit.probes.multimodal import MultimodalConfig, multimodality_table


def _facets():
    """4 neurons x 5 concepts. Neuron 0 answers concept 1 in all three facets; neuron 1 answers it
    in photos and words but not drawings; neuron 2 only in drawings; neuron 3 nowhere."""
    base = torch.ones(4, 5) + 0.05 * torch.arange(5).float()  # flat, slightly uneven background
    img, word, draw = base.clone(), base.clone(), base.clone()
    img[0, 1] = word[0, 1] = draw[0, 1] = 5.0
    img[1, 1] = word[1, 1] = 5.0
    draw[2, 1] = 5.0
    return img, word, draw


def test_three_facets_flag_only_the_neuron_that_answers_in_all():
    img, word, draw = _facets()
    t = multimodality_table(img, word, list("abcde"), labels=["b", "b", "b", "b"], config=MultimodalConfig(),
                            drawing_resp=draw)
    assert t["is_multimodal"].tolist() == [True, True, False, False]
    assert t["is_multimodal_drawing"].tolist() == [True, False, False, False]
    assert t.loc[0, "drawing_response"] == pytest.approx(5.0)
    # drawing z by hand for neuron 0: the other four columns of its row
    others = np.array([1.0, 1.10, 1.15, 1.20])
    assert t.loc[0, "drawing_z"] == pytest.approx((5.0 - others.mean()) / others.std(ddof=1), rel=1e-5)


def test_without_drawings_the_table_has_no_drawing_columns():
    img, word, _ = _facets()
    t = multimodality_table(img, word, list("abcde"))
    assert not any(c.startswith("drawing") or c == "is_multimodal_drawing" for c in t.columns)


def test_toy_drawings_are_outlines_of_the_class_and_differ_from_photos():
    from clipaudit.toy.styles import object_drawings
    from clipaudit.toy.world import object_pictures

    d = object_drawings("apple", 3, seed=0)
    p = object_pictures("apple", 3, seed=0)
    assert len(d) == 3 and d[0].shape == p[0].shape == (64, 64, 3)
    assert not np.array_equal(d[0], p[0])
    assert np.array_equal(d[1], object_drawings("apple", 3, seed=0)[1])  # same seed, same drawing
    with pytest.raises(ValueError, match="cannot draw"):
        object_drawings("unicorn", 1, seed=0)
