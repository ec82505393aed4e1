"""Photos -> N x D float32 embeddings, with the model loaded lazily once per process.

Immich's ``InferenceModel`` pattern: the base class owns the lock and the load-once logic, subclasses write
``_load`` and ``_predict``. Loading is deferred to the first call so a Celery parent never touches CUDA before fork
and a child starts cheaply.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from shared.model import functional as LF
from shared.model.backbones import IMAGENET_CLASSES, backbone_spec, build_backbone, build_classifier
from shared.model.head import build_head, head_output_dim
from shared.model.network import RetrievalNet
from shared.model.pooling import build_pooling
from shared.model.preprocess import resize, to_tensor


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to :class:`torch.device`."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class InferenceModel(ABC):
    """Load once, under a lock, on first use; then predict."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def predict(self, inputs: Any) -> Any:
        self.load()
        return self._predict(inputs)

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _predict(self, inputs: Any) -> Any: ...


@dataclass(frozen=True)
class EmbedderConfig:
    """Everything that changes the embedding; stored in the model bundle and used as the cache key."""

    backbone: str = "efficientnet_lite2"
    pooling: str = "gem"
    image_size: int = 384  # long side; Lite2 is native 260, but 384 lifts dev landmark accuracy 0.79 -> 0.89
    resize: str = "long"
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False

    def key(self) -> str:
        scales = "-".join(f"{s:g}" for s in self.scales)
        return f"{self.backbone}_{self.pooling}_{self.image_size}_{self.resize}_s{scales}_f{int(self.flip)}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "scales": list(self.scales)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbedderConfig:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if "scales" in known:
            known["scales"] = tuple(float(s) for s in known["scales"])
        return cls(**known)


class Embedder(InferenceModel):
    """Embed PIL images in batches; same-sized inputs share a forward pass.

    ``classifier=True`` also loads the backbone's ImageNet classifier so :meth:`embed_with_logits` can return
    class logits read from the same forward pass (for scene tags); it is off unless asked for.

    ``backbone_state`` (a fine-tuned bundle's ``backbone.pt``) holds only the tuned tensors, keyed as in
    :class:`RetrievalNet`'s state dict (``backbone.*``, ``pool.*``); they are loaded over the packaged ImageNet
    weights, which must be the ones the tuning started from.
    """

    def __init__(
        self,
        config: EmbedderConfig | None = None,
        *,
        device: str = "auto",
        batch_size: int = 16,
        weights_path: Path | None = None,
        head_state: dict[str, Any] | None = None,
        backbone_state: dict[str, Any] | None = None,
        pretrained: bool = True,
        threads: int | None = None,
        classifier: bool = False,
    ) -> None:
        super().__init__()
        self.want_classifier = classifier
        self.config = config or EmbedderConfig()
        self.spec = backbone_spec(self.config.backbone)
        self.device_name = device
        self.batch_size = max(1, batch_size)
        self.weights_path = weights_path
        self.head_state = head_state
        self.backbone_state = backbone_state
        self.pretrained = pretrained
        self.threads = threads
        self.net: RetrievalNet | None = None
        self.device: torch.device | None = None
        self.dim: int = self.spec.out_dim

    def _load(self) -> None:
        torch.set_flush_denormal(True)  # denormals make CPU inference ~10x slower
        if self.threads:
            torch.set_num_threads(self.threads)
        self.device = resolve_device(self.device_name)
        backbone = build_backbone(self.config.backbone, self.weights_path, pretrained=self.pretrained)
        head, self.dim = build_head(self.spec.out_dim, self.head_state)
        classifier = None
        if self.want_classifier:
            classifier = build_classifier(self.config.backbone, self.weights_path, pretrained=self.pretrained)
        self.net = RetrievalNet(backbone, build_pooling(self.config.pooling), head, classifier)
        if self.backbone_state:
            load_tuned_state(self.net, self.backbone_state)
        self.net.eval().to(self.device)

    @property
    def has_classifier(self) -> bool:
        """Whether :meth:`embed_with_logits` can give logits (loads the network)."""
        self.load()
        return self.net is not None and self.net.classifier is not None

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """N x D float32, rows L2-normalised."""
        return self.predict(list(images))

    def embed_with_logits(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings (N x D) and ImageNet logits (N x 1000, averaged over the test-time scales and flips) from
        one forward pass per scale; needs ``classifier=True``."""
        self.load()
        if not self.has_classifier:
            raise RuntimeError(f"no ImageNet classifier for backbone {self.config.backbone} (classifier=True?)")
        out, logits = self._run(list(images), logits=True)
        assert logits is not None
        return out, logits

    def _predict(self, images: list[Image.Image]) -> np.ndarray:
        return self._run(images, logits=False)[0]

    def _run(self, images: list[Image.Image], *, logits: bool) -> tuple[np.ndarray, np.ndarray | None]:
        assert self.net is not None and self.device is not None
        if not images:
            empty = np.zeros((0, IMAGENET_CLASSES), dtype=np.float32) if logits else None
            return np.zeros((0, self.dim), dtype=np.float32), empty
        cfg = self.config
        acc = torch.zeros((len(images), self.spec.out_dim), dtype=torch.float32)
        pooled = torch.zeros_like(acc) if logits else None
        for scale in cfg.scales:
            size = max(32, round(cfg.image_size * scale))
            groups: dict[tuple[int, int], list[tuple[int, Image.Image]]] = defaultdict(list)
            for i, im in enumerate(images):
                r = resize(im, size, cfg.resize)
                groups[r.size].append((i, r))
            for members in groups.values():
                for start in range(0, len(members), self.batch_size):
                    chunk = members[start : start + self.batch_size]
                    idx = torch.tensor([i for i, _ in chunk])
                    d, p = self._descriptors([r for _, r in chunk], pooled=pooled is not None)
                    acc[idx] += d
                    if pooled is not None and p is not None:
                        pooled[idx] += p
        with torch.inference_mode():
            out = self.net.project(LF.l2n(acc).to(self.device)).float().cpu().numpy()
            if pooled is None:
                return out, None
            passes = len(cfg.scales) * (2 if cfg.flip else 1)
            return out, self.net.classify((pooled / passes).to(self.device)).float().cpu().numpy()

    def _descriptors(
        self, images: list[Image.Image], *, pooled: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pooled descriptors (summed over the flip) and, when asked, the average-pooled classifier input."""
        assert self.net is not None
        x = to_tensor(images, self.spec.mean, self.spec.std).to(self.device)
        views = [x, torch.flip(x, dims=[3])] if self.config.flip else [x]
        d_sum: torch.Tensor | None = None
        p_sum: torch.Tensor | None = None
        with torch.inference_mode():
            for v in views:
                if pooled:
                    d, p = self.net.descriptor_and_pooled(v)
                    p_sum = p if p_sum is None else p_sum + p
                else:
                    d = self.net.descriptor(v)
                d_sum = d if d_sum is None else d_sum + d
        assert d_sum is not None
        return d_sum.float().cpu(), None if p_sum is None else p_sum.float().cpu()

    def similarity_map(self, image: Image.Image, target: np.ndarray) -> np.ndarray:
        """h x w cosine similarity of each spatial feature (before pooling) to ``target`` (a D vector).

        A class-activation style explanation: where in the photo the features look like the matched centroid.
        """
        self.load()
        assert self.net is not None
        r = resize(image, self.config.image_size, self.config.resize)
        x = to_tensor([r], self.spec.mean, self.spec.std).to(self.device)
        with torch.inference_mode():
            fmap = self.net.features(x)[0]  # C x h x w
            c, h, w = fmap.shape
            local = self.net.project(LF.l2n(fmap.reshape(c, h * w).T))
            t = torch.as_tensor(np.asarray(target, dtype=np.float32), device=local.device)
            sim = local @ t
        return sim.reshape(h, w).float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        """Metadata a checkpoint carries: architecture, input size, mean/std, output dim."""
        return {
            **self.config.to_dict(),
            "mean": list(self.spec.mean),
            "std": list(self.spec.std),
            "embedding_dim": self.dim if self.loaded else head_output_dim(self.spec.out_dim, self.head_state),
        }


TUNABLE_PARTS = ("backbone.", "pool.")


def load_tuned_state(net: RetrievalNet, state: dict[str, Any]) -> None:
    """Overwrite the network's tuned tensors with ``state``; a key the network lacks, or one outside the backbone
    and the pooling, is refused (the weights belong to another architecture, or would silently do nothing)."""
    own = net.state_dict()
    unknown = sorted(k for k in state if k not in own or not k.startswith(TUNABLE_PARTS))
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ValueError(f"backbone weights do not fit {type(net.backbone).__name__}: unknown keys {shown}")
    net.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()}, strict=False)
