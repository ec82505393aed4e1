"""Photo decoding against images drawn here with Pillow: formats, modes, orientation, EXIF, hostile input."""

from __future__ import annotations

import csv
import io
import math
import pickle
import struct
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageFile, JpegImagePlugin
from PIL.TiffImagePlugin import IFDRational

from shared.errors import PermanentError
from shared.imaging import (
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    decode_photo,
    fit_for_resize,
    parse_gps,
    parse_taken_at,
    read_meta,
)

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
GPS_IFD = ExifTags.IFD.GPSInfo  # 0x8825
EXIF_IFD = ExifTags.IFD.Exif  # 0x8769
ORIENTATION = ExifTags.Base.Orientation  # 0x0112


def encode(im: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()


def quadrants(width: int, height: int) -> np.ndarray:
    """Upright test picture: red top-left, green top-right, blue bottom-left, yellow bottom-right."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 2, : width // 2] = RED
    pixels[: height // 2, width // 2 :] = GREEN
    pixels[height // 2 :, : width // 2] = BLUE
    pixels[height // 2 :, width // 2 :] = YELLOW
    return pixels


# How a camera stores an upright picture under each EXIF orientation (TIFF 6.0 / EXIF 2.3 definitions),
# written with numpy so the test does not reuse the transpose table it is checking.
STORED_FROM_UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # upside down
    4: lambda a: a[::-1, :],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # row 0 is the left column
    6: lambda a: np.rot90(a, 1),  # stored turned 90 deg counter-clockwise; viewers turn it clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # row 0 is the right column, bottom up
    8: lambda a: np.rot90(a, -1),  # stored turned 90 deg clockwise
}


def exif_with(orientation: int | None = None, gps: dict | None = None, exif_ifd: dict | None = None) -> Image.Exif:
    exif = Image.Exif()
    if orientation is not None:
        exif[ORIENTATION] = orientation
    if gps is not None:
        exif.get_ifd(GPS_IFD).update(gps)
    if exif_ifd is not None:
        exif.get_ifd(EXIF_IFD).update(exif_ifd)
    return exif


def assert_colour(image: Image.Image, xy: tuple[int, int], expected: tuple[int, int, int], tol: int = 40) -> None:
    actual = image.getpixel(xy)
    assert all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True)), (xy, actual, expected)


def assert_upright_quadrants(image: Image.Image) -> None:
    w, h = image.size
    assert_colour(image, (w // 4, h // 4), RED)
    assert_colour(image, (3 * w // 4, h // 4), GREEN)
    assert_colour(image, (w // 4, 3 * h // 4), BLUE)
    assert_colour(image, (3 * w // 4, 3 * h // 4), YELLOW)


def dms(degrees: int, minutes: int, seconds: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    return (IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(round(seconds * 100), 100))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims a size its (absent) pixel data never backs up."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """SOI + SOF0 + SOS headers for a 3-component baseline JPEG, with no real scan data."""
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    sos = b"\xff\xda" + struct.pack(">HB", 12, 3) + b"\x01\x00\x02\x11\x03\x11" + b"\x00\x3f\x00"
    return b"\xff\xd8" + sof + sos + b"\x00" * 16 + b"\xff\xd9"


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """Gradients plus noise: compresses like a photo, unlike a flat colour."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=-1)
    noise = np.random.default_rng(seed).integers(-12, 13, (height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def heif_can_encode() -> bool:
    try:
        encode(Image.new("RGB", (16, 16)), "HEIF")
    except (KeyError, OSError, ValueError, RuntimeError):
        return False
    return True


# ---------------------------------------------------------------- sizing


def test_jpeg_is_reduced_so_the_shorter_side_is_min_side() -> None:
    decoded = decode_photo(encode(Image.fromarray(quadrants(4000, 3000))))  # 12 MP, reduced 1/8 by libjpeg
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (427, 320)
    assert (decoded.meta.width, decoded.meta.height, decoded.meta.format) == (4000, 3000, "JPEG")


@pytest.mark.parametrize(
    ("size", "min_side", "expected"), [((1500, 2000), 320, (320, 427)), ((1000, 250), 100, (400, 100))]
)
def test_portrait_and_wide_images_keep_their_aspect(
    size: tuple[int, int], min_side: int, expected: tuple[int, int]
) -> None:
    assert decode_photo(encode(photo_like(*size), "PNG"), min_side=min_side).image.size == expected


def test_small_image_is_not_upscaled() -> None:
    decoded = decode_photo(encode(photo_like(200, 150), "PNG"))
    assert decoded.image.size == (200, 150)
    assert decoded.image.mode == "RGB"


def test_reduced_decode_keeps_the_picture() -> None:
    decoded = decode_photo(encode(Image.fromarray(quadrants(4000, 3000)), quality=90))
    assert_upright_quadrants(decoded.image)


def test_a_long_fit_decodes_a_12mp_jpeg_at_one_eighth_straight_to_the_network_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A network that fits the photo into 384 px needs 384 x 288 of a 4000 x 3000 photo: libjpeg's 1/8 (500 x 375)
    covers it, where a shorter side of 384 (512 x 384) needs 1/4 (1000 x 750), four times the pixels."""
    drafted: list[tuple[int, int]] = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, *args: object) -> object:
        result = draft(self, *args)
        drafted.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    data = encode(Image.fromarray(quadrants(4000, 3000)), quality=90)
    long = decode_photo(data, min_side=384, fit="long")
    short = decode_photo(data, min_side=384)
    assert drafted == [(500, 375), (1000, 750)]
    assert (long.image.size, short.image.size) == ((384, 288), (512, 384))
    assert_upright_quadrants(long.image)
    assert (long.meta.width, long.meta.height) == (4000, 3000)


@pytest.mark.parametrize(
    ("size", "min_side", "expected"),
    [((1500, 2000), 320, (240, 320)), ((1000, 250), 100, (100, 25)), ((300, 200), 384, (300, 200))],
)
def test_a_long_fit_measures_the_longer_side_and_never_upscales(
    size: tuple[int, int], min_side: int, expected: tuple[int, int]
) -> None:
    decoded = decode_photo(encode(photo_like(*size), "PNG"), min_side=min_side, fit="long")
    assert decoded.image.size == expected


def test_a_long_fit_is_measured_after_exif_orientation() -> None:
    """A portrait phone photo is stored landscape with orientation 6: it comes out upright, 288 x 384."""
    upright = quadrants(300, 400)
    stored = Image.fromarray(np.ascontiguousarray(STORED_FROM_UPRIGHT[6](upright)))
    decoded = decode_photo(encode(stored, quality=95, exif=exif_with(6)), min_side=384, fit="long")
    assert decoded.image.size == (288, 384)
    assert_upright_quadrants(decoded.image)


@pytest.mark.parametrize("size", [(4032, 3024), (3024, 4032), (1920, 1080), (1001, 667), (333, 1000), (5000, 999)])
def test_a_long_fit_leaves_the_network_nothing_to_resize(size: tuple[int, int]) -> None:
    """The decoded photo already has the size the network's ``long`` resize gives (same rounding), so the second
    resize that used to follow the decode is gone."""
    from shared.model.preprocess import resize

    image = decode_photo(encode(Image.new("RGB", size, GREEN)), min_side=384, fit="long").image
    assert resize(image, 384, "long").size == image.size
    assert max(image.size) == 384


def test_the_fitted_side_follows_the_network_resize_mode() -> None:
    assert [fit_for_resize(mode, "long") for mode in ("long", "square", "crop")] == ["long", "short", "short"]
    assert [fit_for_resize(mode) for mode in ("long", "square", "crop")] == ["short", "short", "short"]
    with pytest.raises(ValueError, match="fit"):
        decode_photo(encode(photo_like(64, 64)), fit="middle")  # type: ignore[arg-type]


def test_non_positive_min_side_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="positive"):
        decode_photo(encode(photo_like(64, 64)), min_side=0)


# ---------------------------------------------------------------- orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    upright = quadrants(96, 64)
    stored = Image.fromarray(np.ascontiguousarray(STORED_FROM_UPRIGHT[orientation](upright)))
    decoded = decode_photo(encode(stored, quality=95, exif=exif_with(orientation)))
    assert decoded.image.size == (96, 64)
    assert (decoded.meta.width, decoded.meta.height) == (96, 64)
    assert_upright_quadrants(decoded.image)


def test_rotated_phone_photo_is_reduced_and_turned_upright() -> None:
    upright = quadrants(1200, 1600)  # portrait shot stored landscape with orientation 6, like phones do
    stored = Image.fromarray(np.ascontiguousarray(STORED_FROM_UPRIGHT[6](upright)))
    assert stored.size == (1600, 1200)
    data = encode(stored, quality=90, exif=exif_with(6))
    decoded = decode_photo(data)
    assert decoded.image.size == (320, 427)
    assert_upright_quadrants(decoded.image)
    meta = read_meta(data)
    assert (meta.width, meta.height) == (1200, 1600)


@pytest.mark.parametrize("garbage", [0, 9, 65535])
def test_invalid_orientation_value_counts_as_upright(garbage: int) -> None:
    decoded = decode_photo(encode(Image.fromarray(quadrants(96, 64)), exif=exif_with(garbage)))
    assert decoded.image.size == (96, 64)
    assert_upright_quadrants(decoded.image)


# ---------------------------------------------------------------- modes and formats


def test_png_alpha_is_flattened_on_white() -> None:
    rgba = Image.new("RGBA", (40, 20), (255, 0, 0, 0))  # fully transparent red
    rgba.paste((255, 0, 0, 128), (20, 0, 40, 20))  # half-transparent red on the right
    image = decode_photo(encode(rgba, "PNG")).image
    assert image.mode == "RGB"
    assert image.getpixel((5, 10)) == (255, 255, 255)
    assert_colour(image, (30, 10), (255, 127, 127), tol=2)


def test_palette_with_transparency_is_flattened_on_white() -> None:
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(1, (10, 0, 20, 20))
    image = decode_photo(encode(palette, "PNG", transparency=0)).image
    assert image.getpixel((2, 2)) == (255, 255, 255)
    assert image.getpixel((15, 2)) == (0, 0, 255)


def test_grey_with_alpha_becomes_rgb() -> None:
    la = Image.new("LA", (10, 10), (50, 255))
    la.paste((50, 0), (0, 0, 5, 10))
    image = decode_photo(encode(la, "PNG")).image
    assert image.getpixel((1, 1)) == (255, 255, 255)
    assert image.getpixel((8, 1)) == (50, 50, 50)


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (8, 1))
    data = encode(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    image = decode_photo(data).image
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (0, 0, 0)
    assert_colour(image, (128, 4), (128, 128, 128), tol=2)
    assert image.getpixel((255, 4)) == (255, 255, 255)


@pytest.mark.parametrize(
    "values", [np.array([[0, 32768, 65535]], dtype=">u2"), np.array([[0.0, 0.5, 1.0]], dtype=np.float32)]
)
def test_wide_grey_tiff_is_scaled(values: np.ndarray) -> None:
    image = decode_photo(encode(Image.fromarray(values), "TIFF")).image
    assert image.getpixel((0, 0)) == (0, 0, 0)
    assert_colour(image, (1, 0), (128, 128, 128), tol=1)
    assert image.getpixel((2, 0)) == (255, 255, 255)


def test_multi_picture_jpeg_uses_the_first_picture() -> None:
    first, second = Image.new("RGB", (1200, 900), RED), Image.new("RGB", (1200, 900), BLUE)
    decoded = decode_photo(encode(first, "MPO", save_all=True, append_images=[second]))
    assert decoded.meta.format == "MPO"
    assert decoded.image.size == (427, 320)
    assert_colour(decoded.image, (200, 160), RED, tol=8)


def test_cmyk_jpeg_becomes_rgb() -> None:
    cyan = Image.new("CMYK", (64, 64), (255, 0, 0, 0))
    data = encode(cyan, quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    image = decode_photo(data).image
    assert image.mode == "RGB"
    assert_colour(image, (32, 32), (0, 255, 255), tol=8)


def test_large_cmyk_jpeg_is_reduced() -> None:
    decoded = decode_photo(encode(Image.new("CMYK", (2000, 1000), (0, 255, 0, 0))))
    assert decoded.image.size == (640, 320)
    assert_colour(decoded.image, (320, 160), (255, 0, 255), tol=8)


def test_greyscale_jpeg_becomes_rgb() -> None:
    image = decode_photo(encode(Image.new("L", (2000, 1500), 90))).image
    assert image.mode == "RGB"
    assert image.size == (427, 320)
    assert_colour(image, (100, 100), (90, 90, 90), tol=2)


@pytest.mark.parametrize(
    ("fmt", "params"),
    [("WEBP", {"quality": 90}), ("GIF", {}), ("BMP", {}), ("TIFF", {}), ("JPEG", {"progressive": True})],
)
def test_other_formats_decode(fmt: str, params: dict) -> None:
    decoded = decode_photo(encode(Image.fromarray(quadrants(800, 600)), fmt, **params))
    assert decoded.meta.format == fmt
    assert decoded.image.size == (427, 320)
    assert_upright_quadrants(decoded.image)


@pytest.mark.skipif(not heif_can_encode(), reason="pillow-heif has no HEIF encoder here")
def test_heic_round_trip_with_orientation_and_gps() -> None:
    upright = quadrants(800, 600)
    stored = Image.fromarray(np.ascontiguousarray(STORED_FROM_UPRIGHT[6](upright)))
    gps = {1: "N", 2: dms(48, 51, 29.6), 3: "E", 4: dms(2, 17, 40.2)}
    # As bytes: pillow-heif only turns EXIF orientation into the HEIF irot/imir boxes (what phones write and
    # libheif applies on decode) when it can parse the EXIF it is given, and it does not parse an Exif object.
    data = encode(stored, "HEIF", quality=90, exif=exif_with(6, gps=gps).tobytes())
    decoded = decode_photo(data)
    assert decoded.meta.format == "HEIF"
    assert (decoded.meta.width, decoded.meta.height) == (800, 600)
    assert decoded.image.size == (427, 320)
    assert_upright_quadrants(decoded.image)
    assert decoded.meta.gps == pytest.approx((48.85822, 2.29450), abs=1e-4)
    assert read_meta(data) == decoded.meta


@pytest.mark.skipif(not heif_can_encode(), reason="pillow-heif has no HEIF encoder here")
def test_truncated_heic_is_refused() -> None:
    data = encode(photo_like(256, 256), "HEIF")
    with pytest.raises(ImageDecodeError) as caught:
        decode_photo(data[: len(data) // 2])
    assert caught.value.reason == "truncated"


# ---------------------------------------------------------------- sources


def test_sources_path_stream_and_bytes_agree(tmp_path: Path) -> None:
    data = encode(photo_like(640, 480))
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)

    class OneWayStream(io.RawIOBase):
        def __init__(self, payload: bytes) -> None:
            self._inner = io.BytesIO(payload)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
            chunk = self._inner.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    results = [
        decode_photo(source)
        for source in (data, bytearray(data), io.BytesIO(data), path, str(path), OneWayStream(data))
    ]
    reference = np.asarray(results[0].image)
    for result in results[1:]:
        assert result.meta == results[0].meta
        assert np.array_equal(np.asarray(result.image), reference)


def test_caller_stream_is_left_open() -> None:
    stream = io.BytesIO(encode(photo_like(64, 64)))
    decode_photo(stream)
    assert not stream.closed


def test_missing_path_is_an_os_error_not_a_decode_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        decode_photo(tmp_path / "absent.jpg")


# ---------------------------------------------------------------- refusals


def test_decode_error_is_permanent_with_reason() -> None:
    with pytest.raises(PermanentError) as caught:
        decode_photo(b"")
    assert isinstance(caught.value, ImageDecodeError)
    assert caught.value.reason == "empty"
    assert "zero bytes" in str(caught.value)


def test_decode_error_survives_pickling() -> None:
    # Celery and multiprocessing pickle exceptions across processes.
    copy = pickle.loads(pickle.dumps(ImageDecodeError("truncated", "image file is truncated")))
    assert (type(copy), copy.reason, str(copy)) == (ImageDecodeError, "truncated", "image file is truncated")


@pytest.mark.parametrize("make", [lambda p: b"", lambda p: io.BytesIO(), lambda p: p])
def test_zero_bytes_are_empty(tmp_path: Path, make) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageDecodeError) as caught:
        decode_photo(make(empty))
    assert caught.value.reason == "empty"


@pytest.mark.parametrize(
    "data",
    [
        b"just some text\n" * 20,
        b"\x00" * 100,
    ],  # EPS and the other formats Pillow knows but uploads may not use: test_imaging_hostile.py
)
def test_non_images_are_not_an_image(data: bytes) -> None:
    for call in (decode_photo, read_meta):
        with pytest.raises(ImageDecodeError) as caught:
            call(data)
        assert caught.value.reason == "not_an_image"


@pytest.mark.parametrize(
    ("fmt", "params"), [("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {}), ("WEBP", {}), ("GIF", {})]
)
def test_truncated_files_are_refused_not_half_grey(fmt: str, params: dict) -> None:
    data = encode(photo_like(640, 480), fmt, **params)
    with pytest.raises(ImageDecodeError) as caught:
        decode_photo(data[: len(data) // 2])
    assert caught.value.reason == "truncated"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_jpeg_cut_inside_its_header_is_truncated() -> None:
    with pytest.raises(ImageDecodeError) as caught:
        decode_photo(encode(photo_like(64, 64))[:30])
    assert caught.value.reason == "truncated"


def test_read_meta_reads_only_the_header() -> None:
    data = encode(photo_like(640, 480), exif=exif_with(gps={1: "S", 2: dms(22, 57, 5), 3: "W", 4: dms(43, 12, 39)}))
    half = data[: len(data) // 2]  # pixels cut off; header and EXIF intact
    meta = read_meta(half)
    assert (meta.width, meta.height, meta.format) == (640, 480, "JPEG")
    assert meta.gps == pytest.approx((-22.95139, -43.21083), abs=1e-4)
    with pytest.raises(ImageDecodeError):
        decode_photo(half)


def test_corrupt_png_data_is_corrupt() -> None:
    data = bytearray(encode(photo_like(64, 64), "PNG"))
    data[data.find(b"IDAT") + 10] ^= 0xFF
    with pytest.raises(ImageDecodeError) as caught:
        decode_photo(bytes(data))
    assert caught.value.reason == "corrupt"


@pytest.mark.parametrize("claim", [png_claiming, jpeg_claiming])
@pytest.mark.parametrize("side", [20000, 50000])
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_huge_header_is_too_large_before_any_pixels(claim, side: int) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ImageDecodeError) as caught:
        decode_photo(claim(side, side))  # there are no pixels: the refusal can only come from the header
    assert caught.value.reason == "too_large"


def test_max_pixels_is_a_per_call_limit() -> None:
    data = encode(photo_like(1000, 500))
    with pytest.raises(ImageDecodeError) as caught:
        decode_photo(data, max_pixels=499_999)
    assert caught.value.reason == "too_large"
    assert decode_photo(data, max_pixels=500_000).image.size == (640, 320)


def test_panorama_beyond_pillows_default_limit_decodes() -> None:
    # 180 MP: over Pillow's stock bomb limit (~179 MP), under ours; decoded at 1/8 scale via draft.
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS
    data = encode(Image.new("L", (20000, 9000), 128), quality=80)
    decoded = decode_photo(data)
    assert decoded.image.size == (711, 320)
    assert (decoded.meta.width, decoded.meta.height) == (20000, 9000)


# ---------------------------------------------------------------- EXIF: GPS and time


@pytest.mark.parametrize(
    ("gps", "expected"),
    [
        ({1: "N", 2: dms(37, 10, 33.96), 3: "W", 4: dms(3, 35, 17.16)}, (37.17610, -3.58810)),  # Alhambra
        ({1: "S", 2: dms(13, 9, 47), 3: "W", 4: dms(72, 32, 44)}, (-13.16306, -72.54556)),  # Machu Picchu
        ({1: "N", 2: dms(27, 10, 30), 3: "E", 4: dms(78, 2, 31)}, (27.17500, 78.04194)),  # Taj Mahal
        ({1: b"S\x00", 2: (IFDRational(3389, 100), 0, 0), 3: b"E", 4: (151.2153, 0, 0)}, (-33.89, 151.2153)),
    ],
)
def test_gps_is_read_from_exif(gps: dict, expected: tuple[float, float]) -> None:
    decoded = decode_photo(encode(photo_like(64, 64), exif=exif_with(gps=gps)))
    assert decoded.meta.gps == pytest.approx(expected, abs=1e-4)


GOOD_LAT = {1: "N", 2: dms(41, 53, 24)}
GOOD_LON = {3: "E", 4: dms(12, 29, 32)}


@pytest.mark.parametrize(
    "gps",
    [
        {},
        {**GOOD_LAT},  # no longitude
        {
            **GOOD_LAT,
            3: "E",
            4: (IFDRational(12, 0), IFDRational(29, 1), IFDRational(32, 1)),
        },  # zero denominator
        {**GOOD_LAT, 3: "E", 4: (math.nan, 0.0, 0.0)},
        {1: "N", 2: dms(95, 0, 0), **GOOD_LON},  # latitude out of range
        {**GOOD_LAT, 3: "E", 4: dms(181, 0, 0)},
        {**GOOD_LAT, 3: "E", 4: dms(12, 75, 0)},  # 75 minutes
        {**GOOD_LAT, 3: "X", 4: dms(12, 29, 32)},  # no such hemisphere
        {2: dms(41, 53, 24), **GOOD_LON},  # hemisphere missing
        {1: "N", 2: (0, 0, 0), 3: "E", 4: (0, 0, 0)},  # phone without a fix
        {**GOOD_LAT, 3: "E", 4: "twelve"},
        {**GOOD_LAT, 3: "E", 4: (1, 2, 3, 4)},
        {**GOOD_LAT, 3: "E", 4: (-12, 29, 32)},
    ],
)
def test_garbage_gps_is_ignored(gps: dict) -> None:
    assert parse_gps(gps) is None


def test_garbage_gps_in_a_file_still_decodes() -> None:
    gps = {1: "N", 2: (IFDRational(1, 0), IFDRational(0, 0), IFDRational(5, 0)), 3: "Q", 4: dms(200, 0, 0)}
    decoded = decode_photo(encode(photo_like(800, 600), exif=exif_with(gps=gps)))
    assert decoded.meta.gps is None
    assert decoded.image.size == (427, 320)


def test_garbage_exif_block_still_decodes() -> None:
    junk = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00" + b"\xff" * 40
    with pytest.warns(UserWarning):  # Pillow says "Corrupt EXIF data"; the photo is fine
        decoded = decode_photo(encode(photo_like(800, 600), exif=junk))
    assert decoded.meta.gps is None
    assert decoded.image.size == (427, 320)


def test_taken_at_is_naive_without_offset() -> None:
    exif = exif_with(exif_ifd={ExifTags.Base.DateTimeOriginal: "2024:07:14 18:05:09"})
    assert decode_photo(encode(photo_like(64, 64), exif=exif)).meta.taken_at == datetime(2024, 7, 14, 18, 5, 9)


def test_taken_at_is_aware_with_offset_and_subseconds() -> None:
    exif = exif_with(
        exif_ifd={
            ExifTags.Base.DateTimeOriginal: "2023:12:31 23:59:58",
            ExifTags.Base.SubsecTimeOriginal: "25",
            ExifTags.Base.OffsetTimeOriginal: "-03:30",
        }
    )
    taken = read_meta(encode(photo_like(64, 64), exif=exif)).taken_at
    assert taken == datetime(2023, 12, 31, 23, 59, 58, 250000, tzinfo=timezone(-timedelta(hours=3, minutes=30)))
    assert taken is not None and taken.utcoffset() == -timedelta(hours=3, minutes=30)


@pytest.mark.parametrize("text", ["0000:00:00 00:00:00", "    :  :     :  :  ", "", "yesterday", "2024:13:01 00:00:00"])
def test_garbage_dates_are_none(text: str) -> None:
    assert parse_taken_at({ExifTags.Base.DateTimeOriginal: text}) is None


def test_photo_without_exif_has_no_gps_or_time() -> None:
    meta = read_meta(encode(photo_like(64, 48), "PNG"))
    assert (meta.width, meta.height, meta.format, meta.gps, meta.taken_at) == (64, 48, "PNG", None, None)


def test_png_exif_is_read() -> None:
    data = encode(
        photo_like(64, 48), "PNG", exif=exif_with(8, gps={1: "N", 2: dms(10, 0, 0), 3: "E", 4: dms(20, 0, 0)})
    )
    decoded = decode_photo(data)
    assert (decoded.meta.width, decoded.meta.height) == (48, 64)
    assert decoded.image.size == (48, 64)
    assert decoded.meta.gps == pytest.approx((10.0, 20.0))
    assert read_meta(data) == decoded.meta


# ---------------------------------------------------------------- real photos (../shared/data, read in place)


def manifest(shared_data: Path) -> list[dict[str, str]]:
    with (shared_data / "manifest.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.shared_data
def test_real_photos_decode_to_min_side(shared_data: Path) -> None:
    for row in manifest(shared_data)[::20]:  # a spread sample; the whole set decodes in ~20 s here
        decoded = decode_photo(shared_data / row["path"])
        assert decoded.image.mode == "RGB", row["path"]
        assert min(decoded.image.size) == min(320, decoded.meta.width, decoded.meta.height), row["path"]
        fitted = decode_photo(shared_data / row["path"], min_side=384, fit="long")  # what the network gets
        assert max(fitted.image.size) == min(384, max(decoded.meta.width, decoded.meta.height)), row["path"]


@pytest.mark.shared_data
def test_real_exif_gps_is_read_near_the_landmark(shared_data: Path) -> None:
    rows = [row for row in manifest(shared_data) if row["exif_gps"] == "1"]
    assert rows, "the manifest lists photos with EXIF GPS"
    for row in rows:
        gps = read_meta(shared_data / row["path"]).gps
        assert gps is not None, row["path"]
        if row["lat"]:  # a landmark: the photographer stood within ~100 km (one Machu Picchu shot is from Cusco)
            lat, lon = float(row["lat"]), float(row["lon"])
            km = 111.2 * math.hypot(gps[0] - lat, (gps[1] - lon) * math.cos(math.radians(lat)))
            assert km < 100, (row["path"], gps, km)
