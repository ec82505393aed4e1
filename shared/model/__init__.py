"""The embedding network: backbone -> pool -> L2 -> head -> L2, loaded lazily once per process.

torch is imported only inside this package (and nowhere else in the project).
"""

from shared.model.embedder import Embedder, EmbedderConfig, InferenceModel, resolve_device

__all__ = ["Embedder", "EmbedderConfig", "InferenceModel", "resolve_device"]
