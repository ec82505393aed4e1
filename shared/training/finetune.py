"""``finetune`` mode: train the last backbone blocks together with the head, on augmented photos.

Random resized crops, horizontal flips and colour jitter (torchvision ``transforms.v2``); the earlier blocks stay
frozen in eval mode (their BatchNorm statistics too), so a small gallery cannot wreck the ImageNet features. Runs
on a GPU when the device says so and on the CPU otherwise (slow: minutes per epoch for a thousand photos).

``cached_views`` trades fresh augmentation for speed on a CPU: each photo's plain view and that many augmented
views go through the frozen blocks once, and every epoch then runs only the tuned blocks on one of the cached
views (about 25 s an epoch instead of 4 min for a thousand photos at 384 px on 2 cores; the cache is held in
memory as float16, ~60 KB per view there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2

from shared.model import functional as LF
from shared.model.backbones import backbone_spec, build_backbone
from shared.model.embedder import EmbedderConfig, resolve_device
from shared.model.pooling import build_pooling
from shared.model.preprocess import resize, to_tensor
from shared.training.trainer import Progress, TrainConfig, TrainingData, TrainResult, fit


def augmentation(size: int) -> Callable[[Image.Image], Image.Image]:
    """The training-time view of a photo: a random crop of 40-100% of it, maybe mirrored, colours jittered."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.4, 1.0), ratio=(0.75, 1.333)),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.2, hue=0.02),
        ]
    )


def trainable_blocks(backbone: nn.Module, n: int) -> list[nn.Module]:
    """The last ``n`` blocks of a backbone (EfficientNet-Lite: MBConv blocks + head conv; ResNet: stages)."""
    net = getattr(backbone, "net", None)
    if net is not None and hasattr(net, "_blocks"):
        return [*list(net._blocks)[-n:], net._conv_head, net._bn1]
    return list(backbone.children())[-n:]


def split_backbone(backbone: nn.Module, n: int) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Module]:
    """``(front, back)`` with ``back(front(x)) == backbone(x)``: the frozen blocks and the last ``n`` (the
    :func:`trainable_blocks`), so the front's output can be computed once and cached."""
    net = getattr(backbone, "net", None)
    if net is not None and hasattr(net, "_blocks"):
        count = len(net._blocks)
        rate = net._global_params.drop_connect_rate or 0.0

        def run_blocks(x: torch.Tensor, first: int, last: int) -> torch.Tensor:
            for idx in range(first, last):  # stochastic depth grows with depth, as extract_features scales it
                x = net._blocks[idx](x, drop_connect_rate=rate * idx / count)
            return x

        def front(x: torch.Tensor) -> torch.Tensor:
            return run_blocks(net._swish(net._bn0(net._conv_stem(x))), 0, count - n)

        class _Back(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return net._swish(net._bn1(net._conv_head(run_blocks(x, count - n, count))))

        return front, _Back()
    children = list(backbone.children())
    return nn.Sequential(*children[:-n]), nn.Sequential(*children[-n:])


def cache_views(
    load_image: Callable[[int], Image.Image],
    count: int,
    front: Callable[[torch.Tensor], torch.Tensor],
    views: int,
    size: int,
    spec: Any,
    device: torch.device,
    seed: int = 0,
) -> torch.Tensor:
    """The front's output for every sample's plain view (index 0) and ``views`` augmented ones: a
    ``count x (views + 1) x C x h x w`` float16 tensor on the CPU. The views are drawn from ``seed`` (the same
    photos give the same cache)."""
    augment = augmentation(size)
    cache: torch.Tensor | None = None
    # no_grad, not inference_mode: the cache feeds the training loop, outside that mode
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in range(count):
            image = load_image(i).convert("RGB")
            shown = [resize(image, size, "square")] + [augment(image) for _ in range(views)]
            out = front(to_tensor(shown, spec.mean, spec.std).to(device)).to("cpu", torch.float16)
            if cache is None:
                cache = torch.empty((count, views + 1, *out.shape[1:]), dtype=torch.float16)
            cache[i] = out
    if cache is None:
        raise ValueError("no photos to tune on")
    return cache


@dataclass
class FinetuneResult:
    train: TrainResult
    backbone_state: dict[str, torch.Tensor]  # the whole feature extractor (frozen parts included)
    pooling_state: dict[str, torch.Tensor]
    tuned_keys: tuple[str, ...] = ()  # backbone_state keys of the tuned blocks (parameters and BatchNorm buffers)

    @property
    def tuned_state(self) -> dict[str, torch.Tensor]:
        """Only what tuning changed, keyed as in :class:`shared.model.network.RetrievalNet` (``backbone.*``,
        ``pool.*``): what a bundle's ``backbone.pt`` stores and :class:`shared.model.Embedder` loads over the
        packaged ImageNet weights (a few MB instead of the whole backbone)."""
        out = {f"backbone.{k}": self.backbone_state[k] for k in self.tuned_keys}
        out.update({f"pool.{k}": v for k, v in self.pooling_state.items()})
        return out


def tuned_keys(backbone: nn.Module, parts: Sequence[nn.Module]) -> tuple[str, ...]:
    """State-dict keys of ``backbone`` that belong to the modules in ``parts``."""
    prefixes = tuple(f"{name}." for name, m in backbone.named_modules() if any(m is p for p in parts))
    return tuple(k for k in backbone.state_dict() if k.startswith(prefixes))


def finetune(
    load_image: Callable[[int], Image.Image],
    data: TrainingData,
    config: TrainConfig,
    embedder_config: EmbedderConfig,
    *,
    blocks: int = 2,
    device: str = "auto",
    weights_path: Path | None = None,
    pretrained: bool = True,
    progress: Progress | None = None,
    cached_views: int = 0,
) -> FinetuneResult:
    """Fine-tune the last ``blocks`` backbone blocks, the pooling (GeM's p), the head and the classifier.

    ``load_image(i)`` returns sample ``i``'s decoded photo (called once per sample and epoch, or once in all with
    ``cached_views``; decode small).
    """
    dev = resolve_device(device)
    spec = backbone_spec(embedder_config.backbone)
    backbone = build_backbone(embedder_config.backbone, weights_path, pretrained=pretrained).to(dev)
    pool = build_pooling(embedder_config.pooling).to(dev)
    for p in backbone.parameters():
        p.requires_grad_(False)
    train_parts = trainable_blocks(backbone, blocks)
    params: list[nn.Parameter] = [*pool.parameters()]
    for part in train_parts:
        for p in part.parameters():
            p.requires_grad_(True)
            params.append(p)
    augment = augmentation(embedder_config.image_size)

    class _Frozen(nn.Module):
        """Keeps the frozen backbone in eval mode whenever the loop switches modules to training."""

        def train(self, mode: bool = True) -> _Frozen:
            backbone.eval()
            for part in train_parts:
                part.train(mode)
            pool.train(mode)
            return self

    if cached_views > 0:
        front, back = split_backbone(backbone, blocks)
        backbone.eval()  # frozen BatchNorm statistics for the cached views too
        cache = cache_views(
            load_image, len(data.labels), front, cached_views, embedder_config.image_size, spec, dev, config.seed
        )
        rng = np.random.default_rng(config.seed)

        def batch(idx: np.ndarray, training: bool) -> torch.Tensor:
            view = rng.integers(1, cached_views + 1, len(idx)) if training else np.zeros(len(idx), np.int64)
            x = cache[torch.as_tensor(idx), torch.as_tensor(view)].to(dev, torch.float32)
            return LF.l2n(pool(back(x)).flatten(1))

    else:

        def batch(idx: np.ndarray, training: bool) -> torch.Tensor:
            images = [load_image(int(i)).convert("RGB") for i in idx]
            if training:
                images = [augment(im) for im in images]
            else:
                images = [resize(im, embedder_config.image_size, "square") for im in images]
            x = to_tensor(images, spec.mean, spec.std).to(dev)
            return LF.l2n(pool(backbone(x)).flatten(1))

    result = fit(
        data,
        batch,
        spec.out_dim,
        config,
        backbone_params=params,
        train_modules=[_Frozen()],
        progress=progress,
        device=dev,
    )
    backbone.eval()
    return FinetuneResult(
        result,
        {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()},
        {k: v.detach().cpu().clone() for k, v in pool.state_dict().items()},
        tuned_keys(backbone, train_parts),
    )


def pooled_features(
    images: Sequence[Image.Image],
    embedder_config: EmbedderConfig,
    backbone_state: dict[str, Any],
    pooling_state: dict[str, Any],
    *,
    device: str = "auto",
    batch_size: int = 16,
) -> np.ndarray:
    """Pooled, L2-normalised features with a fine-tuned backbone (the head's input), for calibration and eval."""
    dev = resolve_device(device)
    spec = backbone_spec(embedder_config.backbone)
    backbone = build_backbone(embedder_config.backbone, pretrained=False)
    backbone.load_state_dict(backbone_state)
    pool = build_pooling(embedder_config.pooling)
    pool.load_state_dict(pooling_state)
    backbone, pool = backbone.to(dev).eval(), pool.to(dev).eval()
    out = []
    with torch.inference_mode():
        for im in images:  # one at a time: "long" resizing keeps each photo's aspect ratio
            r = resize(im, embedder_config.image_size, embedder_config.resize)
            x = to_tensor([r], spec.mean, spec.std).to(dev)
            out.append(LF.l2n(pool(backbone(x)).flatten(1)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, spec.out_dim), np.float32)
