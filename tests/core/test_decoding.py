"""An image reaches the model as a viewer shows it, through the CLI's loader and the API alike.

Each expected pixel is built by hand from what the file means (alpha over a white page, EXIF
rotation, 16-bit full scale ...), not from the decoder's own output.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clipaudit.data import folder_source, load_image, to_rgb


def _saved(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def _both(path) -> list[np.ndarray]:
    """What the CLI loader and a PIL image opened by hand decode to (H, W, 3) uint8."""
    with Image.open(path) as opened:
        api = np.asarray(to_rgb(opened))
    return [np.asarray(load_image(path)), api]


def test_rgba_reaches_the_model_identically_through_cli_and_api(tmp_path, tiny_vit):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, size=(48, 48, 4), dtype=np.uint8)
    rgba[:, :24, 3] = 0                       # left half fully transparent
    rgba[:, 24:, 3] = 255
    rgba[:4, 24:28] = (255, 0, 0, 128)         # half-transparent red
    (tmp_path / "imgs").mkdir()
    path = _saved(Image.fromarray(rgba, "RGBA"), tmp_path / "imgs" / "a.png")
    cli = next(folder_source(tmp_path / "imgs").batches(tiny_vit, 1)).pixels
    with Image.open(path) as opened:
        api = tiny_vit.to_pixels(opened)
    assert torch.equal(cli, api)
    assert torch.equal(tiny_vit.encode_images(cli), tiny_vit.encode_images(api))
    decoded = np.asarray(load_image(path))
    assert (decoded[:, :24] == 255).all()                               # transparent -> white page
    assert tuple(decoded[0, 24]) == (255, 127, 127)                     # 0.5 red over white: 255*127/255
    assert (decoded[8:, 30] == rgba[8:, 30, :3]).all()                  # opaque pixels untouched


def test_flat_mid_grey_16_bit_stays_mid_grey(tmp_path, tiny_vit):
    path = _saved(Image.fromarray(np.full((20, 20), 0x8080, dtype=np.uint16)), tmp_path / "g.png")
    for decoded in _both(path):
        assert (decoded == 128).all()                                   # 32896 / 65535 * 255 = 128
    with Image.open(path) as opened:
        px = tiny_vit.to_pixels(opened)
    assert torch.allclose(px, torch.full_like(px, 128 / 255), atol=1e-3)


def test_dark_16_bit_stays_dark(tmp_path):
    arr = np.array([[2570, 5140], [0, 65535]], dtype=np.uint16)
    path = _saved(Image.fromarray(arr), tmp_path / "dark.png")
    for decoded in _both(path):
        assert decoded[..., 0].tolist() == [[10, 20], [0, 255]]


def test_32_bit_integer_and_float_images_use_their_scale(tmp_path):
    ints = _saved(Image.fromarray(np.array([[0, 2 ** 31 - 1]], dtype=np.int32)), tmp_path / "i.tif")
    assert np.asarray(load_image(ints))[0, :, 0].tolist() == [0, 127]  # (2^31 - 1) / (2^32 - 1) * 255 = 127.49
    floats = np.array([[0.25, 1.0, -0.5]], dtype=np.float32)
    path = _saved(Image.fromarray(floats), tmp_path / "f.tif")
    for decoded in _both(path):
        assert decoded[0, :, 0].tolist() == [64, 255, 0]               # 63.75 -> 64; clipped


def test_exif_orientation_is_applied(tmp_path):
    stored = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 12
    exif = Image.Exif()
    exif[0x0112] = 6                                                    # "rotate 90 CW to display"
    path = _saved(Image.fromarray(stored), tmp_path / "o.png", exif=exif.tobytes())
    shown = np.rot90(stored, k=-1)                                      # clockwise quarter turn
    for decoded in _both(path):
        assert decoded.shape == (3, 2, 3) and (decoded == shown).all()
    assert (to_rgb(load_image(path)) == load_image(path))               # decoding twice changes nothing


def test_palette_with_transparent_index_is_white(tmp_path):
    img = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8), "P")
    img.putpalette([200, 10, 10, 10, 200, 10] + [0] * 762)
    path = _saved(img, tmp_path / "p.png", transparency=1)
    for decoded in _both(path):
        assert decoded.reshape(4, 3).tolist() == [[200, 10, 10], [255, 255, 255], [255, 255, 255], [200, 10, 10]]


def test_colour_key_transparency_on_rgb_and_grey(tmp_path):
    rgb = Image.fromarray(np.array([[[10, 20, 30], [40, 50, 60]]], dtype=np.uint8))
    path = _saved(rgb, tmp_path / "k.png", transparency=(10, 20, 30))
    for decoded in _both(path):
        assert decoded[0].tolist() == [[255, 255, 255], [40, 50, 60]]
    grey = _saved(Image.fromarray(np.array([[7, 90]], dtype=np.uint8)), tmp_path / "kl.png", transparency=7)
    assert np.asarray(load_image(grey))[0].tolist() == [[255, 255, 255], [90, 90, 90]]


def test_grey_with_alpha(tmp_path):
    la = np.array([[[100, 0], [100, 255], [100, 128]]], dtype=np.uint8)
    path = _saved(Image.fromarray(la, "LA"), tmp_path / "la.png")
    for decoded in _both(path):
        # alpha a over white: 100 * a/255 + 255 * (1 - a/255); a = 128 -> 177.2
        assert decoded[0, :, 0].tolist() == [255, 100, 177] and (decoded[..., 0] == decoded[..., 2]).all()


def test_cmyk_one_bit_and_grey(tmp_path):
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255]]], dtype=np.uint8)
    path = _saved(Image.fromarray(cmyk, "CMYK"), tmp_path / "c.tif")
    for decoded in _both(path):
        assert decoded[0].tolist() == [[255, 255, 255], [0, 255, 255], [0, 0, 0]]  # paper, cyan ink, key ink
    bits = Image.new("1", (2, 1))
    bits.putpixel((1, 0), 1)
    path = _saved(bits, tmp_path / "b.png")
    for decoded in _both(path):
        assert decoded[0].tolist() == [[0, 0, 0], [255, 255, 255]]
    path = _saved(Image.fromarray(np.array([[3, 250]], dtype=np.uint8), "L"), tmp_path / "l.png")
    for decoded in _both(path):
        assert decoded[0].tolist() == [[3, 3, 3], [250, 250, 250]]


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), (255, 0, 0)), Image.new("RGB", (4, 4), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as opened:
        opened.seek(1)                                                  # a caller left it on frame 2
        api = np.asarray(to_rgb(opened))
    for decoded in (np.asarray(load_image(path)), api):
        assert tuple(decoded[0, 0]) == (255, 0, 0)


def test_icc_profile_is_converted_to_srgb(tmp_path):
    """A picture tagged with a profile is shown in sRGB after conversion; an unusable profile is
    ignored (values read as sRGB), never fatal."""
    from PIL import ImageCms

    values = np.array([[[200, 100, 50], [0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = _saved(Image.fromarray(values), tmp_path / "s.png", icc_profile=srgb)
    for decoded in _both(path):
        assert np.abs(decoded.astype(int) - values).max() <= 1        # sRGB -> sRGB is the identity
    path = _saved(Image.fromarray(values), tmp_path / "bad.png", icc_profile=b"not a profile" * 10)
    assert (np.asarray(load_image(path)) == values).all()


def test_lab_images_are_refused_not_miscoloured():
    from clipaudit.data import ImageLoadError

    with pytest.raises(ImageLoadError, match="LAB"):
        to_rgb(Image.new("LAB", (2, 2)))
