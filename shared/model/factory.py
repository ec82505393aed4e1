"""One road from settings to a running network: every embedder the project runs is made here.

The CLI, tasks, benches and the recognizer ask :func:`embedder_from_settings` (a network for the gallery and the
evaluator, made once per process) or :func:`bundle_embedder` (a bundle's own network); none assembles
``EmbedderConfig(...)`` by hand, so ``model build``, cleaning, training and recognition embed with the same
backbone, size and engine.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.model.embedder import Embedder, EmbedderConfig

if TYPE_CHECKING:
    from shared.settings import RecognitionSettings

_lock = threading.Lock()
_embedders: dict[tuple[Any, ...], Embedder] = {}


def config_from_settings(rec: RecognitionSettings, **overrides: Any) -> EmbedderConfig:
    """The network the settings describe (``overrides``: evaluation options such as another image size)."""
    config = EmbedderConfig(
        backbone=rec.backbone, pooling=rec.pooling, image_size=rec.image_size, decode_fit=rec.decode_fit
    )
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


def onnx_cache_dir(rec: RecognitionSettings) -> Path:
    """Where exported networks are kept (``recognition.onnx_cache``; the system temp folder when unset)."""
    return rec.onnx_cache or Path(tempfile.gettempdir()) / "landmarks-onnx"


def embedder_from_settings(
    rec: RecognitionSettings,
    *,
    config: EmbedderConfig | None = None,
    threads: int | None = None,
    classifier: bool = False,
    batch_size: int | None = None,
    cached: bool = True,
    **kwargs: Any,
) -> Embedder:
    """The embedder of the settings (``config`` defaults to :func:`config_from_settings`), made once per process
    for each distinct set of arguments (``cached=False``: a fresh one); the network loads on first use.
    ``kwargs`` go to :class:`Embedder` (``head_state``, ``backbone_state``, ``pretrained``, ``precision``, ...)."""
    config = config or config_from_settings(rec)
    args: dict[str, Any] = {
        "device": rec.device,
        "batch_size": batch_size or rec.batch_size,
        "weights_path": rec.weights_path,
        "threads": threads,
        "classifier": classifier,
        "precision": rec.precision,
        "engine": rec.engine,
        "onnx_cache": onnx_cache_dir(rec),
        **kwargs,
    }
    if not cached or any(isinstance(v, dict) for v in kwargs.values()):  # tensors: not a cache key
        return Embedder(config, **args)
    key = (config, *sorted((k, str(v)) for k, v in args.items()))
    with _lock:
        if key not in _embedders:
            _embedders[key] = Embedder(config, **args)
        return _embedders[key]


def bundle_embedder(
    rec: RecognitionSettings,
    model: dict[str, Any],
    *,
    head_state: dict[str, Any] | None = None,
    backbone_state: dict[str, Any] | None = None,
    onnx_path: Path | None = None,
    **kwargs: Any,
) -> Embedder:
    """A bundle's network (its manifest's ``model``, head and tuned tensors) on the settings' device and engine;
    its own ONNX graph (``onnx_path``) when it carries one, else the export cached by the network's hash."""
    return embedder_from_settings(
        rec,
        config=EmbedderConfig.from_dict(model),
        cached=False,
        head_state=head_state,
        backbone_state=backbone_state,
        onnx_path=onnx_path,
        **kwargs,
    )


def decode_side(config: EmbedderConfig) -> int:
    """The smallest side a photo is decoded at for ``config`` (its largest test-time scale included), on the side
    ``shared.imaging.fit_for_resize(config.resize, config.decode_fit)`` names (the shorter one by default)."""
    return int(round(config.image_size * max(config.scales)))
