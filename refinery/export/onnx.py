"""PyTorch module -> ONNX file with a dynamic batch and the model spec in its metadata."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from refinery.io.fileio import atomic_path
from refinery.spec import BATCH_DIM, ModelSpec

MIN_OPSET = 17
DEFAULT_OPSET = 18


def export_onnx(model: nn.Module, spec: ModelSpec, out: Path, opset: int = DEFAULT_OPSET) -> ModelSpec:
    """Write `model` to `out` as ONNX; return the spec as written into its metadata.

    The input is `spec.input_name`, float32 (batch, 3, H, W) with a dynamic batch; the
    output is `spec.output_name`, (batch, output_dim). onnx.checker must pass.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old; refinery exports opset {MIN_OPSET} or newer")
    h, w = spec.input_size
    example = torch.rand(2, 3, h, w) * 255
    model = model.eval()
    with atomic_path(Path(out)) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters are chatty about things that do not matter here
        torch.onnx.export(
            model, (example,), str(tmp),
            input_names=[spec.input_name], output_names=[spec.output_name],
            dynamic_axes={spec.input_name: {0: BATCH_DIM}, spec.output_name: {0: BATCH_DIM}},
            opset_version=opset, do_constant_folding=True, dynamo=False)
        proto = onnx.load(str(tmp))
        spec = spec.replace(opset=opset)
        set_metadata(proto, spec)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
    return spec


def set_metadata(proto: onnx.ModelProto, spec: ModelSpec) -> None:
    """Put every spec field into the model's metadata_props, replacing old values."""
    del proto.metadata_props[:]
    for key, value in spec.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "refinery"
