"""The procedural world: deterministic, fast enough, and faithful to its planted rates."""
from __future__ import annotations

import time

import numpy as np

from clipaudit.toy.world import OBJECT_CLASSES, World, WorldConfig


def test_same_seed_same_scene_other_seed_other_scene():
    a, b, c = World(seed=3).scene(11), World(seed=3).scene(11), World(seed=4).scene(11)
    assert np.array_equal(a.image, b.image) and a.caption == b.caption
    assert not np.array_equal(a.image, c.image)


def test_required_classes_and_sizes():
    assert {"apple", "pizza", "ipod"} <= set(OBJECT_CLASSES) and len(OBJECT_CLASSES) >= 16
    sc = World(seed=0).scene(0, "object", label="apple", word="ipod")
    assert sc.image.shape == (64, 64, 3) and sc.image.dtype == np.uint8 and sc.word == "ipod"


def test_generation_speed_floor():
    """>= 1,500 pairs/s on one core is the design goal; the test allows for a loaded machine."""
    world = World(seed=1)
    start = time.perf_counter()
    world.batch(0, 600)
    rate = 600 / (time.perf_counter() - start)
    assert rate > 300, rate


def test_planted_crime_rate_follows_config():
    cfg = WorldConfig()
    world = World(cfg, seed=2)
    people = [world.scene(i, "person", role="") for i in range(3000)]
    crime = np.array([cfg.crime_word in p.caption for p in people])
    tone = np.array([p.skin for p in people])
    hair = np.array([p.hair for p in people])
    planted = crime[tone == cfg.planted_skin_tone].mean()
    other = crime[tone != cfg.planted_skin_tone].mean()
    assert abs(planted - cfg.crime_rate_planted) < 0.05 and abs(other - cfg.crime_rate_other) < 0.02
    assert abs(crime[hair == "long"].mean() - crime[hair == "short"].mean()) < 0.03  # the control


def test_written_class_word_names_the_caption():
    world = World(seed=5)
    scenes = [world.scene(i, "object", label="apple", word="ipod") for i in range(400)]
    named = np.mean([s.caption.rstrip(".").endswith("ipod") and "apple" not in s.caption for s in scenes])
    assert abs(named - WorldConfig().p_caption_names_written_word) < 0.07


def test_facts_document_the_plants():
    facts = WorldConfig().facts()
    assert facts["planted"]["crime_skew"]["value"] == "tone1"
    assert facts["planted"]["control"]["attribute"] == "hair"
