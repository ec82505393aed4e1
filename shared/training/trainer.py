"""The training loop: embedding head (FC + BN, :mod:`shared.model.head`'s format) and a cosine classifier over the
landmarks plus one "no landmark" class, optionally with a region curriculum.

The loop is the same for both modes: ``features`` mode feeds cached pooled backbone features (fast: a thousand
photos train in seconds per epoch on a CPU), ``finetune`` mode (:mod:`shared.training.finetune`) feeds images
through the last backbone blocks. Separate learning rates for backbone, head, classifier and centers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.model.head import EmbeddingHead, with_raw_weight
from shared.training.curriculum import curriculum_stages, stage_mask
from shared.training.losses import CenterLoss, CosineClassifier, classification_loss


@dataclass(frozen=True)
class TrainConfig:
    """Everything that changes a training run; stored with the model's metrics."""

    loss: str = "center"  # center | arcface | cosface
    epochs: int = 30  # epochs of the final stage (all regions)
    stage_epochs: int = 3  # epochs of each earlier curriculum stage
    curriculum: bool = True
    region_order: tuple[str, ...] = ()
    embedding_dim: int = 512
    batch_size: int = 64
    lr_backbone: float = 1e-4
    lr_head: float = 1e-3
    lr_classifier: float = 1e-2
    lr_centers: float = 0.5
    center_weight: float = 0.01
    scale: float = 30.0
    margin: float = 0.3
    weight_decay: float = 1e-4
    input_dropout: float = 0.3
    label_smoothing: float = 0.0
    identity_init: bool = False  # start the head as the identity (needs embedding_dim == feature dim)
    raw_weight: float = 0.5  # the embedding keeps the raw feature beside the head's (shared.model.head.FusedHead)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "region_order": list(self.region_order)}


@dataclass(frozen=True)
class TrainingData:
    """Samples for the loop: class labels 0..L-1 are landmarks, ``L`` is "no landmark"; regions ("" for none)."""

    labels: np.ndarray
    num_landmarks: int
    regions: Sequence[str]

    @property
    def no_landmark(self) -> int:
        return self.num_landmarks

    @property
    def num_classes(self) -> int:
        return self.num_landmarks + 1


@dataclass(frozen=True)
class EpochReport:
    stage: int
    stages: int
    epoch: int
    epochs: int
    loss: float
    regions: tuple[str, ...] = ()


@dataclass
class TrainResult:
    head_state: dict[str, torch.Tensor]
    classifier_state: dict[str, torch.Tensor]
    history: list[EpochReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final_loss(self) -> float:
        return self.history[-1].loss if self.history else float("nan")


Progress = Callable[[EpochReport], None]
# (sample indices of one batch, training?) -> pooled, L2-normalised features of that batch (N x C)
BatchFeatures = Callable[[np.ndarray, bool], torch.Tensor]


def stage_plan(data: TrainingData, config: TrainConfig) -> list[tuple[tuple[str, ...], np.ndarray, int]]:
    """(regions, sample mask, epochs) per stage; one stage over everything without a curriculum."""
    everyone = np.ones(len(data.labels), dtype=bool)
    landmark_regions = [r for r, y in zip(data.regions, data.labels, strict=True) if y != data.no_landmark]
    stages = curriculum_stages(landmark_regions, config.region_order) if config.curriculum else []
    if len(stages) <= 1:
        return [(tuple(stages[0]) if stages else (), everyone, config.epochs)]
    sample_regions = [r if y != data.no_landmark else "" for r, y in zip(data.regions, data.labels, strict=True)]
    plan = [(stage, stage_mask(sample_regions, stage), config.stage_epochs) for stage in stages[:-1]]
    return [*plan, (stages[-1], everyone, config.epochs)]


def fit(
    data: TrainingData,
    batch_features: BatchFeatures,
    in_dim: int,
    config: TrainConfig,
    *,
    backbone_params: Sequence[nn.Parameter] = (),
    train_modules: Sequence[nn.Module] = (),
    progress: Progress | None = None,
    device: torch.device | None = None,
) -> TrainResult:
    """Train head + classifier (+ the given backbone parameters) on ``data``; see the module docstring."""
    import time

    t0 = time.perf_counter()
    device = device or torch.device("cpu")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    head = EmbeddingHead(in_dim, config.embedding_dim).to(device)
    if config.identity_init:
        if config.embedding_dim != in_dim:
            raise ValueError(f"identity_init needs embedding_dim == {in_dim}, got {config.embedding_dim}")
        with torch.no_grad():
            head.fc.weight.copy_(torch.eye(in_dim))
            head.fc.bias.zero_()
    classifier = CosineClassifier(
        config.embedding_dim, data.num_classes, kind=config.loss, s=config.scale, m=config.margin
    ).to(device)
    center = CenterLoss(data.num_classes, config.embedding_dim, ignore_index=data.no_landmark).to(device)
    groups = [
        {"params": list(head.parameters()), "lr": config.lr_head},
        {"params": list(classifier.parameters()), "lr": config.lr_classifier},
    ]
    if backbone_params:
        groups.append({"params": list(backbone_params), "lr": config.lr_backbone})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    center_opt = torch.optim.SGD(center.parameters(), lr=config.lr_centers)
    plan = stage_plan(data, config)
    steps = sum(e * math.ceil(int(m.sum()) / config.batch_size) for _, m, e in plan)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in groups], total_steps=max(1, steps), pct_start=0.15
    )
    labels = torch.as_tensor(np.asarray(data.labels, dtype=np.int64), device=device)
    use_center = config.loss == "center" and config.center_weight > 0
    history: list[EpochReport] = []
    for s, (regions, mask, epochs) in enumerate(plan):
        members = np.flatnonzero(mask)
        for epoch in range(epochs):
            for m in (head, classifier, *train_modules):
                m.train()
            total, seen = 0.0, 0
            order = rng.permutation(members)
            for start in range(0, len(order), config.batch_size):
                idx = order[start : start + config.batch_size]
                if len(idx) < 2:  # BatchNorm needs two samples
                    continue
                x = batch_features(idx, True).to(device)
                if config.input_dropout:
                    x = F.dropout(x, config.input_dropout)
                y = labels[idx]
                emb = F.normalize(head(x))
                loss = classification_loss(classifier(emb, y), y, label_smoothing=config.label_smoothing)
                if use_center:
                    loss = loss + config.center_weight * center(emb, y)
                optimizer.zero_grad()
                center_opt.zero_grad()
                loss.backward()
                optimizer.step()
                if use_center:
                    center_opt.step()
                scheduler.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            report = EpochReport(s + 1, len(plan), epoch + 1, epochs, total / max(1, seen), regions)
            history.append(report)
            if progress:
                progress(report)
    head.eval()
    return TrainResult(
        head_state=with_raw_weight(
            {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}, config.raw_weight
        ),
        classifier_state={k: v.detach().cpu().clone() for k, v in classifier.state_dict().items()},
        history=history,
        seconds=time.perf_counter() - t0,
    )


def train_on_features(
    features: np.ndarray,
    data: TrainingData,
    config: TrainConfig,
    *,
    views: Sequence[np.ndarray] = (),
    progress: Progress | None = None,
) -> TrainResult:
    """``features`` mode: cached pooled features (N x C, L2-normalised). ``views`` are extra cached augmented
    views of the same samples (each N x C, NaN rows where a sample has none); training draws one view at random
    per sample and batch."""
    base = torch.as_tensor(np.asarray(features, dtype=np.float32))
    stack = torch.stack([base, *(torch.as_tensor(np.asarray(v, dtype=np.float32)) for v in views)])
    valid = ~torch.isnan(stack).any(dim=2)  # V x N
    gen = torch.Generator().manual_seed(config.seed)

    def batch(idx: np.ndarray, training: bool) -> torch.Tensor:
        rows = torch.as_tensor(idx)
        if not training or len(stack) == 1:
            return base[rows]
        choice = torch.randint(len(stack), (len(rows),), generator=gen)
        choice = torch.where(valid[choice, rows], choice, torch.zeros_like(choice))
        return stack[choice, rows]

    return fit(data, batch, base.shape[1], config, progress=progress)
