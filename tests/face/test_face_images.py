"""load_image / to_rgb_uint8: every kind of image file and array, and the bad ones."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from fantasyid.errors import InputError
from fantasyid.face.analysis import fit_long_side, load_image, to_rgb_uint8


@pytest.fixture()
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)


def test_rgb_png_round_trip(tmp_path, rgb):
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    np.testing.assert_array_equal(out, rgb)
    np.testing.assert_array_equal(load_image(str(path)), rgb)
    np.testing.assert_array_equal(load_image(Image.open(path)), rgb)


def test_grayscale_file_and_array(tmp_path, rgb):
    gray = rgb[:, :, 0]
    path = tmp_path / "gray.png"
    Image.fromarray(gray).save(path)
    out = load_image(path)
    assert out.shape == (24, 32, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], gray)
    np.testing.assert_array_equal(to_rgb_uint8(gray[:, :, None]), out)
    np.testing.assert_array_equal(to_rgb_uint8(gray), out)


def test_rgba_and_la_drop_alpha(tmp_path, rgb):
    alpha = np.full(rgb.shape[:2], 7, np.uint8)
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([rgb, alpha])).save(path)
    np.testing.assert_array_equal(load_image(path), rgb)
    la = tmp_path / "la.png"
    Image.fromarray(np.dstack([rgb[:, :, 1], alpha]), mode="LA").save(la)
    np.testing.assert_array_equal(load_image(la)[:, :, 2], rgb[:, :, 1])
    np.testing.assert_array_equal(to_rgb_uint8(np.dstack([rgb, alpha])), rgb)


def test_sixteen_bit_files_and_arrays(tmp_path, rgb):
    cv2 = pytest.importorskip("cv2")
    wide = rgb.astype(np.uint16) * 257  # 8-bit values spread over the 16-bit range
    gray_path, color_path = tmp_path / "gray16.png", tmp_path / "color16.png"
    cv2.imwrite(str(gray_path), wide[:, :, 0])
    cv2.imwrite(str(color_path), np.ascontiguousarray(wide[:, :, ::-1]))  # OpenCV writes BGR
    assert Image.open(gray_path).mode.startswith("I")  # Pillow opens 16-bit grey as I;16 / I
    np.testing.assert_array_equal(load_image(gray_path)[:, :, 0], rgb[:, :, 0])
    np.testing.assert_array_equal(load_image(color_path), rgb)
    np.testing.assert_array_equal(to_rgb_uint8(wide), rgb)


def test_palette_and_cmyk(tmp_path, rgb):
    """Palette and CMYK files give the colours they hold, pixel for pixel (computed here, not by Pillow)."""
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], dtype=np.uint8)
    indices = np.random.default_rng(1).integers(0, 4, (24, 32)).astype(np.uint8)
    palette_image = Image.fromarray(indices, mode="P")
    palette_image.putpalette(colours.reshape(-1).tolist())
    palette_image.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(load_image(tmp_path / "palette.png"), colours[indices])

    # CMYK without black: R, G, B = 255 − C, 255 − M, 255 − Y (lossless TIFF, so the values are exact)
    cmy = rgb.astype(np.int64)
    cmyk = np.concatenate([cmy, np.zeros((24, 32, 1), np.int64)], axis=2).astype(np.uint8)  # (H, W, 4), K = 0
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "cmyk.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "cmyk.tif"), (255 - cmy).astype(np.uint8))


@pytest.mark.parametrize(
    ("orientation", "display"),
    [
        (3, lambda a: a[::-1, ::-1]),  # rotate 180°
        (6, lambda a: np.rot90(a, k=-1)),  # rotate 90° clockwise to display
        (8, lambda a: np.rot90(a, k=1)),  # rotate 90° counter-clockwise to display
        (2, lambda a: a[:, ::-1]),  # mirror left-right
    ],
)
def test_exif_orientation_is_applied(tmp_path, rgb, orientation, display):
    path = tmp_path / "rotated.png"  # PNG keeps the pixels exact; its eXIf chunk carries the orientation
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, exif=exif)
    np.testing.assert_array_equal(load_image(path), display(rgb))


def test_float_bool_and_integer_arrays(rgb):
    np.testing.assert_array_equal(to_rgb_uint8(rgb.astype(np.float32) / 255.0), rgb)
    assert to_rgb_uint8(np.ones((4, 4), bool)).max() == 255
    np.testing.assert_array_equal(to_rgb_uint8(rgb.astype(np.int64)), rgb)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        to_rgb_uint8(rgb.astype(np.float32))  # 0..255 floats are ambiguous
    with pytest.raises(InputError, match="NaN"):
        to_rgb_uint8(np.full((4, 4, 3), np.nan, np.float32))
    with pytest.raises(InputError, match="0..255"):
        to_rgb_uint8(np.full((4, 4), -3, np.int16))
    with pytest.raises(InputError, match="shape"):
        to_rgb_uint8(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(InputError, match="shape"):
        to_rgb_uint8(np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(InputError, match="empty"):
        to_rgb_uint8(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(InputError, match="dtype"):
        to_rgb_uint8(np.zeros((4, 4, 3), np.complex64))


def test_unreadable_and_non_image_files(tmp_path, rgb):
    text = tmp_path / "readme.txt"
    text.write_text("hello")
    with pytest.raises(InputError, match="not an image") as error:
        load_image(text)
    assert error.value.hint  # says which formats work
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="not an image"):
        load_image(empty)
    good = tmp_path / "good.png"
    Image.fromarray(np.tile(rgb, (8, 8, 1))).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:400])
    with pytest.raises(InputError, match="cannot read"):
        load_image(truncated)
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="not a file"):
        load_image(tmp_path)
    with pytest.raises(InputError, match="cannot use"):
        load_image(b"\x89PNG")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height pixels, with almost no pixel data behind it."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def test_huge_images_are_refused_before_decoding(tmp_path, rgb):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(100_000, 100_000))  # 10 gigapixels claimed, 100 bytes on disk
    with pytest.raises(InputError, match="too large|megapixels"):
        load_image(bomb)
    big = tmp_path / "big.png"
    big.write_bytes(_png_header_only(9000, 9000))  # over our 67-megapixel limit, under Pillow's bomb limit
    with pytest.raises(InputError, match="megapixels") as error:
        load_image(big)
    assert "downscale" in error.value.hint
    with pytest.raises(InputError, match="megapixels"):
        load_image(rgb, max_pixels=100)
    assert load_image(rgb, max_pixels=None).shape == rgb.shape


def test_fit_long_side():
    image = np.zeros((3000, 2000, 3), np.uint8)
    assert fit_long_side(image, 1024).shape == (1024, 682, 3)  # int() truncation, as the release
    small = np.zeros((100, 50, 3), np.uint8)
    assert fit_long_side(small, 1024) is small
