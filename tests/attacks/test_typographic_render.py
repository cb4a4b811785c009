"""Rendering properties: pixels stay in [0,1], only the text layer changes pixels, seeds repeat,
and the parameters (size, opacity, repeat, glyphs, fit) do what they say."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clipaudit.attacks.typographic import TextStyle, missing_glyphs, render, validate
from clipaudit.errors import ClipauditError

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def _pixels(b: int = 4, s: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, s, s, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("style", [TextStyle(), TextStyle(style="paint"), TextStyle(style="paint", color="red"),
                                   TextStyle(position="random", rotation=15, repeat=3, opacity=0.7)])
def test_pixels_in_range_and_untouched_outside_text(style):
    x = _pixels()
    x[0] = 0.0
    x[1] = 1.0  # extremes: compositing must not leave [0, 1]
    out = render(x, "ipod", style, seed=3, keys=[10, 11, 12, 13])
    assert out.pixels.shape == x.shape
    assert float(out.pixels.min()) >= 0.0 and float(out.pixels.max()) <= 1.0
    changed = (out.pixels != x).any(1)  # (B,S,S)
    for b, fact in enumerate(out.facts):
        area = float(changed[b].float().mean()) * 100
        assert 0 < area <= fact["text_area"] + 1e-6  # only pixels under the text layer changed
        assert fact["text_area"] < 80


def test_unattacked_area_is_bit_identical():
    x = _pixels(2)
    out = render(x, "pizza", TextStyle(position="top-left", size=10), seed=0)
    f = out.facts[0]
    # the text box starts near the top-left corner; the bottom half is never touched
    assert f["y"] < 8
    assert torch.equal(out.pixels[:, :, 40:, :], x[:, :, 40:, :])


def test_same_seed_same_image_and_seed_matters_for_random_placement():
    x = _pixels(3)
    style = TextStyle(position="random", rotation=10)
    a = render(x, "apple", style, seed=7, keys=[0, 1, 2]).pixels
    b = render(x, "apple", style, seed=7, keys=[0, 1, 2]).pixels
    c = render(x, "apple", style, seed=8, keys=[0, 1, 2]).pixels
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the same image key gives the same rendering whatever batch it is in
    single = render(x[1:2], "apple", style, seed=7, keys=[1]).pixels
    assert torch.equal(single[0], a[1])


def test_opacity_zero_is_identity_and_opacity_scales_change():
    x = _pixels(2)
    assert torch.equal(render(x, "cup", TextStyle(opacity=0.0)).pixels, x)
    d_half = (render(x, "cup", TextStyle(opacity=0.5)).pixels - x).abs().sum()
    d_full = (render(x, "cup", TextStyle(opacity=1.0)).pixels - x).abs().sum()
    assert 0 < d_half < d_full


def test_area_grows_with_size_and_repeat():
    x = _pixels(1)
    areas = [render(x, "star", TextStyle(size=s)).facts[0]["text_area"] for s in (6, 9, 12, 15)]
    assert areas == sorted(areas) and areas[0] < areas[-1]
    one = render(x, "star", TextStyle(size=8)).facts[0]["text_area"]
    four = render(x, "star", TextStyle(size=8, repeat=4)).facts[0]["text_area"]
    assert four > 2.5 * one


def test_size_is_shrunk_to_fit_and_reported():
    x = _pixels(1)
    out = render(x, "umbrella", TextStyle(size=40))
    assert out.facts[0]["final_size"] < 40
    assert validate("umbrella", TextStyle(size=40), 64) == out.facts[0]["final_size"]
    # default size scales with the model's resolution
    assert validate("cup", TextStyle(), 64) == 12 and validate("cup", TextStyle(), 224) == 42


def test_too_long_word_is_a_clear_error():
    with pytest.raises(ClipauditError, match="does not fit .* minimum size"):
        validate("a" * 60, TextStyle(), 64)


def test_missing_glyphs_are_detected_not_drawn_as_boxes():
    assert missing_glyphs("pizza") == []
    assert missing_glyphs("пицца") == ["п", "и", "ц", "а"]
    with pytest.raises(ClipauditError, match="no glyphs for .*--font PATH"):
        validate("пицца", TextStyle(), 64)


@pytest.mark.skipif(not DEJAVU.is_file(), reason="DejaVu Sans not installed")
def test_a_font_with_the_script_draws_it():
    assert missing_glyphs("пицца", str(DEJAVU)) == []
    assert missing_glyphs("披萨", str(DEJAVU)) == ["披", "萨"]
    out = render(_pixels(1), "пицца", TextStyle(font=str(DEJAVU)))
    assert out.facts[0]["text_area"] > 0


@pytest.mark.parametrize("style, message", [
    (TextStyle(font="/no/such/font.ttf"), "font file .* does not exist"),
    (TextStyle(style="neon"), "unknown style"),
    (TextStyle(position="middle"), "unknown position"),
    (TextStyle(opacity=1.5), "opacity must be in"),
    (TextStyle(color="not-a-colour"), "unknown colour"),
    (TextStyle(repeat=0), "repeat must be"),
])
def test_bad_parameters_are_clear_errors(style, message):
    with pytest.raises(ClipauditError, match=message):
        validate("pizza", style, 64)


def test_empty_word_is_an_error():
    with pytest.raises(ClipauditError, match="empty"):
        render(_pixels(1), "   ")
