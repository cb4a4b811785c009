"""The shipped concept list holds only words and phrases a person would write: no machine-made
plurals ("sunglasseses", "muds"), no regular plural of an irregular noun ("mouses"), no glued
compounds, no -ing form missing its doubled consonant. Labels are drawn from this list, so a
bad entry becomes a bad label."""
from __future__ import annotations

import re

import pytest

from clipaudit.probes.labels import read_concepts

# Nouns English does not pluralise in everyday writing (mass nouns, sports, substances), and
# animals whose plural is the singular.
UNCOUNTABLE = """bread butter milk cream yogurt bacon beef pork pasta spaghetti rice sushi oatmeal popcorn honey sugar
salt vinegar ketchup mustard mayonnaise garlic lettuce spinach broccoli cauliflower celery corn ginger
water vodka whiskey traffic police mud dirt sand blood money music smoke thunder fog earth
soccer tennis golf hockey rugby badminton karate judo archery boxing wrestling furniture
sheep deer moose salmon tuna trout cod goldfish jellyfish starfish bison shrimp""".split()

# Irregular plurals: the regular form (+s / +es) is not a word.
IRREGULAR = {"mouse": "mice", "goose": "geese", "wolf": "wolves", "calf": "calves", "ox": "oxen",
             "knife": "knives", "shelf": "shelves", "leaf": "leaves", "tooth": "teeth", "foot": "feet",
             "man": "men", "woman": "women", "gentleman": "gentlemen", "fisherman": "fishermen",
             "thief": "thieves", "child": "children", "cactus": "cacti", "hero": "heroes",
             "tomato": "tomatoes", "potato": "potatoes", "volcano": "volcanoes"}

# Forms seen in earlier versions of the list, kept so they cannot come back.
KNOWN_BAD = """sunglasseses glasseses chopstickses soccers muds pantses jeanses shortses leggingses scissorses
pajamases overallses headphoneses binocularses chipses stairses livingroom livingrooms sleepingbag sleepingbags
icecream icecreams tshirt tshirts peting mouses gooses wolfs oxes tooths foots mans womans thiefs""".split()

WORD = re.compile(r"^[a-z]+(?:[ '-][a-z]+)*$")
SHORT_CVC_VERB = re.compile(r"^[^aeiou]*[aeiou][^aeiouwxy]$")


@pytest.fixture(scope="module")
def concepts() -> list[str]:
    return read_concepts()


def _regular_plurals(word: str) -> set[str]:
    forms = {word + "s", word + "es"}
    if word.endswith("y"):
        forms.add(word[:-1] + "ies")
    if word.endswith("f"):
        forms.add(word[:-1] + "ves")
    return forms


def test_every_concept_is_lowercase_words(concepts):
    bad = [c for c in concepts if not WORD.match(c)]
    assert not bad, bad


def test_no_plural_stacked_on_a_plural(concepts):
    """'glasses' + 'es': a word already ending in a plural -s gets another plural ending."""
    vocab = set(concepts)
    stacked = [c for c in concepts if c.endswith("es") and c[:-2] in vocab and c[:-2].endswith("s")
               and not c[:-2].endswith(("ss", "us", "is", "as", "os"))]
    assert not stacked, stacked
    assert not [c for c in concepts if re.search(r"(?:s|x|ch|sh)eses$", c)]


def test_no_plural_of_an_uncountable_noun(concepts):
    vocab = set(concepts)
    bad = sorted(f for w in UNCOUNTABLE for f in _regular_plurals(w) if f in vocab)
    assert not bad, bad


def test_irregular_plurals_are_the_irregular_form(concepts):
    vocab = set(concepts)
    wrong = sorted(f for w, right in IRREGULAR.items() for f in _regular_plurals(w) - {right} if f in vocab)
    assert not wrong, wrong
    assert {"mice", "geese", "teeth", "feet", "knives", "leaves"} <= vocab


def test_ing_forms_double_the_final_consonant(concepts):
    """pet -> petting, not peting (short verbs ending consonant-vowel-consonant); 'hating' is
    hate's, not hat's, so a word whose silent-e form is listed is not counted."""
    vocab = set(concepts)
    bad = sorted(w + "ing" for w in vocab if SHORT_CVC_VERB.match(w) and w + "ing" in vocab and w + "e" not in vocab)
    assert not bad, bad


def test_known_bad_forms_are_gone(concepts):
    assert not set(KNOWN_BAD) & set(concepts)


def test_the_rules_catch_what_they_claim():
    """Each rule flags its own kind of mistake (so an empty result above means something)."""
    assert not WORD.match("sun  glasses") and not WORD.match("Apple") and WORD.match("t-shirt")
    assert SHORT_CVC_VERB.match("pet") and SHORT_CVC_VERB.match("swim") and not SHORT_CVC_VERB.match("eat")
    assert "muds" in _regular_plurals("mud") and "leafs" in _regular_plurals("leaf") - {"leaves"}
