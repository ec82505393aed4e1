"""Hostile uploads under the pixel cap: pixel bombs decode in bounded memory or are refused; only photo formats.

The bombs are written here as streams (a few hundred KB on disk, 392-784 MB once decoded) and decoded in a child
process whose address space is capped, as a worker pod's memory limit would cap it.
"""

from __future__ import annotations

import io
import json
import resource
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.imaging import ImageDecodeError, decode_photo
from shared.imaging.budget import decode_cost
from shared.imaging.formats import ALLOWED_FORMATS, refused_format

REPO_ROOT = Path(__file__).resolve().parents[2]
ADDRESS_SPACE_LIMIT = 3 << 29  # 1.5 GiB: the interpreter (~180 MB) plus a 1 GiB decode budget, with room
BOMB_SIDE = 14_000  # 196 MP: under the 200 MP pixel cap


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grey16_png(path: Path, side: int) -> None:
    """A 16-bit greyscale PNG, white top half and black bottom half, compressed row by row."""
    packer = zlib.compressobj(9)
    white, black = b"\x00" + b"\xff" * (2 * side), b"\x00" * (2 * side + 1)
    with path.open("wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)))
        for y in range(side):
            data = packer.compress(white if y < side // 2 else black)
            if data:
                out.write(_png_chunk(b"IDAT", data))
        out.write(_png_chunk(b"IDAT", packer.flush()) + _png_chunk(b"IEND", b""))


def int32_tiff(path: Path, side: int, rows_per_strip: int = 64) -> None:
    """A deflate-compressed 32-bit signed integer grey TIFF: 65535 in the top half, 0 below; each strip the same."""
    strips = -(-side // rows_per_strip)
    white = zlib.compress(b"\xff\xff\x00\x00" * side * rows_per_strip, 9)
    black = zlib.compress(b"\x00" * (4 * side * rows_per_strip), 9)
    last = zlib.compress(b"\x00" * (4 * side * (side - (strips - 1) * rows_per_strip)), 9)
    blobs = [white if i * rows_per_strip < side // 2 else black for i in range(strips - 1)] + [last]
    ifd_at = 8
    offsets_at = ifd_at + 2 + 12 * 10 + 4
    counts_at = offsets_at + 4 * strips
    offsets = [counts_at + 4 * strips + sum(len(b) for b in blobs[:i]) for i in range(strips)]
    entries = [  # tag, type (3 SHORT, 4 LONG), count, value or offset
        (256, 4, 1, side),
        (257, 4, 1, side),
        (258, 3, 1, 32),  # BitsPerSample
        (259, 3, 1, 8),  # Compression: deflate
        (262, 3, 1, 1),  # BlackIsZero
        (273, 4, strips, offsets_at),  # StripOffsets
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, rows_per_strip),
        (279, 4, strips, counts_at),  # StripByteCounts
        (339, 3, 1, 2),  # SampleFormat: signed integer
    ]
    head = bytearray(b"II*\x00" + struct.pack("<IH", ifd_at, len(entries)))
    for tag, kind, count, value in entries:
        field = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        head += struct.pack("<HHI", tag, kind, count) + field
    head += struct.pack("<I", 0) + struct.pack(f"<{strips}I", *offsets) + struct.pack(f"<{strips}I", *map(len, blobs))
    with path.open("wb") as out:
        out.write(head)
        for blob in blobs:
            out.write(blob)


_DECODE_IN_CHILD = textwrap.dedent(
    """
    import json, sys
    from shared.imaging import ImageDecodeError, decode_photo
    try:
        image = decode_photo(open(sys.argv[1], "rb").read()).image
    except ImageDecodeError as exc:
        print(json.dumps({"refused": exc.reason}))
    else:
        bottom = image.getpixel((5, image.height - 5))
        print(json.dumps({"size": image.size, "top": image.getpixel((5, 5)), "bottom": bottom}))
    """
)


def decode_capped(path: Path) -> dict:
    """decode_photo(path) in a child process limited to ADDRESS_SPACE_LIMIT bytes of address space."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))

    done = subprocess.run(
        [sys.executable, "-c", _DECODE_IN_CHILD, str(path)],
        preexec_fn=cap,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


# ---------------------------------------------------------------- pixel bombs


@pytest.mark.slow
@pytest.mark.parametrize("build", [grey16_png, int32_tiff], ids=["png16", "tiff_int32"])
def test_wide_bomb_decodes_under_a_capped_address_space(tmp_path: Path, build) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bomb"
    build(path, BOMB_SIDE)
    assert path.stat().st_size < 1_000_000
    result = decode_capped(path)
    assert result == {"size": [320, 320], "top": [255, 255, 255], "bottom": [0, 0, 0]}


def test_wide_grey_is_reduced_before_it_is_widened(tmp_path: Path) -> None:
    path = tmp_path / "wide.tif"
    int32_tiff(path, 2000)
    decoded = decode_photo(path)
    assert decoded.image.size == (320, 320)
    assert decoded.image.getpixel((5, 5)) == (255, 255, 255)
    assert decoded.image.getpixel((5, 315)) == (0, 0, 0)


def test_a_decode_over_the_memory_budget_is_refused_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "grey16.png"
    grey16_png(path, 2000)  # 8 MB as 16-bit pixels
    assert decode_photo(path, max_decode_bytes=256 << 20).image.size == (320, 320)
    with pytest.raises(ImageDecodeError) as caught:
        decode_photo(path, max_decode_bytes=4 << 20)
    assert caught.value.reason == "too_large"


def test_a_single_strip_tiff_costs_its_strip_buffer(tmp_path: Path) -> None:
    strips, one = tmp_path / "strips.tif", tmp_path / "one.tif"
    int32_tiff(strips, 1000, rows_per_strip=16)
    int32_tiff(one, 1000, rows_per_strip=1000)  # libtiff holds the whole uncompressed image once more
    with Image.open(strips) as a, Image.open(one) as b:
        assert decode_cost(b, b.size, (1, 1)) - decode_cost(a, a.size, (1, 1)) == 4 * 1000 * (1000 - 16)


def test_webp_costs_the_decoders_copy_too() -> None:
    pixels = Image.new("RGB", (1000, 800), (10, 20, 30))
    costs = {}
    for fmt in ("PNG", "WEBP"):
        buffer = io.BytesIO()
        pixels.save(buffer, fmt)
        with Image.open(buffer) as im:
            costs[fmt] = decode_cost(im, im.size, (1, 1))
    assert costs["WEBP"] - costs["PNG"] == 1000 * 800 * 4


def test_progressive_jpeg_costs_its_coefficients_at_full_size() -> None:
    costs = {}
    for progressive in (False, True):
        buffer = io.BytesIO()
        Image.new("RGB", (1600, 1200), (10, 20, 30)).save(buffer, "JPEG", progressive=progressive, subsampling=0)
        with Image.open(buffer) as im:
            im.draft(None, (200, 150))
            costs[progressive] = decode_cost(im, (1600, 1200), (1, 1))
    assert costs[True] - costs[False] == 1600 * 1200 * 3 * 2


def test_palette_and_float_modes_convert_in_strips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shared.imaging.convert.STRIP_PIXELS", 4096)  # many strips for a small picture
    palette = Image.new("P", (1200, 900), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(1, (0, 450, 1200, 900))
    buffer = io.BytesIO()
    palette.save(buffer, "PNG")
    image = decode_photo(buffer.getvalue()).image
    assert image.size == (427, 320)
    assert image.getpixel((100, 50)) == (255, 0, 0)
    assert image.getpixel((100, 300)) == (0, 0, 255)
    ramp = np.tile(np.linspace(0.0, 1.0, 1200, dtype=np.float32), (900, 1))
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, "TIFF")
    grey = decode_photo(buffer.getvalue()).image
    assert grey.getpixel((2, 100))[0] <= 2
    assert grey.getpixel((424, 100))[0] >= 253  # one scale for every strip: the peak of the whole picture


# ---------------------------------------------------------------- formats


def psd_header() -> bytes:
    """A Photoshop file's header (Pillow cannot write PSD): 3 channels of 8 bits, 64x64, RGB, no data after."""
    return b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 64, 64, 8, 3) + b"\x00" * 64


def pillow_written(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (psd_header(), "PSD"),
        (pillow_written("PPM"), "PPM"),
        (pillow_written("ICO"), "ICO"),
        (pillow_written("PCX"), "PCX"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "EPS"),
    ],
)
def test_formats_outside_the_allow_list_are_unsupported(data: bytes, name: str) -> None:
    assert name not in ALLOWED_FORMATS
    assert refused_format(data[:32]) == name
    with pytest.raises(ImageDecodeError) as caught:
        decode_photo(data)
    assert caught.value.reason == "unsupported"
    assert name in str(caught.value)


def test_psd_is_never_handed_to_its_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import PsdImagePlugin

    def explode(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the PSD plugin parsed an upload")

    monkeypatch.setattr(PsdImagePlugin.PsdImageFile, "_open", explode)
    with pytest.raises(ImageDecodeError):
        decode_photo(psd_header())


def test_the_api_thumbnailer_has_the_same_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.api import thumbs

    path = tmp_path / "grey16.png"
    grey16_png(path, 2000)
    monkeypatch.setattr(thumbs, "read_object", lambda *_args, **_kwargs: path.read_bytes())
    assert thumbs.Thumbnailer(None, max_pixels=10**8).thumbnail("b", "k", "e1", 128)[:2] == b"\xff\xd8"  # type: ignore[arg-type]
    with pytest.raises(ImageDecodeError) as caught:
        thumbs.Thumbnailer(None, max_pixels=10**8, max_decode_bytes=4 << 20).thumbnail("b", "k", "e1", 128)  # type: ignore[arg-type]
    assert caught.value.reason == "too_large"
