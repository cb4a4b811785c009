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


def test_forced_hair_makes_counterfactual_twins():
    """scene(i, hair=...) changes the hair and nothing else: the validation's hair control
    compares such twins. Forcing an attribute to the value the scene would have drawn anyway
    gives the very scene of the unforced stream (training data is unchanged by forcing)."""
    for cfg in (WorldConfig(), WorldConfig(vary_hair_colour=True)):
        world = World(cfg, seed=7)
        for i in range(20):
            free = world.scene(i, "person")
            same = world.scene(i, "person", hair=free.hair, skin=free.skin, age=free.age, role=free.role)
            assert np.array_equal(free.image, same.image) and free.caption == same.caption
            short, long_ = world.scene(i, "person", hair="short"), world.scene(i, "person", hair="long")
            assert (short.skin, short.age, short.role) == (long_.skin, long_.age, long_.role)
            changed = np.any(short.image != long_.image, axis=-1)
            assert 0 < changed.mean() < 0.2  # the hair block only, never the whole scene


def test_varied_hair_colours_are_drawn_independently_of_the_planted_attributes():
    """With varied hair colours every colour turns up for every skin tone (the colour is drawn
    apart from the planted attributes), and the default world keeps its one adult colour."""
    from clipaudit.toy.world import HAIR_COLOURS

    def hair_colour(world, i, **force):
        sc = world.scene(i, "person", role="", age="adult", **force)
        twin = world.scene(i, "person", role="", age="adult", hair="short" if force.get("hair") == "long" else "long",
                           **{k: v for k, v in force.items() if k != "hair"})
        diff = np.any(sc.image != twin.image, axis=-1)  # the long-hair block, where the twins differ
        long_img = sc.image if force.get("hair") == "long" else twin.image
        values, counts = np.unique(long_img[diff], axis=0, return_counts=True)
        return tuple(int(c) for c in values[counts.argmax()])

    varied = World(WorldConfig(vary_hair_colour=True), seed=1)
    seen = {tone: {hair_colour(varied, i, skin=tone, hair="long") for i in range(60)} for tone in (0, 1, 3)}
    for tone, colours in seen.items():
        assert colours == set(HAIR_COLOURS), (tone, colours)
    fixed = World(WorldConfig(), seed=1)
    assert {hair_colour(fixed, i, hair="long") for i in range(30)} == {(90, 60, 30)}
