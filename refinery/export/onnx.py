"""PyTorch module -> ONNX file with a dynamic batch and the model spec in its metadata."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx
import torch
from torch import nn

from refinery.io.outputs import Kind, output_path
from refinery.spec import BATCH_DIM, ModelSpec

MIN_OPSET = 17
DEFAULT_OPSET = 18


def export_onnx(model: nn.Module, spec: ModelSpec, out: Path, opset: int = DEFAULT_OPSET) -> ModelSpec:
    """Write `model` to `out` as ONNX; return the spec as written into its metadata.

    The input is `spec.input_name`, float32 (batch, 3, H, W) with a dynamic batch; the
    output is `spec.output_name`, (batch, output_dim). onnx.checker must pass.
    """
    h, w = spec.input_size
    spec = spec.replace(opset=opset)
    export_graph(model, torch.rand(2, 3, h, w) * 255, spec.input_name, spec.output_name, out, opset, spec.to_metadata())
    return spec


def export_graph(
    model: nn.Module,
    example: torch.Tensor,
    input_name: str,
    output_name: str,
    out: Path,
    opset: int,
    metadata: dict[str, str],
) -> None:
    """Trace `model` on `example` into the ONNX file `out`: one input, one output, both with a
    dynamic first (batch) dimension, `metadata` in its metadata_props; onnx.checker must pass."""
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old; refinery exports opset {MIN_OPSET} or newer")
    model = model.eval()
    with output_path(Path(out), Kind.ONNX) as tmp, torch.no_grad(), warnings.catch_warnings(), no_mha_fastpath():
        warnings.simplefilter("ignore")  # the exporters are chatty about things that do not matter here
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: BATCH_DIM}, output_name: {0: BATCH_DIM}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
        proto = onnx.load(str(tmp))
        set_metadata(proto, metadata)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))


@contextmanager
def no_mha_fastpath() -> Iterator[None]:
    """nn.MultiheadAttention's inference fast path (CLIP's vision transformer takes it) is one
    fused operator that ONNX has no symbol for; the plain path exports."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def set_metadata(proto: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Put every spec field (`spec.to_metadata()`) into the model's metadata_props, replacing old values."""
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "refinery"  # also how refinery knows a file it may replace (io/outputs.py)
