"""The demo's sample data: the Qt resource reader, the landmark table, credits, and the demo folder itself.

The rcc tests build their own resource files with a small writer; the ``prepare_demo`` tests read Debian's
gcompris-qt-data and skip when it is not installed.
"""

from __future__ import annotations

import csv
import hashlib
import re
import struct
import zlib
from collections import Counter
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from devtools.demo_data import (
    DEFAULT_RCC_DIR,
    GALLERY_VIEWS,
    MANIFEST_FIELDS,
    NON_LANDMARK_SOURCES,
    UPLOAD_MONUMENTS,
    Credits,
    DemoSourceMissingError,
    RccFormatError,
    View,
    apply_view,
    extract_rcc,
    load_demo_landmarks,
    prepare_demo,
    read_uploads,
)
from shared.gallery.manifest import UNKNOWN_LANDMARK_KIND
from workers.cli import demo as cli_demo

# --- a minimal rcc writer (the layout of qtbase's rcc.cpp) ---------------------------------------------------------


def build_rcc(files: dict[str, tuple[bytes, int]], version: int = 3, overall_flags: int = 0) -> bytes:
    """An rcc file holding ``path -> (content, flags)``; flags 1 = zlib, 4 = zstd (stored raw: only the flag)."""
    root: dict = {}
    for path, spec in files.items():
        *folders, leaf = path.split("/")
        node = root
        for folder in folders:
            node = node.setdefault(folder, {})
        node[leaf] = spec
    nodes: list[tuple[str, object]] = [("", root)]  # breadth first: a folder's children are contiguous
    first_child: dict[int, int] = {}
    i = 0
    while i < len(nodes):
        _, node = nodes[i]
        if isinstance(node, dict):
            first_child[i] = len(nodes)
            nodes.extend(sorted(node.items()))
        i += 1
    names, data, tree = bytearray(), bytearray(), bytearray()
    for index, (name, node) in enumerate(nodes):
        name_offset = len(names)
        names += struct.pack(">HI", len(name), 0) + name.encode("utf-16-be")
        if isinstance(node, dict):
            tree += struct.pack(">IHII", name_offset, 2, len(node), first_child[index])
        else:
            content, flags = node
            payload = struct.pack(">I", len(content)) + zlib.compress(content) if flags & 1 else content
            tree += struct.pack(">IHHHI", name_offset, flags, 0, 0, len(data))
            data += struct.pack(">I", len(payload)) + payload
        if version >= 2:
            tree += struct.pack(">Q", 0)
    header_size = 24 if version >= 3 else 20
    data_at = header_size
    names_at = data_at + len(data)
    tree_at = names_at + len(names)
    header = b"qres" + struct.pack(">IIII", version, tree_at, data_at, names_at)
    if version >= 3:
        header += struct.pack(">I", overall_flags)
    return header + bytes(data) + bytes(names) + bytes(tree)


TEXT = b"Copyright: Someone\nLicense: CC0-1.0\nFiles:\nphoto.webp\n" * 20


@pytest.mark.parametrize("version", [1, 2, 3])
def test_extract_rcc_reads_a_folder_with_a_plain_and_a_zlib_file(tmp_path: Path, version: int) -> None:
    rcc = tmp_path / "tiny.rcc"
    rcc.write_bytes(build_rcc({"res/images/a.bin": (b"\x00\x01raw bytes", 0), "res/images/README": (TEXT, 1)}, version))

    assert dict(extract_rcc(rcc)) == {"res/images/a.bin": b"\x00\x01raw bytes", "res/images/README": TEXT}


def test_extract_rcc_decodes_non_ascii_names(tmp_path: Path) -> None:
    rcc = tmp_path / "names.rcc"
    rcc.write_bytes(build_rcc({"monuments/Château_de_Chambord.webp": (b"x", 0)}))

    assert [path for path, _ in extract_rcc(rcc)] == ["monuments/Château_de_Chambord.webp"]


def test_extract_rcc_rejects_a_file_that_is_not_rcc(tmp_path: Path) -> None:
    other = tmp_path / "photo.rcc"
    other.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))

    with pytest.raises(RccFormatError, match="not a Qt resource file"):
        list(extract_rcc(other))


def test_extract_rcc_rejects_zstd_clearly(tmp_path: Path) -> None:
    entry = tmp_path / "entry.rcc"
    entry.write_bytes(build_rcc({"a/b.webp": (b"zstd frame", 4)}))
    whole = tmp_path / "whole.rcc"
    whole.write_bytes(build_rcc({"a/b.webp": (b"zstd frame", 4)}, overall_flags=4))

    with pytest.raises(RccFormatError, match=r"entry.rcc:a/b.webp: zstd"):
        list(extract_rcc(entry))
    with pytest.raises(RccFormatError, match="whole.rcc: zstd"):
        list(extract_rcc(whole))


def test_extract_rcc_rejects_a_truncated_file(tmp_path: Path) -> None:
    blob = build_rcc({"a/b.bin": (b"0123456789" * 10, 0)})
    cut = tmp_path / "cut.rcc"
    cut.write_bytes(blob[:60])  # the header points past the end

    with pytest.raises(RccFormatError, match="truncated"):
        list(extract_rcc(cut))


def test_extract_rcc_rejects_a_wrong_uncompressed_length(tmp_path: Path) -> None:
    blob = bytearray(build_rcc({"a/readme.txt": (TEXT, 1)}, version=3))
    data_at = struct.unpack_from(">I", blob, 12)[0]
    struct.pack_into(">I", blob, data_at + 4, len(TEXT) + 1)  # the length prefix of the zlib payload
    bad = tmp_path / "bad.rcc"
    bad.write_bytes(bytes(blob))

    with pytest.raises(RccFormatError, match="header says"):
        list(extract_rcc(bad))


# --- the landmark table --------------------------------------------------------------------------------------------

# Rough boxes (lat_min, lat_max, lon_min, lon_max): catches swapped or sign-flipped coordinates.
COUNTRY_BOXES = {
    "Egypt": (22, 32, 25, 37),
    "France": (41, 51.5, -5.5, 10),
    "Germany": (47, 55.5, 5.5, 15.5),
    "India": (6, 36, 68, 98),
    "United States": (24, 50, -125, -66),
    "Mexico": (14, 33, -118, -86),
    "Brazil": (-34, 6, -74, -34),
    "Italy": (36, 47.5, 6, 19),
    "China": (18, 54, 73, 135),
    "Peru": (-18.5, 0, -81.5, -68.5),
    "Jordan": (29, 33.5, 34.9, 39.5),
}


def test_demo_landmarks_have_snake_case_slugs_and_real_coordinates() -> None:
    landmarks = load_demo_landmarks()

    assert len(landmarks) >= 40
    assert len({lm.slug for lm in landmarks}) == len(landmarks)
    assert len({lm.rcc_name for lm in landmarks}) == len(landmarks)
    for lm in landmarks:
        assert re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", lm.slug), lm.slug
        assert lm.name and lm.city and lm.country, lm.slug
        lat_min, lat_max, lon_min, lon_max = COUNTRY_BOXES[lm.country]
        assert lat_min <= lm.lat <= lat_max and lon_min <= lm.lon <= lon_max, (lm.slug, lm.lat, lm.lon)
    colosseum = next(lm for lm in landmarks if lm.slug == "colosseum")
    assert (colosseum.lat, colosseum.lon) == pytest.approx((41.890, 12.492), abs=0.002)


def test_every_expected_upload_landmark_is_a_demo_landmark() -> None:
    slugs = {lm.slug for lm in load_demo_landmarks()}

    assert {expected for _, _, expected in UPLOAD_MONUMENTS if expected} <= slugs
    assert "" in {expected for _, _, expected in UPLOAD_MONUMENTS}  # a monument outside the gallery


# --- credits and views ---------------------------------------------------------------------------------------------

README = """Copyright: Timothee Giet, 2020
License: CC-BY-SA 4.0
Files:
key.svg

Copyright: Urse Ovidiu
License: Public Domain
Source: https://commons.wikimedia.org/wiki/File:Colosseum_Roma_2009.jpg
Files:
wonders/colosseum.webp

Copyright: aussiegall
Source: https://commons.wikimedia.org/wiki/File:Pollinationn.jpg
License: CC-BY-2.0
Comments: cropping, sharpening
Files: bee.webp
"""

DEBIAN = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: GCompris authors
License: GPL-3+

Files: src/activities/erase/resource/*
       src/activities/other/x.png
Copyright: Somebody
License: CC-BY-SA-3.0

Files: src/activities/erase/resource/bee.jpg
Copyright: Old Name
License: CC0-1.0
 Some licence text.
 .
 More text.
"""


def test_credits_prefer_the_readme_next_to_the_photo_then_debian_by_stem() -> None:
    credits = Credits()
    credits.add_readme("gcompris/src/activities/explore_monuments/resource/README", README)
    credits.add_readme("gcompris/src/activities/erase/resource/README", README)
    credits.add_debian_copyright(DEBIAN)

    colosseum = credits.lookup("gcompris/src/activities/explore_monuments/resource/wonders/colosseum.webp")
    bee = credits.lookup("gcompris/src/activities/erase/resource/bee.webp")
    debian_stem = credits.lookup("gcompris/src/activities/other/x.webp")
    debian_glob = credits.lookup("gcompris/src/activities/erase/resource/cat.webp")

    assert colosseum is not None and colosseum.author == "Urse Ovidiu" and colosseum.license == "Public Domain"
    assert colosseum.source.endswith("Colosseum_Roma_2009.jpg")
    assert bee is not None and (bee.author, bee.license) == ("aussiegall", "CC-BY-2.0")
    assert debian_stem is not None and debian_stem.author == "Somebody"
    assert debian_glob is not None and debian_glob.license == "CC-BY-SA-3.0"


def test_views_crop_mirror_and_keep_the_pixel_scale() -> None:
    photo = Image.new("RGB", (100, 50), "white")
    photo.paste((255, 0, 0), (0, 0, 10, 50))  # a red band on the left edge

    crop = apply_view(photo, View("c", scale=0.5, anchor=(1.0, 0.0)))
    mirrored = apply_view(photo, View("m", mirror=True))

    assert crop.size == (50, 25) and crop.getpixel((0, 0)) == (255, 255, 255)
    assert mirrored.getpixel((99, 0)) == (255, 0, 0) and mirrored.getpixel((0, 0)) == (255, 255, 255)
    assert len({v.name for v in GALLERY_VIEWS}) == len(GALLERY_VIEWS) >= 6


# --- the demo folder from the real package -------------------------------------------------------------------------

PACKAGE_RCC = DEFAULT_RCC_DIR / "explore_monuments.rcc"
needs_package = pytest.mark.skipif(
    not PACKAGE_RCC.is_file(), reason=f"{PACKAGE_RCC} is absent: apt-get install -y gcompris-qt-data"
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    """One demo folder for the module's tests (writing it takes seconds); its users all skip without the package."""
    return prepare_demo(DEFAULT_RCC_DIR, tmp_path_factory.mktemp("demo") / "demo")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@needs_package
def test_every_monument_of_the_package_has_a_landmark_row() -> None:
    prefix = "gcompris/src/activities/explore_monuments/resource/"
    stems = {
        path.removeprefix(prefix).removesuffix(".webp")
        for path, _ in extract_rcc(DEFAULT_RCC_DIR / "explore_monuments.rcc")
        if path.endswith(".webp")
    }

    assert stems == {lm.rcc_name for lm in load_demo_landmarks()}


@pytest.mark.slow
@needs_package
def test_prepare_demo_writes_the_gallery_calibration_and_uploads(demo) -> None:
    gallery = _rows(demo.gallery_csv)
    uploads = _rows(demo.uploads_csv)
    landmarks = {lm.slug for lm in demo.landmarks}
    kinds = Counter(row["kind"] for row in gallery)

    assert list(gallery[0]) == list(MANIFEST_FIELDS)
    assert kinds == {
        "landmark": len(landmarks) * len(GALLERY_VIEWS),
        "non_landmark": demo.calibration_photos,
        UNKNOWN_LANDMARK_KIND: demo.unknown_landmark_photos,
    }
    # landmarks the gallery does not know, to calibrate on: never a photo an upload shows
    unknown_sources = {p.name for p in (demo.out_dir / "unknown").iterdir()}
    assert demo.unknown_landmark_photos >= 10 and len(unknown_sources) == demo.unknown_landmark_photos
    assert not unknown_sources & {Path(u["path"]).name for u in uploads}
    assert Counter(row["landmark_id"] for row in gallery if row["kind"] == "landmark") == dict.fromkeys(
        landmarks, len(GALLERY_VIEWS)
    )
    assert {row["split"] for row in gallery} == {"train"}
    assert demo.calibration_photos >= 60
    for row in gallery + uploads:
        path = demo.out_dir / row["path"]
        assert path.is_file(), row["path"]
    assert {row["expected_landmark"] for row in uploads} - {""} <= landmarks
    evaluation = _rows(demo.eval_csv)
    assert evaluation[: len(gallery)] == gallery and len(evaluation) == len(gallery) + len(uploads)
    assert {row["split"] for row in evaluation[len(gallery) :]} == {"test"}


@pytest.mark.slow
@needs_package
def test_uploads_give_both_users_albums_with_one_in_common_and_some_negatives(demo) -> None:
    uploads = read_uploads(demo.uploads_csv)
    albums = {user: {u.expected_landmark for u in uploads if u.user == user} - {""} for user in ("alice", "bob")}
    non_landmarks = [u for u in uploads if not u.expected_landmark]
    monuments_outside = [u for u in non_landmarks if "/monuments/" in u.source]

    assert {u.user for u in uploads} == {"alice", "bob"}
    assert albums["alice"] and albums["bob"] and albums["alice"] & albums["bob"]
    assert len(monuments_outside) >= 2  # the right answer is no album
    # about half the non-landmark photos go to the uploads, the other half to calibration
    assert abs((len(non_landmarks) - len(monuments_outside)) - demo.calibration_photos) <= len(NON_LANDMARK_SOURCES)


@pytest.mark.slow
@needs_package
def test_every_written_photo_is_a_credited_jpeg(demo) -> None:
    attribution = demo.attribution.read_text(encoding="utf-8")
    photos = sorted(p for p in demo.out_dir.rglob("*") if p.is_file() and p.parent != demo.out_dir)

    assert photos and all(p.suffix == ".jpg" for p in photos)
    with Image.open(photos[0]) as first:
        assert first.format == "JPEG" and first.mode == "RGB"
    assert "Author: unknown" not in attribution
    for photo in photos:
        relative = photo.relative_to(demo.out_dir).as_posix()
        listed = (
            f"{photo.parent.relative_to(demo.out_dir).as_posix()}/ " if relative.startswith("gallery/") else relative
        )
        assert listed in attribution, relative


def test_prepare_demo_names_the_debian_package_when_the_rcc_files_are_missing(tmp_path: Path) -> None:
    with pytest.raises(DemoSourceMissingError, match=r"explore_monuments\.rcc.*apt-get install -y gcompris-qt-data"):
        prepare_demo(tmp_path / "no-rcc", tmp_path / "out")


@needs_package
def test_prepare_demo_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")

    with pytest.raises(FileExistsError, match="not a demo folder"):
        prepare_demo(DEFAULT_RCC_DIR, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# --- the command ---------------------------------------------------------------------------------------------------


def _cli() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(cli_demo.app, name="demo")
    return root


def test_demo_prepare_without_the_package_exits_1_naming_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(_cli(), ["demo", "prepare", "--rcc-dir", str(tmp_path), "--out", str(tmp_path / "o")])

    assert result.exit_code == 1
    assert "gcompris-qt-data" in result.output and "apt-get install" in result.output


@pytest.mark.slow
@needs_package
def test_demo_prepare_prints_what_it_wrote_and_rewrites_the_same_files(demo) -> None:
    before = _digest(demo.out_dir)
    (demo.out_dir / "uploads" / "alice" / "stray.jpg").write_bytes(b"left over from an older run")

    result = CliRunner().invoke(_cli(), ["demo", "prepare", "--out", str(demo.out_dir)], terminal_width=200)

    assert result.exit_code == 0, result.output
    gallery_photos = len(load_demo_landmarks()) * len(GALLERY_VIEWS)
    assert str(gallery_photos) in result.output and "uploads/alice/" in result.output
    assert "ATTRIBUTION.txt" in result.output
    assert _digest(demo.out_dir) == before


def test_read_uploads_makes_paths_absolute(tmp_path: Path) -> None:
    csv_path = tmp_path / "uploads.csv"
    csv_path.write_text("user,path,expected_landmark,source\nalice,uploads/alice/a.jpg,colosseum,x.webp\n")

    (upload,) = read_uploads(csv_path)

    assert upload.path == tmp_path / "uploads/alice/a.jpg" and upload.expected_landmark == "colosseum"


def test_the_demo_ends_with_the_album_pages_and_a_recognize_hint(tmp_path: Path) -> None:
    from devtools.demo_data import DemoUpload
    from shared.settings import Settings

    cat = DemoUpload("alice", tmp_path / "uploads" / "alice" / "cat.jpg", "", "nonlandmark/cat")
    tower = DemoUpload("bob", tmp_path / "uploads" / "bob" / "eiffel tower.jpg", "eiffel_tower", "monuments/x")

    lines = cli_demo.closing_lines(Settings(), ["alice", "bob"], [cat, tower])

    assert [line.split(": ")[0] for line in lines[1:3]] == ["Album page of alice", "Album page of bob"]
    assert "/ui/users/bob" in lines[2]
    assert lines[-1].endswith(f"landmarks recognize '{tower.path}'")  # quoted: the path has a space
