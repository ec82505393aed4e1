"""ONNX Runtime on the CPU: the exported network (:mod:`shared.model.onnx_export`) run one photo at a time.

One photo per run, at its own size: no letterbox canvas and so no padding masks (which live in torch forward
hooks and are not in the graph). On a CPU a batch costs its photos' time anyway (``Embedder.pass_size``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from shared.model.onnx_export import INPUT


def session_options(threads: int | None) -> object:
    """Intra-op threads as asked (a worker process gets its share of the cores; None: ORT's default, every core),
    one inter-op thread, and denormals flushed to zero as torch's ``set_flush_denormal`` does."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    return options


def to_input(image: Image.Image, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """An RGB photo -> the normalised 1 x 3 x H x W float32 input (the values of ``preprocess.normalize``)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    scale = np.asarray([1.0 / (255.0 * v) for v in std], dtype=np.float32)
    shift = np.asarray([-m / v for m, v in zip(mean, std, strict=True)], dtype=np.float32)
    return np.ascontiguousarray((pixels * scale + shift).transpose(2, 0, 1)[None])


class OrtNetwork:
    """An ONNX Runtime session over one exported network."""

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(self.path), session_options(threads), providers=["CPUExecutionProvider"]
        )
        self.outputs = [o.name for o in self.session.get_outputs()]

    @property
    def has_classifier(self) -> bool:
        return "logits" in self.outputs

    def run(self, x: np.ndarray, names: Sequence[str]) -> list[np.ndarray]:
        """The named outputs for input ``x`` (N x 3 x H x W float32)."""
        return self.session.run(list(names), {INPUT: x})
