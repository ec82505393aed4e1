"""The model bundle: one immutable folder that holds everything a worker needs to decide.

::

    manifest.json              version, model config, thresholds, metrics, landmarks, sha256 of every other file
    centroids.npy              K x D float32     centroid_landmarks.npy   K int64 (landmark ids)
    references.npy             R x D float32     reference_landmarks.npy  R int64
    head.pt                    optional head state dict (written via shared.model)
    backbone.pt                optional fine-tuned backbone tensors: only the tuned ones (last blocks, GeM's p),
                               keyed as in ``RetrievalNet``'s state dict; loaded over the packaged ImageNet weights
    reference_density.npy      with an open-set score (manifest "open_set"): R float32, each reference's density
    negative_bank.npy          with an open-set score: M x D float32 known non-landmarks
    network.onnx               optional: the whole network (tuned tensors and head included) as an ONNX graph for
                               the CPU engine (shared.model.onnx_export); without it the engine exports its own

Object storage is the source of truth (``<bucket>/<version>/<file>``); a local folder is the cache. Every file is
listed in the manifest with its sha256 and refused when it does not match. Bundle I/O needs no torch unless the
bundle carries weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.recognition.decision import DecisionParams, Thresholds
from shared.recognition.open_set import OpenSetModel
from shared.scenes.tagger import SceneConfig

if TYPE_CHECKING:
    from minio import Minio

MANIFEST = "manifest.json"
HEAD_FILE = "head.pt"
BACKBONE_FILE = "backbone.pt"
ONNX_FILE = "network.onnx"
ARRAYS = ("centroids", "centroid_landmarks", "references", "reference_landmarks")
REFERENCE_DENSITY = "reference_density"  # with an open-set score: R float32, aligned with the references
NEGATIVE_BANK = "negative_bank"  # with an open-set score: M x D float32 known non-landmarks
FORMAT_VERSION = 1


class BundleIntegrityError(Exception):
    """A bundle file is missing, altered or inconsistent with the manifest."""


@dataclass(frozen=True)
class LandmarkInfo:
    id: int
    slug: str
    name: str
    city: str = ""
    country: str = ""
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True, eq=False)
class Bundle:
    version: str
    model: dict[str, Any]  # EmbedderConfig fields + mean, std, embedding_dim
    thresholds: Thresholds
    landmarks: tuple[LandmarkInfo, ...]
    centroids: np.ndarray
    centroid_landmarks: np.ndarray
    references: np.ndarray
    reference_landmarks: np.ndarray
    decision: DecisionParams = field(default_factory=DecisionParams)
    metrics: dict[str, Any] = field(default_factory=dict)
    head_state: dict[str, Any] | None = None
    backbone_state: dict[str, Any] | None = None  # tuned backbone/pooling tensors (``finetune`` mode) or None
    scenes: SceneConfig = field(default_factory=SceneConfig)  # scene tag threshold and landmark prior
    open_set: OpenSetModel | None = None  # unknown-landmark score and threshold (shared.recognition.open_set)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    network_onnx: Path | None = None  # the ONNX graph of the network (saved as network.onnx, hashed as the rest)

    @property
    def embedding_dim(self) -> int:
        return int(self.centroids.shape[1])

    def landmark(self, landmark_id: int) -> LandmarkInfo:
        return self.landmarks_by_id[landmark_id]

    @property
    def landmarks_by_id(self) -> dict[int, LandmarkInfo]:
        return {lm.id: lm for lm in self.landmarks}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_bundle(bundle: Bundle, folder: Path) -> Path:
    """Write the bundle to ``folder`` (must not exist: bundles are immutable); atomic via a sibling temp dir."""
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"bundle folder already exists (bundles are immutable): {folder}")
    if bundle.model.get("finetune") and not bundle.backbone_state:
        raise ValueError(f"bundle {bundle.version} describes a fine-tuned model but carries no backbone weights")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        arrays = {
            "centroids": np.asarray(bundle.centroids, dtype=np.float32),
            "centroid_landmarks": np.asarray(bundle.centroid_landmarks, dtype=np.int64),
            "references": np.asarray(bundle.references, dtype=np.float32),
            "reference_landmarks": np.asarray(bundle.reference_landmarks, dtype=np.int64),
        }
        if bundle.open_set is not None:
            arrays[REFERENCE_DENSITY] = np.asarray(bundle.open_set.reference_density, dtype=np.float32)
            arrays[NEGATIVE_BANK] = np.asarray(bundle.open_set.negatives, dtype=np.float32)
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
        if bundle.head_state or bundle.backbone_state:
            from shared.model.weights_io import save_state

            if bundle.head_state:
                save_state(bundle.head_state, tmp / HEAD_FILE)
            if bundle.backbone_state:
                save_state(bundle.backbone_state, tmp / BACKBONE_FILE)
        if bundle.network_onnx is not None:
            shutil.copyfile(bundle.network_onnx, tmp / ONNX_FILE)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        manifest = {
            "format": FORMAT_VERSION,
            "version": bundle.version,
            "created_at": bundle.created_at,
            "model": bundle.model,
            "embedding_dim": bundle.embedding_dim,
            "thresholds": bundle.thresholds.to_dict(),
            "decision": asdict(bundle.decision),
            "scenes": bundle.scenes.to_dict(),
            "metrics": bundle.metrics,
            "landmarks": [asdict(lm) for lm in bundle.landmarks],
            "files": files,
        }
        if bundle.open_set is not None:
            manifest["open_set"] = bundle.open_set.to_dict()
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=_json_default))
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleIntegrityError(f"no {MANIFEST} in {folder}") from None
    except json.JSONDecodeError as exc:
        raise BundleIntegrityError(f"{path} is not valid JSON: {exc}") from exc


def verify_bundle(folder: Path) -> dict[str, Any]:
    """Check every listed file's sha256; return the manifest. Raises :class:`BundleIntegrityError`."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    files = manifest.get("files") or {}
    for name in (f"{a}.npy" for a in ARRAYS):
        if name not in files:
            raise BundleIntegrityError(f"manifest of {folder} does not list {name}")
    for name, digest in files.items():
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise BundleIntegrityError(f"bundle file missing: {path}")
        if sha256_file(path) != digest:
            raise BundleIntegrityError(f"sha256 mismatch for {path}: the bundle was altered or is incomplete")
    return manifest


def load_bundle(folder: Path) -> Bundle:
    """Load and verify a bundle folder."""
    folder = Path(folder)
    manifest = verify_bundle(folder)
    arrays = {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in ARRAYS}
    if len(arrays["centroids"]) != len(arrays["centroid_landmarks"]) or len(arrays["references"]) != len(
        arrays["reference_landmarks"]
    ):
        raise BundleIntegrityError(f"array lengths disagree in {folder}")
    files = manifest["files"]
    if manifest["model"].get("finetune") and BACKBONE_FILE not in files:
        raise BundleIntegrityError(f"{folder} holds a fine-tuned model but its manifest lists no {BACKBONE_FILE}")
    open_set = None
    if "open_set" in manifest:
        names = (f"{REFERENCE_DENSITY}.npy", f"{NEGATIVE_BANK}.npy")
        if any(name not in files for name in names):
            raise BundleIntegrityError(f"{folder} has an open-set score but its manifest lists no {' or '.join(names)}")
        density, negatives = (np.load(folder / name, allow_pickle=False) for name in names)
        if len(density) != len(arrays["references"]):
            raise BundleIntegrityError(
                f"{folder}: {len(density)} reference densities for {len(arrays['references'])} references"
            )
        try:
            open_set = OpenSetModel.from_dict(manifest["open_set"], density, negatives)
        except (KeyError, ValueError) as exc:
            raise BundleIntegrityError(f"{folder}: open-set score unreadable: {exc}") from exc
    head_state = backbone_state = None
    if HEAD_FILE in files or BACKBONE_FILE in files:
        from shared.model.weights_io import load_state

        head_state = load_state(folder / HEAD_FILE) if HEAD_FILE in files else None
        backbone_state = load_state(folder / BACKBONE_FILE) if BACKBONE_FILE in files else None
    return Bundle(
        version=manifest["version"],
        model=manifest["model"],
        thresholds=Thresholds.from_dict(manifest["thresholds"]),
        landmarks=tuple(LandmarkInfo(**lm) for lm in manifest["landmarks"]),
        decision=DecisionParams(**manifest.get("decision", {})),
        metrics=manifest.get("metrics", {}),
        head_state=head_state,
        backbone_state=backbone_state,
        scenes=SceneConfig.from_dict(manifest.get("scenes")),
        created_at=manifest["created_at"],
        open_set=open_set,
        network_onnx=folder / ONNX_FILE if ONNX_FILE in files else None,
        **arrays,
    )


def upload_bundle(client: Minio, bucket: str, version: str, folder: Path) -> list[str]:
    """Verify and upload ``folder`` to ``<bucket>/<version>/``; the manifest goes last so its presence means the
    upload is complete. Returns the object names."""
    folder = Path(folder)
    manifest = verify_bundle(folder)
    if manifest["version"] != version:
        raise BundleIntegrityError(f"{folder} holds version {manifest['version']!r}, not {version!r}")
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    names = []
    for name in [*sorted(manifest["files"]), MANIFEST]:
        obj = f"{version}/{name}"
        client.fput_object(bucket, obj, str(folder / name))
        names.append(obj)
    return names


def download_bundle(client: Minio, bucket: str, version: str, dest: Path) -> Path:
    """Fetch ``<bucket>/<version>/`` into ``dest`` (a cache: reused when it verifies), atomically."""
    dest = Path(dest)
    if dest.exists():
        try:
            verify_bundle(dest)
            return dest
        except BundleIntegrityError:
            shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        client.fget_object(bucket, f"{version}/{MANIFEST}", str(tmp / MANIFEST))
        for name in read_manifest(tmp)["files"]:
            if Path(name).name != name:
                raise BundleIntegrityError(f"bad file name in manifest: {name!r}")
            client.fget_object(bucket, f"{version}/{name}", str(tmp / name))
        verify_bundle(tmp)
        try:
            os.replace(tmp, dest)
        except OSError:
            if not dest.exists():  # another process may have won the race with an identical bundle
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
