"""Recognition: decision rule, calibration, geo filter, verification, model bundle, recognizer and evaluator.

Free of torch and faiss: the network lives in :mod:`shared.model`, the index in :mod:`shared.index`.
"""

from shared.recognition.build import build_bundle_from_embeddings, calibrate_thresholds, pick_references
from shared.recognition.bundle import (
    Bundle,
    BundleIntegrityError,
    LandmarkInfo,
    download_bundle,
    load_bundle,
    save_bundle,
    upload_bundle,
)
from shared.recognition.calibration import calibrate_threshold
from shared.recognition.decision import (
    METHOD_GEO,
    METHOD_NONE,
    METHOD_VERIFIED,
    DecisionParams,
    Match,
    RecognitionResult,
    Thresholds,
    decide,
)
from shared.recognition.recognizer import Recognizer

__all__ = [
    "METHOD_GEO",
    "METHOD_NONE",
    "METHOD_VERIFIED",
    "Bundle",
    "BundleIntegrityError",
    "DecisionParams",
    "LandmarkInfo",
    "Match",
    "RecognitionResult",
    "Recognizer",
    "Thresholds",
    "build_bundle_from_embeddings",
    "calibrate_threshold",
    "calibrate_thresholds",
    "decide",
    "download_bundle",
    "load_bundle",
    "pick_references",
    "save_bundle",
    "upload_bundle",
]
