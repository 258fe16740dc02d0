"""PyTorch module -> Core ML ML Program package (.mlpackage).

Conversion runs anywhere coremltools installs; predictions run only on macOS, so the
check on other systems is structural (inputs, outputs, shapes, metadata).
"""

from __future__ import annotations

import logging
import os
import platform
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from refinery.errors import ModelError, ParityError
from refinery.io.fileio import atomic_path
from refinery.spec import ModelSpec

MAX_BATCH = 64


@dataclass(frozen=True)
class CoreMLCheck:
    """What was checked of a converted package."""

    inputs: list[str]
    outputs: list[str]
    batch_range: tuple[int, int]
    reason: str = ""  # why predictions were not checked here, if they were not


@contextmanager
def quiet_coremltools() -> Iterator[None]:
    """coremltools prints progress bars and import notices (no native runtime off macOS,
    untested torch version) on stderr; keep them out of refinery's output. Errors still raise."""
    logger = logging.getLogger("coremltools")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as devnull, redirect_stderr(devnull), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def can_predict() -> bool:
    return platform.system() == "Darwin"


def export_coreml(model: nn.Module, spec: ModelSpec, out: Path, max_batch: int = MAX_BATCH) -> None:
    """Convert `model` to an ML Program package at `out` with a batch range 1..max_batch."""
    with quiet_coremltools():
        import coremltools as ct

    h, w = spec.input_size
    example = torch.rand(2, 3, h, w) * 255
    # torch.export, not torch.jit.trace: the tracer turns nn.MultiheadAttention (CLIP) into
    # shape arithmetic coremltools cannot convert; an exported program has none of it.
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    with torch.no_grad(), quiet_coremltools():
        program = torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},))
        mlmodel = ct.convert(
            program.run_decompositions({}),
            inputs=[ct.TensorType(name=spec.input_name, dtype=np.float32)],
            outputs=[ct.TensorType(name=spec.output_name, dtype=np.float32)],
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.macOS13,
            compute_precision=ct.precision.FLOAT32,  # parity first; fp16 is a later trade
        )
    mlmodel.short_description = f"refinery embedding model {spec.name} ({spec.output_dim}-d)"
    for key, value in spec.to_metadata().items():
        mlmodel.user_defined_metadata[key] = value
    out = Path(out)
    # An earlier export is replaced; any other folder of that name is not ours to remove.
    earlier = out.is_dir() and (out / "Manifest.json").is_file()
    if out.exists() and not earlier:
        raise ModelError(f"{out} exists and is not a Core ML package; choose another --out")
    with atomic_path(out, replace_folder=earlier) as tmp:
        mlmodel.save(str(tmp))


def check_coreml(path: Path, spec: ModelSpec) -> CoreMLCheck:
    """Read the package back and check its interface against `spec` (structure only)."""
    import coremltools as ct

    desc = ct.utils.load_spec(str(path)).description
    inputs = [i.name for i in desc.input]
    outputs = [o.name for o in desc.output]
    problems = []
    if inputs != [spec.input_name]:
        problems.append(f"inputs {inputs}, expected [{spec.input_name!r}]")
    if outputs != [spec.output_name]:
        problems.append(f"outputs {outputs}, expected [{spec.output_name!r}]")
    arr = desc.input[0].type.multiArrayType
    shape = [(r.lowerBound, r.upperBound) for r in arr.shapeRange.sizeRanges]
    h, w = spec.input_size
    if shape[1:] != [(3, 3), (h, h), (w, w)]:
        problems.append(f"input shape ranges {shape}, expected (batch, 3, {h}, {w})")
    if problems:
        raise ParityError(f"{path}: Core ML package does not match the spec: " + "; ".join(problems))
    reason = "" if can_predict() else "Core ML predictions run only on macOS; checked structure only"
    return CoreMLCheck(inputs, outputs, shape[0], reason=reason)


def predict_coreml(path: Path, spec: ModelSpec, batch: np.ndarray) -> np.ndarray:
    """Run the package on `batch` (macOS only)."""
    import coremltools as ct

    mlmodel = ct.models.MLModel(str(path))
    out = mlmodel.predict({spec.input_name: batch.astype(np.float32)})
    return np.asarray(out[spec.output_name], dtype=np.float32)
