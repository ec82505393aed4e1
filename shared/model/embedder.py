"""Photos -> N x D float32 embeddings, with the model loaded lazily once per process.

Immich's ``InferenceModel`` pattern: the base class owns the lock and the load-once logic, subclasses write
``_load`` and ``_predict``. Loading is deferred to the first call so a Celery parent never touches CUDA before fork
and a child starts cheaply.
"""

from __future__ import annotations

import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from shared.model import functional as LF
from shared.model.backbones import IMAGENET_CLASSES, backbone_spec, build_backbone, build_classifier
from shared.model.head import build_head, head_output_dim
from shared.model.masking import Region
from shared.model.network import RetrievalNet
from shared.model.onnx_export import cached_onnx, network_digest
from shared.model.ort_engine import OrtNetwork, to_input
from shared.model.pooling import build_pooling
from shared.model.preprocess import canvas_sides, letterbox, normalize, resize, to_tensor


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
    # The side photos are decoded on for this network (shared.imaging.fit_for_resize); bundles from before it
    # have none and were built from the shorter side, the default.
    decode_fit: str = "short"

    def key(self) -> str:
        scales = "-".join(f"{s:g}" for s in self.scales)
        fit = "" if self.decode_fit == "short" else f"_d{self.decode_fit}"
        return f"{self.backbone}_{self.pooling}_{self.image_size}_{self.resize}_s{scales}_f{int(self.flip)}{fit}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "scales": list(self.scales)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbedderConfig:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if "scales" in known:
            known["scales"] = tuple(float(s) for s in known["scales"])
        return cls(**known)


# How callers that cache rows decode the photos they embed: ``decode_side`` pixels on the side
# ``shared.imaging.fit_for_resize(resize, decode_fit)`` names (the config's key says which). Part of
# :meth:`Embedder.cache_key`: change it whenever that decode changes, so rows embedded from the old pixels are never
# read back ("fit" rows, 2026-12-05, were all decoded on the longer side).
DECODE_KEY = "fit2"

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The backbone's dtype: ``auto`` is fp16 on CUDA (embeddings within 0.9999 cosine of fp32: the demo photos on
    an H200, the dev corpus on a CPU) and fp32 elsewhere; ``fp32``, ``fp16`` and ``bf16`` are taken as asked."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}; known: auto, {', '.join(PRECISIONS)}") from None


CPU_PASS_SIZE = 1
ENGINES = ("auto", "onnxruntime", "torch")


def resolve_engine(engine: str, device: torch.device, precision: str = "auto") -> str:
    """``auto`` -> ONNX Runtime on a CPU in fp32 (about 3x faster than torch eager there), torch elsewhere
    (CUDA, fp16/bf16); ``onnxruntime`` is refused on a GPU (only its CPU provider is installed)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    cpu_fp32 = device.type == "cpu" and precision in ("auto", "fp32")
    if engine == "auto":
        return "onnxruntime" if cpu_fp32 else "torch"
    if engine == "onnxruntime" and not cpu_fp32:
        raise ValueError(f"engine onnxruntime runs fp32 on the CPU only, not {device.type} in {precision}")
    return engine


def plan_batches(sizes: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Indices of the photos of each forward pass: in order of size, ``batch_size`` at a time, so a GPU
    micro-batch of mixed portrait and landscape photos is ONE pass (letterboxed to its largest photo) and a long
    run of photos pads little."""
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def batch_rows(n: int, batch_size: int) -> int:
    """Rows of a CUDA pass holding ``n`` photos: the next power of two (at most ``batch_size``), so a worker whose
    micro-batches come in every size meets few shapes, each benchmarked once by cuDNN."""
    return max(n, min(batch_size, 1 << max(0, n - 1).bit_length()))


class Embedder(InferenceModel):
    """Embed PIL images in batches: one forward pass per ``batch_size`` photos, photos of different shapes
    letterboxed into one canvas with the padding masked (each embedding is the one the photo gets alone).

    ``classifier=True`` also loads the backbone's ImageNet classifier so :meth:`embed_with_logits` can return
    class logits read from the same forward pass (for scene tags); it is off unless asked for.

    ``backbone_state`` (a fine-tuned bundle's ``backbone.pt``) holds only the tuned tensors, keyed as in
    :class:`RetrievalNet`'s state dict (``backbone.*``, ``pool.*``); they are loaded over the packaged ImageNet
    weights, which must be the ones the tuning started from.

    On a GPU: the backbone runs in ``precision`` (auto: fp16) with channels-last tensors and cuDNN's benchmarked
    algorithms; photos travel as uint8 through pinned memory and are normalised on the device; passes come in few
    shapes (``bucket_shapes``: three canvases, power-of-two rows) so each is benchmarked once. Pooling, head and
    classifier stay in fp32. ``preprocess_threads`` resizes a batch's photos in parallel (Pillow releases the
    GIL), which a GPU needs to be fed. ``pass_size``, ``bucket_shapes`` and ``channels_last`` default by device
    (None) and are set explicitly only to run the GPU's batching on a CPU (tests) or to measure it.

    ``engine`` (:func:`resolve_engine`): ``torch`` runs the network above; ``onnxruntime`` (``auto`` on a CPU in
    fp32) runs its ONNX graph, one photo per run at its own size, 3-5x faster on a CPU, embeddings within 0.9999
    cosine: ``onnx_path`` (a bundle's ``network.onnx``) or an export made once into ``onnx_cache`` under the
    network's hash (:meth:`network_digest`). The torch network is then never built unless an explanation
    (:meth:`similarity_map`) asks for it.
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
        precision: str = "auto",
        preprocess_threads: int = 1,
        pass_size: int | None = None,
        bucket_shapes: bool | None = None,
        channels_last: bool | None = None,
        engine: str = "torch",
        onnx_path: Path | None = None,
        onnx_cache: Path | None = None,
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
        self.precision = precision
        self.preprocess_threads = max(1, preprocess_threads)
        self._pass_size = pass_size
        self._bucket_shapes = bucket_shapes
        self._channels_last = channels_last
        self.engine_name = engine
        self.engine = engine  # resolved on load
        self.onnx_path = onnx_path
        self.onnx_cache = onnx_cache
        self._ort: OrtNetwork | None = None
        self._head: torch.nn.Module | None = None
        self.net: RetrievalNet | None = None
        self.device: torch.device | None = None
        self.dtype: torch.dtype = torch.float32
        self.channels_last = False
        self.bucket_shapes = False
        self.dim: int = self.spec.out_dim
        self._pool: ThreadPoolExecutor | None = None

    def _load(self) -> None:
        self.device = resolve_device(self.device_name)
        self.engine = resolve_engine(self.engine_name, self.device, self.precision)
        if self.engine == "onnxruntime":
            self._ort = OrtNetwork(self.onnx_model_path(), threads=self.threads)
            self.dim = head_output_dim(self.spec.out_dim, self.head_state)
            return
        torch.set_flush_denormal(True)  # denormals make CPU inference ~10x slower
        if self.threads:
            torch.set_num_threads(self.threads)
        self.dtype = resolve_precision(self.precision, self.device)
        cuda = self.device.type == "cuda"
        self.channels_last = cuda if self._channels_last is None else self._channels_last
        self.bucket_shapes = cuda if self._bucket_shapes is None else self._bucket_shapes
        self.net = self._build_net(classifier=self.want_classifier)
        self.dim = head_output_dim(self.spec.out_dim, self.head_state)
        self.net.eval().to(self.device)
        self.net.backbone.to(self.dtype)
        if self.channels_last:
            self.net.backbone.to(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # shapes repeat: few canvases, power-of-two batch rows

    def _build_net(self, *, classifier: bool) -> RetrievalNet:
        """The torch network on the CPU in fp32: packaged weights, the tuned tensors over them, the head."""
        backbone = build_backbone(self.config.backbone, self.weights_path, pretrained=self.pretrained)
        head, _ = build_head(self.spec.out_dim, self.head_state)
        fc = (
            build_classifier(self.config.backbone, self.weights_path, pretrained=self.pretrained)
            if classifier
            else None
        )
        net = RetrievalNet(backbone, build_pooling(self.config.pooling), head, fc)
        if self.backbone_state:
            load_tuned_state(net, self.backbone_state)
        return net.eval()

    def network_digest(self) -> str:
        """What makes this network (config, weights, tuned tensors, head): the key of its cached ONNX export."""
        weights = self.weights_path
        parts = {  # not the input size, scales or flips: the graph takes any size, one view at a time
            "backbone": self.config.backbone,
            "pooling": self.config.pooling,
            "pretrained": self.pretrained,
            "weights": None if weights is None else (str(weights), Path(weights).stat().st_size),
        }
        return network_digest(parts, {"head": self.head_state, "backbone": self.backbone_state})

    def onnx_model_path(self) -> Path:
        """The ONNX graph of this network: ``onnx_path`` (a bundle's own) or the cache's export, made on first
        use (the classifier included whenever the weights have one, so one export serves every caller)."""
        if self.onnx_path is not None:
            return Path(self.onnx_path)
        cache = self.onnx_cache or Path(tempfile.gettempdir()) / "landmarks-onnx"
        return cached_onnx(cache, self.network_digest(), lambda: self._build_net(classifier=True))

    def cache_key(self) -> str:
        """The config's key, plus the engine when it is not torch and the decode: folders of cached embeddings are
        named by it, so rows embedded by one engine, or from photos decoded another way, are never read back."""
        engine = resolve_engine(self.engine_name, resolve_device(self.device_name), self.precision)
        key = self.config.key() if engine == "torch" else f"{self.config.key()}_{engine}"
        return f"{key}_{DECODE_KEY}"

    def with_states(
        self,
        *,
        head_state: dict[str, Any] | None = None,
        backbone_state: dict[str, Any] | None = None,
        **changes: Any,
    ) -> Embedder:
        """This embedder's network (config, weights, engine, cache) with another head or tuned tensors;
        ``changes`` override constructor arguments (``device``, ``weights_path``, ...)."""
        args: dict[str, Any] = {
            "device": self.device_name,
            "batch_size": self.batch_size,
            "weights_path": self.weights_path,
            "pretrained": self.pretrained,
            "threads": self.threads,
            "classifier": self.want_classifier,
            "precision": self.precision,
            "engine": self.engine_name,
            "onnx_cache": self.onnx_cache,
            **changes,
        }
        return Embedder(self.config, head_state=head_state, backbone_state=backbone_state, **args)

    def export_onnx(
        self, head_state: dict[str, Any] | None = None, backbone_state: dict[str, Any] | None = None
    ) -> Path:
        """The ONNX graph of this network with ``head_state`` and ``backbone_state`` (a bundle's), exported into
        the cache unless it is there already: what a built bundle carries."""
        return self.with_states(head_state=head_state, backbone_state=backbone_state).onnx_model_path()

    @property
    def pass_size(self) -> int:
        """Photos per forward pass: the constructor's ``pass_size``, or ``batch_size`` on a GPU and one on a CPU,
        where passes of 16 photos measured 98-166 ms per photo against 32 ms one at a time (their large
        intermediate tensors are page-faulted in afresh on every pass)."""
        if self._ort is not None:
            return CPU_PASS_SIZE
        if self._pass_size is not None:
            return max(1, self._pass_size)
        return self.batch_size if self.device is not None and self.device.type == "cuda" else CPU_PASS_SIZE

    @property
    def has_classifier(self) -> bool:
        """Whether :meth:`embed_with_logits` can give logits (loads the network)."""
        self.load()
        if self._ort is not None:
            return self.want_classifier and self._ort.has_classifier
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
        if not images:
            empty = np.zeros((0, IMAGENET_CLASSES), dtype=np.float32) if logits else None
            return np.zeros((0, self.dim), dtype=np.float32), empty
        if self._ort is not None:
            return self._run_ort(self._ort, images, logits=logits)
        assert self.net is not None and self.device is not None
        cfg = self.config
        acc = torch.zeros((len(images), self.spec.out_dim), dtype=torch.float32)
        pooled = torch.zeros_like(acc) if logits else None
        for scale in cfg.scales:
            size = max(32, round(cfg.image_size * scale))
            resized = self._map(lambda im, size=size: resize(im, size, cfg.resize), images)
            for chunk in plan_batches([r.size[::-1] for r in resized], self.pass_size):
                idx = torch.tensor(chunk)
                d, p = self._descriptors([resized[i] for i in chunk], pooled=pooled is not None)
                acc[idx] += d
                if pooled is not None and p is not None:
                    pooled[idx] += p
        with torch.inference_mode():
            out = self.net.project(LF.l2n(acc).to(self.device)).float().cpu().numpy()
            if pooled is None:
                return out, None
            passes = len(cfg.scales) * (2 if cfg.flip else 1)
            return out, self.net.classify((pooled / passes).to(self.device)).float().cpu().numpy()

    def _run_ort(
        self, ort: OrtNetwork, images: list[Image.Image], *, logits: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """ONNX Runtime, one photo per run at its own size: the graph's embedding and logits straight when one
        pass makes the embedding; with test-time scales or flips, descriptors summed and projected by the head
        (logits averaged: the classifier is linear, so that equals classifying the averaged features)."""
        cfg = self.config
        single = len(cfg.scales) == 1 and cfg.scales[0] == 1.0 and not cfg.flip
        names = ["embedding" if single else "descriptor", *(["logits"] if logits else [])]
        acc: list[np.ndarray] = [np.zeros(0)] * len(images)
        acc_logits: list[np.ndarray] = [np.zeros(0)] * len(images)
        for scale in cfg.scales:
            size = max(32, round(cfg.image_size * scale))
            resized = self._map(lambda im, size=size: resize(im, size, cfg.resize), images)
            for i, im in enumerate(resized):
                for view in [im, ImageOps.mirror(im)] if cfg.flip else [im]:
                    out = ort.run(to_input(view, self.spec.mean, self.spec.std), names)
                    acc[i] = out[0][0] if acc[i].size == 0 else acc[i] + out[0][0]
                    if logits:
                        acc_logits[i] = out[1][0] if acc_logits[i].size == 0 else acc_logits[i] + out[1][0]
        stacked = np.stack(acc).astype(np.float32)
        if not single:
            if self._head is None:
                self._head = build_head(self.spec.out_dim, self.head_state)[0].eval()
            with torch.inference_mode():
                stacked = LF.l2n(self._head(LF.l2n(torch.from_numpy(stacked)))).numpy()
        if not logits:
            return stacked, None
        passes = len(cfg.scales) * (2 if cfg.flip else 1)
        return stacked, (np.stack(acc_logits) / passes).astype(np.float32)

    def _map(self, fn: Callable[[Image.Image], Image.Image], images: list[Image.Image]) -> list[Image.Image]:
        """``fn`` over the images, on the preprocessing threads when there are several."""
        if self.preprocess_threads <= 1 or len(images) <= 1:
            return [fn(im) for im in images]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.preprocess_threads, thread_name_prefix="embed-prep")
        return list(self._pool.map(fn, images))

    def _batch(self, images: list[Image.Image]) -> tuple[torch.Tensor, list[Region] | None]:
        """Photos -> one normalised input on the device (letterboxed when sizes differ) and each photo's region
        when the batch is padded (None when every photo fills the canvas)."""
        assert self.device is not None
        rows, sides = len(images), ()
        if self.bucket_shapes:  # few shapes: cuDNN benchmarks each once
            rows = batch_rows(len(images), self.pass_size)
            sides = canvas_sides(max(max(im.size) for im in images), self.spec.stride)
        spec = self.spec
        pixels, regions = letterbox(images, padding=spec.padding, stride=spec.stride, rows=rows, sides=sides)
        tensor = torch.from_numpy(pixels)
        if self.device.type == "cuda":
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        x = normalize(tensor, self.spec.mean, self.spec.std, dtype=self.dtype, channels_last=self.channels_last)
        full = (0, 0, pixels.shape[1], pixels.shape[2])
        return x, (regions if any(r != full for r in regions) else None)

    def _descriptors(
        self, images: list[Image.Image], *, pooled: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pooled descriptors (summed over the flip) and, when asked, the average-pooled classifier input."""
        assert self.net is not None
        n = len(images)
        views = [images, [ImageOps.mirror(im) for im in images]] if self.config.flip else [images]
        d_sum: torch.Tensor | None = None
        p_sum: torch.Tensor | None = None
        with torch.inference_mode():
            for view in views:
                x, regions = self._batch(view)
                if pooled:
                    d, p = self.net.descriptor_and_pooled(x, regions)
                    p_sum = p if p_sum is None else p_sum + p
                else:
                    d = self.net.descriptor(x, regions)
                d_sum = d if d_sum is None else d_sum + d
        assert d_sum is not None
        return d_sum[:n].float().cpu(), None if p_sum is None else p_sum[:n].float().cpu()

    def similarity_map(self, image: Image.Image, target: np.ndarray) -> np.ndarray:
        """h x w cosine similarity of each spatial feature (before pooling) to ``target`` (a D vector).

        A class-activation style explanation: where in the photo the features look like the matched centroid.
        """
        self.load()
        if self.net is None:  # the ONNX Runtime engine: explanations are rare, so the torch network loads for them
            with self._lock:
                if self.net is None:
                    self.net = self._build_net(classifier=False).to(self.device)
        r = resize(image, self.config.image_size, self.config.resize)
        x = to_tensor([r], self.spec.mean, self.spec.std).to(self.device, self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            fmap = self.net.features(x)[0].float()  # C x h x w
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
