"""The demo's sample data, built from Debian's ``gcompris-qt-data`` so a user with only the repository can run it.

GCompris ships free photos (mostly from Wikimedia Commons, credited per file in READMEs inside the package) in Qt
resource files (``*.rcc``). The demo needs a landmark gallery (one photo per monument of the "explore monuments"
activity plus deterministic crops, mirror images and colour changes of it, so each landmark has enough photos for
several centroids and references), non-landmark photos to calibrate the threshold, and upload photos for two users:
other shots of gallery monuments, monuments that are not in the gallery, and more non-landmarks.

Only the demo uses this module; :func:`extract_rcc` reads the Qt resource format (versions 1 to 3).
"""

from __future__ import annotations

import csv
import fnmatch
import io
import posixpath
import re
import shutil
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

DEBIAN_PACKAGE = "gcompris-qt-data"
DEFAULT_RCC_DIR = Path("/usr/share/gcompris-qt/rcc")
DEFAULT_COPYRIGHT_FILE = Path(f"/usr/share/doc/{DEBIAN_PACKAGE}/copyright")
JPEG_QUALITY = 92
MANIFEST_FIELDS = ("path", "kind", "landmark_id", "landmark_name", "city", "country", "lat", "lon", "split")
UPLOAD_FIELDS = ("user", "path", "expected_landmark", "source")
MARKER = ".landmarks-demo"
UNKNOWN_LANDMARK = "unknown_landmark"  # the manifest kind (shared.gallery.manifest.UNKNOWN_LANDMARK_KIND)

_ACTIVITIES = "gcompris/src/activities"
_MONUMENTS = f"{_ACTIVITIES}/explore_monuments/resource"
_CATEGORIZATION = f"{_ACTIVITIES}/categorization/resource/images"

# Photos without landmarks, checked by eye (photos, not drawings): (rcc file, folder in it, file-name prefix).
NON_LANDMARK_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("explore_farm_animals.rcc", f"{_ACTIVITIES}/explore_farm_animals/resource/animals", "farm"),
    ("explore_world_animals.rcc", f"{_ACTIVITIES}/explore_world_animals/resource/animals", "wild"),
    ("erase.rcc", f"{_ACTIVITIES}/erase/resource", "animal"),
    ("explore_world_music.rcc", f"{_ACTIVITIES}/explore_world_music/resource/music", "music"),
    ("categorization.rcc", f"{_CATEGORIZATION}/others", "object"),
    ("categorization.rcc", f"{_CATEGORIZATION}/fishes", "fish"),
    ("categorization.rcc", f"{_CATEGORIZATION}/tools", "tool"),
)

# Monument uploads from the categorization activity: (user, photo stem, expected landmark slug or "" for none).
# Seven are other shots than the gallery's; brandenburgGate, colosseum and greatPyramid are the gallery's own
# shots at another size. Its victoriaMemorial is the one in London, not Kolkata's: same name, no album.
UPLOAD_MONUMENTS: tuple[tuple[str, str, str], ...] = (
    ("alice", "tajMahal", "taj_mahal"),
    ("alice", "eiffelTower", "eiffel_tower"),
    ("alice", "colosseum", "colosseum"),
    ("alice", "greatWall", "great_wall_of_china"),
    ("alice", "mountRushmore", "mount_rushmore"),
    ("alice", "leaningTowerOfPisa", ""),
    ("alice", "victoriaMemorial", ""),
    ("bob", "christTheRedeemer", "christ_the_redeemer"),
    ("bob", "statueOfLiberty", "statue_of_liberty"),
    ("bob", "brandenburgGate", "brandenburg_gate"),
    ("bob", "greatPyramid", "great_pyramid_of_giza"),
    ("bob", "kutubMinar", "qutb_minar"),
    ("bob", "parthenon", ""),
)
# The other user also took these monuments (here: a closer crop of the same photo), so both get that album.
SHARED_MONUMENTS: tuple[str, ...] = ("tajMahal", "eiffelTower")
USERS: tuple[str, ...] = ("alice", "bob")


class RccFormatError(ValueError):
    """The file is not a Qt resource file this reader understands."""


class DemoSourceMissingError(FileNotFoundError):
    """The GCompris resource files are not installed."""


@dataclass(frozen=True)
class View:
    """One deterministic variation of a gallery photo: a crop (side ``scale`` of the photo, placed at ``anchor``:
    0 = left/top edge, 1 = right/bottom edge), an optional mirror image and colour changes."""

    name: str
    scale: float = 1.0
    anchor: tuple[float, float] = (0.5, 0.5)
    mirror: bool = False
    brightness: float = 1.0
    saturation: float = 1.0
    contrast: float = 1.0


GALLERY_VIEWS: tuple[View, ...] = (
    View("original"),
    View("centre", scale=0.75),
    View("top_left", scale=0.65, anchor=(0.1, 0.1)),
    View("bottom_right", scale=0.65, anchor=(0.9, 0.9)),
    View("wide_left", scale=0.85, anchor=(0.0, 0.5)),
    View("mirror", mirror=True),
    View("mirror_close", scale=0.8, anchor=(0.4, 0.45), mirror=True),
    View("warm_light", scale=0.9, brightness=1.12, saturation=0.8, contrast=0.92),
)
SHARED_VIEW = View("closer", scale=0.8, anchor=(0.55, 0.4))


@dataclass(frozen=True)
class DemoLandmark:
    slug: str
    name: str
    city: str
    country: str
    lat: float
    lon: float
    rcc_name: str  # <region>/<stem> of the photo in explore_monuments.rcc


@dataclass(frozen=True)
class Credit:
    author: str
    license: str
    source: str = ""

    def line(self) -> str:
        parts = [f"Author: {self.author or 'unknown'}", f"Licence: {self.license or 'unknown'}"]
        if self.source:
            parts.append(f"Source: {self.source}")
        return " | ".join(parts)


@dataclass(frozen=True)
class DemoUpload:
    user: str
    path: Path  # absolute
    expected_landmark: str  # slug, "" when no album is the right answer
    source: str  # resource path in the package


@dataclass(frozen=True)
class DemoData:
    """What :func:`prepare_demo` wrote; paths are absolute."""

    out_dir: Path
    gallery_csv: Path  # evaluation-manifest format, split=train: the gallery and the calibration photos
    uploads_csv: Path  # user,path,expected_landmark,source
    eval_csv: Path  # gallery rows plus the uploads as split=test rows, for `landmarks eval --manifest`
    attribution: Path
    landmarks: tuple[DemoLandmark, ...]
    gallery_photos: int
    calibration_photos: int
    uploads: tuple[DemoUpload, ...]
    unknown_landmark_photos: int = 0  # monuments the gallery does not know, never uploaded: the open-set score's


# --- Qt resource files -------------------------------------------------------------------------------------------

_FLAG_ZLIB, _FLAG_DIR, _FLAG_ZSTD = 1, 2, 4


def extract_rcc(path: Path | str) -> Iterator[tuple[str, bytes]]:
    """Yield ``(resource path, content)`` for every file in a Qt ``.rcc`` file (format versions 1-3).

    Layout (qtbase ``rcc.cpp``): header ``qres``, version, offsets of the tree, data and names (v3: a flags word
    saying which compressions occur); tree nodes of 14 bytes (v2+: 22, with a modification time); names are a u16
    length, a u32 hash and UTF-16BE text; data is a u32 size then the bytes, zlib ones (flag 1) prefixed by their
    u32 uncompressed length. zstd (flag 4) is rejected: Qt writes it only when built with zstd, Debian's is not.
    Resource paths have no leading slash (``gcompris/src/...``).
    """
    blob = Path(path).read_bytes()
    name = Path(path).name
    if blob[:4] != b"qres":
        raise RccFormatError(f"{name}: not a Qt resource file (no 'qres' header)")
    version, tree, data, names = _unpack(blob, ">IIII", 4, name)
    if not 1 <= version <= 3:
        raise RccFormatError(f"{name}: unsupported rcc format version {version}")
    if version >= 3 and _unpack(blob, ">I", 20, name)[0] & _FLAG_ZSTD:
        raise RccFormatError(f"{name}: zstd-compressed resources are not supported (only zlib)")
    node_size = 22 if version >= 2 else 14

    def node_name(offset: int) -> str:
        (length,) = _unpack(blob, ">H", names + offset, name)
        start = names + offset + 6
        raw = blob[start : start + 2 * length]
        if len(raw) != 2 * length:
            raise RccFormatError(f"{name}: truncated name table")
        return raw.decode("utf-16-be")

    def walk(index: int, prefix: str, seen: frozenset[int]) -> Iterator[tuple[str, bytes]]:
        if index in seen:
            raise RccFormatError(f"{name}: the resource tree has a cycle")
        at = tree + index * node_size
        name_offset, flags = _unpack(blob, ">IH", at, name)
        path_here = posixpath.join(prefix, node_name(name_offset)) if index else ""
        if flags & _FLAG_DIR:
            count, first = _unpack(blob, ">II", at + 6, name)
            for child in range(first, first + count):
                yield from walk(child, path_here, seen | {index})
            return
        (data_offset,) = _unpack(blob, ">I", at + 10, name)
        yield path_here, _payload(blob, data + data_offset, flags, f"{name}:{path_here}")

    yield from walk(0, "", frozenset())


def _unpack(blob: bytes, fmt: str, offset: int, name: str) -> tuple[int, ...]:
    try:
        return struct.unpack_from(fmt, blob, offset)
    except struct.error as exc:
        raise RccFormatError(f"{name}: truncated at offset {offset}") from exc


def _payload(blob: bytes, at: int, flags: int, where: str) -> bytes:
    (size,) = _unpack(blob, ">I", at, where)
    raw = blob[at + 4 : at + 4 + size]
    if len(raw) != size:
        raise RccFormatError(f"{where}: truncated data")
    if flags & _FLAG_ZSTD:
        raise RccFormatError(f"{where}: zstd-compressed resource; only zlib is supported")
    if not flags & _FLAG_ZLIB:
        return raw
    (expected,) = _unpack(raw, ">I", 0, where)
    try:
        content = zlib.decompress(raw[4:])
    except zlib.error as exc:
        raise RccFormatError(f"{where}: bad zlib data: {exc}") from exc
    if len(content) != expected:
        raise RccFormatError(f"{where}: {len(content)} bytes after decompression, header says {expected}")
    return content


# --- credits -----------------------------------------------------------------------------------------------------

_FIELD = re.compile(r"^([A-Za-z][A-Za-z-]*):(?:\s+(.*))?$")


def parse_paragraphs(text: str) -> list[dict[str, list[str]]]:
    """Split Debian-copyright-style text into paragraphs of ``field -> lines``.

    Also reads the READMEs inside GCompris' resources, which use the same fields but list ``Files:`` one per
    unindented line: any line that is not ``Field: value`` continues the previous field.
    """
    paragraphs: list[dict[str, list[str]]] = []
    for block in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in block.splitlines():
            match = _FIELD.match(line)
            if match:
                current = fields.setdefault(match.group(1).lower(), [])
                if match.group(2):
                    current.append(match.group(2).strip())
            elif current is not None and line.strip() and line.strip() != ".":
                current.append(line.strip())
        if fields:
            paragraphs.append(fields)
    return paragraphs


def _credit(fields: dict[str, list[str]]) -> Credit:
    licence = fields.get("license", [""])
    return Credit(
        author="; ".join(fields.get("copyright", [])),
        license=licence[0] if licence else "",
        source=" ".join(fields.get("source", [])),
    )


class Credits:
    """Author and licence of each resource: the README next to it in the package first, because it is per file
    and current (Debian's copyright file credits some photos by their old ``.jpg`` names, and a few wrongly), then
    Debian's copyright file matched by folder and file stem (its last matching paragraph wins, as the format says).
    """

    def __init__(self) -> None:
        self._readme: dict[str, Credit] = {}
        self._debian: list[tuple[list[str], Credit]] = []

    def add_readme(self, readme_path: str, text: str) -> None:
        folder = posixpath.dirname(readme_path)
        for fields in parse_paragraphs(text):
            credit = _credit(fields)
            for file in fields.get("files", []):
                self._readme[_stem(posixpath.join(folder, file))] = credit

    def add_debian_copyright(self, text: str) -> None:
        for fields in parse_paragraphs(text):
            if "files" in fields:
                self._debian.append(([p for f in fields["files"] for p in f.split()], _credit(fields)))

    def lookup(self, resource_path: str) -> Credit | None:
        stem = _stem(resource_path)
        if stem in self._readme:
            return self._readme[stem]
        relative = resource_path.removeprefix("gcompris/")
        found = None
        for patterns, credit in self._debian:
            if any(_stem(p) == _stem(relative) or fnmatch.fnmatchcase(relative, p) for p in patterns):
                found = credit
        return found


def _stem(path: str) -> str:
    return posixpath.splitext(path)[0]


# --- landmarks ---------------------------------------------------------------------------------------------------


def load_demo_landmarks(path: Path | None = None) -> tuple[DemoLandmark, ...]:
    """The monuments of ``explore_monuments.rcc`` with real coordinates (``devtools/demo_landmarks.csv``)."""
    text = (
        path.read_text("utf-8")
        if path
        else resources.files("devtools").joinpath("demo_landmarks.csv").read_text("utf-8")
    )
    return tuple(
        DemoLandmark(
            slug=row["slug"],
            name=row["name"],
            city=row["city"],
            country=row["country"],
            lat=float(row["lat"]),
            lon=float(row["lon"]),
            rcc_name=row["rcc_name"],
        )
        for row in csv.DictReader(io.StringIO(text))
    )


# --- images ------------------------------------------------------------------------------------------------------


def apply_view(image: Image.Image, view: View) -> Image.Image:
    """The crop, mirror and colour change of ``view``; the photo keeps its pixel scale (no resampling)."""
    width, height = image.size
    crop_w, crop_h = round(width * view.scale), round(height * view.scale)
    left = round((width - crop_w) * view.anchor[0])
    top = round((height - crop_h) * view.anchor[1])
    out = image.crop((left, top, left + crop_w, top + crop_h))
    if view.mirror:
        out = ImageOps.mirror(out)
    for enhancer, factor in (
        (ImageEnhance.Brightness, view.brightness),
        (ImageEnhance.Color, view.saturation),
        (ImageEnhance.Contrast, view.contrast),
    ):
        if factor != 1.0:
            out = enhancer(out).enhance(factor)
    return out


def to_rgb(content: bytes) -> Image.Image:
    """Decode a package image; transparency is flattened onto white, as a JPEG cannot keep it."""
    with Image.open(io.BytesIO(content)) as image:
        image.load()
        if image.mode in ("RGBA", "LA", "P"):
            rgba = image.convert("RGBA")
            flat = Image.new("RGB", rgba.size, "white")
            flat.paste(rgba, mask=rgba.getchannel("A"))
            return flat
        return image.convert("RGB")


def _save_jpeg(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=JPEG_QUALITY)


# --- the demo folder ---------------------------------------------------------------------------------------------


def required_rcc_files() -> list[str]:
    """The package's resource files the demo reads, the gallery's first."""
    names = ["explore_monuments.rcc", "categorization.rcc", *(rcc for rcc, _, _ in NON_LANDMARK_SOURCES)]
    return list(dict.fromkeys(names))


def check_rcc_dir(rcc_dir: Path) -> None:
    """Raise :class:`DemoSourceMissingError` naming the Debian package when a resource file is missing."""
    missing = [name for name in required_rcc_files() if not (rcc_dir / name).is_file()]
    if missing:
        raise DemoSourceMissingError(
            f"{rcc_dir / missing[0]} is missing ({len(missing)} of the demo's {len(required_rcc_files())} GCompris "
            f"resource files): install Debian's {DEBIAN_PACKAGE} (`apt-get install -y {DEBIAN_PACKAGE}`) "
            "or point --rcc-dir at a folder holding its rcc files"
        )


def _check_out_dir(out_dir: Path) -> None:
    """Refuse a non-empty folder that an earlier run did not write: re-running empties the demo's sub-folders."""
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
        raise FileExistsError(f"{out_dir} is not empty and not a demo folder (no {MARKER}): choose another --out")


def _reset(out_dir: Path) -> None:
    """Empty the demo's sub-folders so a re-run rewrites exactly the same files."""
    _check_out_dir(out_dir)
    for sub in ("gallery", "calibration", "uploads"):
        shutil.rmtree(out_dir / sub, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text("written by `landmarks demo prepare`; the folder is rewritten on each run\n")


def _snake(stem: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", stem).replace("-", "_").lower()


def _images_in(entries: dict[str, bytes], folder: str) -> list[str]:
    return sorted(
        p for p in entries if posixpath.dirname(p) == folder and p.endswith((".webp", ".jpg", ".jpeg", ".png"))
    )


def _landmark_row(path: str, landmark: DemoLandmark, split: str = "train") -> dict[str, str]:
    return {
        "path": path,
        "kind": "landmark",
        "landmark_id": landmark.slug,
        "landmark_name": landmark.name,
        "city": landmark.city,
        "country": landmark.country,
        "lat": f"{landmark.lat:.3f}",
        "lon": f"{landmark.lon:.3f}",
        "split": split,
    }


def _non_landmark_row(path: str, split: str = "train") -> dict[str, str]:
    return {field: "" for field in MANIFEST_FIELDS} | {"path": path, "kind": "non_landmark", "split": split}


def _write_csv(path: Path, fields: Iterable[str], rows: Iterable[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def prepare_demo(
    rcc_dir: Path,
    out_dir: Path,
    *,
    copyright_file: Path | None = DEFAULT_COPYRIGHT_FILE,
    landmarks: tuple[DemoLandmark, ...] | None = None,
) -> DemoData:
    """Write the demo's gallery, calibration photos, uploads, CSVs and ATTRIBUTION.txt into ``out_dir``.

    Deterministic: the same package gives the same files, and a re-run replaces them. Every photo is a JPEG
    (quality 92), as a phone would upload.
    """
    check_rcc_dir(rcc_dir)
    out_dir = out_dir.resolve()
    _check_out_dir(out_dir)
    landmarks = landmarks or load_demo_landmarks()
    archives = {name: dict(extract_rcc(rcc_dir / name)) for name in required_rcc_files()}
    credits = _credits(archives, copyright_file)

    _reset(out_dir)
    written: list[tuple[str, str]] = []  # (what was written, resource it came from) for ATTRIBUTION.txt
    gallery_rows = _write_gallery(archives["explore_monuments.rcc"], landmarks, out_dir, written)
    calibration_rows, upload_sources = _write_calibration(archives, out_dir, written)
    uploads = _write_uploads(archives["categorization.rcc"], upload_sources, landmarks, out_dir, written)
    unknown_rows = _write_unknown_landmarks(archives["categorization.rcc"], out_dir, written)

    by_slug = {lm.slug: lm for lm in landmarks}
    test_rows = [
        _landmark_row(_rel(u.path, out_dir), by_slug[u.expected_landmark], "test")
        if u.expected_landmark
        else _non_landmark_row(_rel(u.path, out_dir), "test")
        for u in uploads
    ]
    data = DemoData(
        out_dir=out_dir,
        gallery_csv=out_dir / "gallery.csv",
        uploads_csv=out_dir / "uploads.csv",
        eval_csv=out_dir / "eval.csv",
        attribution=out_dir / "ATTRIBUTION.txt",
        landmarks=landmarks,
        gallery_photos=len(gallery_rows),
        calibration_photos=len(calibration_rows),
        uploads=tuple(uploads),
        unknown_landmark_photos=len(unknown_rows),
    )
    _write_csv(data.gallery_csv, MANIFEST_FIELDS, gallery_rows + calibration_rows + unknown_rows)
    _write_csv(data.eval_csv, MANIFEST_FIELDS, gallery_rows + calibration_rows + unknown_rows + test_rows)
    _write_csv(
        data.uploads_csv,
        UPLOAD_FIELDS,
        (
            {
                "user": u.user,
                "path": _rel(u.path, out_dir),
                "expected_landmark": u.expected_landmark,
                "source": u.source,
            }
            for u in uploads
        ),
    )
    data.attribution.write_text(_attribution_text(written, credits), encoding="utf-8")
    return data


def _credits(archives: dict[str, dict[str, bytes]], copyright_file: Path | None) -> Credits:
    credits = Credits()
    for entries in archives.values():
        for resource, content in entries.items():
            if posixpath.basename(resource) == "README":
                credits.add_readme(resource, content.decode("utf-8", errors="replace"))
    if copyright_file is not None and copyright_file.is_file():
        credits.add_debian_copyright(copyright_file.read_text("utf-8", errors="replace"))
    return credits


def _write_gallery(
    monuments: dict[str, bytes], landmarks: Iterable[DemoLandmark], out_dir: Path, written: list[tuple[str, str]]
) -> list[dict[str, str]]:
    """Each monument's photo in every view of :data:`GALLERY_VIEWS`, as ``gallery/<slug>/<slug>_NN_<view>.jpg``."""
    rows = []
    for landmark in landmarks:
        resource = f"{_MONUMENTS}/{landmark.rcc_name}.webp"
        if resource not in monuments:
            raise RccFormatError(f"explore_monuments.rcc has no {landmark.rcc_name}.webp (for {landmark.slug})")
        photo = to_rgb(monuments[resource])
        for number, view in enumerate(GALLERY_VIEWS):
            relative = f"gallery/{landmark.slug}/{landmark.slug}_{number:02d}_{view.name}.jpg"
            _save_jpeg(apply_view(photo, view), out_dir / relative)
            rows.append(_landmark_row(relative, landmark))
        written.append((f"gallery/{landmark.slug}/ ({len(GALLERY_VIEWS)} views)", resource))
    return rows


def _write_calibration(
    archives: dict[str, dict[str, bytes]], out_dir: Path, written: list[tuple[str, str]]
) -> tuple[list[dict[str, str]], list[tuple[str, str, bytes]]]:
    """Every other non-landmark photo of each source to ``calibration/``; returns the rest for the uploads."""
    rows, rest = [], []
    for rcc, folder, prefix in NON_LANDMARK_SOURCES:
        for index, resource in enumerate(_images_in(archives[rcc], folder)):
            stem = _snake(posixpath.splitext(posixpath.basename(resource))[0])
            file_name = f"{stem if stem.startswith(prefix) else f'{prefix}_{stem}'}.jpg"
            content = archives[rcc][resource]
            if index % 2:
                rest.append((file_name, resource, content))
                continue
            relative = f"calibration/{file_name}"
            _save_jpeg(to_rgb(content), out_dir / relative)
            rows.append(_non_landmark_row(relative))
            written.append((relative, resource))
    return rows, rest


def _write_unknown_landmarks(
    categorization: dict[str, bytes], out_dir: Path, written: list[tuple[str, str]]
) -> list[dict[str, str]]:
    """The categorization activity's monuments that no upload shows, as ``unknown/<name>.jpg`` rows of kind
    ``unknown_landmark``: landmark-like photos of places the gallery does not know, which a model build turns
    away and calibrates its open-set score on (the uploads' unknown monuments are never among them)."""
    uploaded = {stem for _, stem, _ in UPLOAD_MONUMENTS}
    rows = []
    for resource in _images_in(categorization, f"{_CATEGORIZATION}/monuments"):
        stem = posixpath.splitext(posixpath.basename(resource))[0]
        if stem in uploaded:
            continue
        relative = f"unknown/{_snake(stem)}.jpg"
        _save_jpeg(to_rgb(categorization[resource]), out_dir / relative)
        rows.append(_non_landmark_row(relative) | {"kind": UNKNOWN_LANDMARK})
        written.append((relative, resource))
    return rows


def _write_uploads(
    categorization: dict[str, bytes],
    non_landmarks: list[tuple[str, str, bytes]],
    landmarks: Iterable[DemoLandmark],
    out_dir: Path,
    written: list[tuple[str, str]],
) -> list[DemoUpload]:
    """The monuments of :data:`UPLOAD_MONUMENTS`, then the non-landmarks dealt to the users in turn."""
    slugs = {lm.slug for lm in landmarks}
    uploads: list[DemoUpload] = []

    def upload(user: str, file_name: str, resource: str, image: Image.Image, expected: str) -> None:
        relative = f"uploads/{user}/{file_name}"
        _save_jpeg(image, out_dir / relative)
        uploads.append(DemoUpload(user, out_dir / relative, expected, resource))
        written.append((relative, resource))

    for user, stem, expected in UPLOAD_MONUMENTS:
        if expected and expected not in slugs:
            raise ValueError(f"upload {stem} expects {expected}, which is not a demo landmark")
        resource = f"{_CATEGORIZATION}/monuments/{stem}.webp"
        photo = to_rgb(categorization[resource])
        upload(user, f"{_snake(stem)}.jpg", resource, photo, expected)
        if stem in SHARED_MONUMENTS:
            other = next(u for u in USERS if u != user)
            closer = apply_view(photo, SHARED_VIEW)
            upload(other, f"{_snake(stem)}_{SHARED_VIEW.name}.jpg", resource, closer, expected)
    for index, (file_name, resource, content) in enumerate(non_landmarks):
        upload(USERS[index % len(USERS)], file_name, resource, to_rgb(content), "")
    return uploads


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _attribution_text(items: list[tuple[str, str]], credits: Credits) -> str:
    lines = [
        f"Photos of this demo come from Debian's {DEBIAN_PACKAGE} (GCompris, https://gcompris.net); most are from",
        "Wikimedia Commons. Credits are those of the README next to each photo in the package, else of",
        f"{DEFAULT_COPYRIGHT_FILE}. Every photo was converted from WebP to JPEG; the gallery views and the",
        "'_closer' uploads are crops, mirror images and colour changes of the credited photo, under its licence.",
        "",
    ]
    for written, resource in items:
        credit = credits.lookup(resource)
        lines.append(f"{written} <- {resource.removeprefix(_ACTIVITIES + '/')}")
        lines.append(f"    {credit.line() if credit else 'Author: unknown | Licence: see the package copyright file'}")
    return "\n".join(lines) + "\n"


def read_uploads(uploads_csv: Path) -> list[DemoUpload]:
    """The uploads listed by :func:`prepare_demo`, paths made absolute, for the demo to upload and check."""
    with uploads_csv.open(newline="", encoding="utf-8") as handle:
        return [
            DemoUpload(row["user"], uploads_csv.parent / row["path"], row["expected_landmark"], row.get("source", ""))
            for row in csv.DictReader(handle)
        ]
