"""`refinery export-model`: build, export to each format, check parity, write the spec."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from refinery import install_hint
from refinery.errors import ModelError, ParityError, UnreadableImage
from refinery.export import coreml as coreml_export
from refinery.export import onnx as onnx_export
from refinery.export.builders import Built
from refinery.export.parity import FP16, FP32, ParityReport, Tolerance, check_parity
from refinery.export.quantize import QuantReport, compare_int8, quantize_int8
from refinery.export.registry import get_arch
from refinery.io.images import load_input
from refinery.io.outputs import Kind, output_path, remove_own
from refinery.io.scan import find_images
from refinery.spec import ModelSpec

log = logging.getLogger(__name__)

FORMATS = ("onnx", "coreml")
INPUT_NAME = "images"
OUTPUT_NAME = "features"
PARITY_IMAGES = 64  # images used for parity when a folder is given (the first, sorted)
MIN_INT8_COSINE = 0.98  # mean cosine to fp32 below which an INT8 model is refused


@dataclass
class ExportOptions:
    arch: str
    out: Path  # prefix: writes PREFIX.onnx, PREFIX.json, PREFIX.mlpackage, ...
    checkpoint: Path | None = None
    formats: tuple[str, ...] = ("onnx",)
    opset: int = onnx_export.DEFAULT_OPSET
    fp16: bool = False
    int8_calibration: Path | None = None
    images: Path | None = None  # real images for parity; synthetic ones if None
    stem_pool: str | None = None
    trust_checkpoint: bool = False
    calibration_limit: int = 64
    calibrate: Path | None = None  # a labelled corpus (truth.json) to calibrate semantic_threshold on
    pretrained: str | None = None  # CLIP: a release open_clip downloads (needs internet)
    image_size: int | None = None  # CLIP: another input side than the architecture's (tests)


@dataclass
class ExportResult:
    spec: ModelSpec
    files: list[Path] = field(default_factory=list)
    parity: list[ParityReport] = field(default_factory=list)
    int8: QuantReport | None = None
    coreml_note: str = ""
    parity_source: str = ""
    calibration: str = ""  # how semantic_threshold was found, for the user


def export_model(opts: ExportOptions, step: Callable[[str], None] = lambda s: None) -> ExportResult:
    """Export `opts.arch` to every format asked for and prove each output matches PyTorch.

    Raises:
        ModelError subclasses: unknown arch, missing or mismatched checkpoint, parity failure.
    """
    check_formats(opts)
    arch = get_arch(opts.arch)
    if arch.open_clip_name:  # two towers and a vocabulary: refinery.export.openclip.export_clip
        raise ModelError(f"{arch.name} is a CLIP model: export it with refinery.export.openclip.export_clip")
    if opts.pretrained or opts.image_size:
        raise ModelError(f"--pretrained and --image-size are for CLIP models; {arch.name} takes --checkpoint")
    checkpoint = opts.checkpoint or (Path(arch.default_checkpoint) if arch.default_checkpoint else None)
    step(f"loading {arch.name}")
    built: Built = arch.build(checkpoint, stem_pool=opts.stem_pool, trust=opts.trust_checkpoint)
    spec = spec_of(arch.name, built)
    result = ExportResult(spec=spec)
    images, result.parity_source = parity_images(opts.images, spec)
    reference = torch_outputs(built.model, images)
    out = Path(opts.out)
    if opts.calibrate:
        step("calibrating the semantic threshold")
        spec = result.spec = calibrated(built.model, spec, opts.calibrate, result)

    if "onnx" in opts.formats or opts.fp16 or opts.int8_calibration:
        step("exporting ONNX")
        onnx_path = out.with_suffix(".onnx")
        spec = write_onnx(built.model, spec, onnx_path, opts.opset, images, reference, result)
        if opts.fp16:
            step("converting to fp16")
            result.parity.append(export_fp16(onnx_path, spec, images, reference, result))
        if opts.int8_calibration:
            step("quantising to int8")
            result.int8 = export_int8(onnx_path, spec, opts, images, result)

    if "coreml" in opts.formats:
        step("converting to Core ML")
        result.coreml_note = export_coreml(built.model, spec, out.with_suffix(".mlpackage"), images, reference, result)
    return result


def check_formats(opts: ExportOptions) -> None:
    """Every format asked for is known, and coremltools is there if Core ML is asked for."""
    unknown = [f for f in opts.formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    if "coreml" in opts.formats:
        require_coremltools()


def spec_of(name: str, built: Built, normalized: bool = False) -> ModelSpec:
    """The runner's contract for `built`: RGB 0..255 in, its features out."""
    return ModelSpec(
        name=name,
        input_name=INPUT_NAME,
        input_size=built.input_size,
        output_name=OUTPUT_NAME,
        output_dim=built.output_dim,
        normalized=normalized,
        interpolation=built.interpolation,
        source=built.source,
        sha256=built.sha256,
    )


def write_onnx(
    model: torch.nn.Module,
    spec: ModelSpec,
    onnx_path: Path,
    opset: int,
    images: np.ndarray,
    reference: np.ndarray,
    result: ExportResult,
) -> ModelSpec:
    """PATH.onnx with its metadata and PATH.json beside it, after proving onnxruntime gives
    what PyTorch gives on `images`; shared by export-model and train."""
    spec = onnx_export.export_onnx(model, spec, onnx_path, opset)
    result.spec = spec
    # A sidecar of an earlier export would contradict the new model's metadata: the check
    # below reads the metadata alone, and the new sidecar is written once it has passed.
    remove_own(onnx_path.with_suffix(".json"), Kind.SPEC)
    result.parity.append(check_onnx(onnx_path, spec, images, reference, "onnx fp32", FP32))
    spec.save(onnx_path.with_suffix(".json"))
    result.files += [onnx_path, onnx_path.with_suffix(".json")]
    return spec


def calibrated(
    model: torch.nn.Module, spec: ModelSpec, corpus: Path, result: ExportResult, batch: int = 32
) -> ModelSpec:
    """`spec` with the semantic threshold calibrated on the labelled `corpus` (refinery.calibration)."""
    from refinery.calibration import calibrate, read_labelled
    from refinery.runner.session import l2_normalize

    labelled = read_labelled(corpus)
    vectors = []
    for i in range(0, len(labelled.paths), batch):
        chunk = np.stack([load_input(p, spec) for p in labelled.paths[i : i + batch]])
        vectors.append(torch_outputs(model, chunk))
    found = calibrate(labelled, l2_normalize(np.concatenate(vectors)))
    result.calibration = found.line()
    return spec.replace(semantic_threshold=found.threshold)


def require_coremltools() -> None:
    try:
        with coreml_export.quiet_coremltools():
            import coremltools  # noqa: F401
    except ImportError:
        raise ModelError(
            f"--format coreml needs coremltools: {install_hint('export')}, or pass --format onnx"
        ) from None


def parity_images(folder: Path | None, spec: ModelSpec, limit: int = PARITY_IMAGES) -> tuple[np.ndarray, str]:
    """Prepared input for parity: real images from `folder`, else a synthetic set."""
    if folder is None:
        return synthetic_images(8, spec), "8 synthetic images (pass --images DIR for real ones)"
    batch = load_folder(folder, spec, limit)
    if len(batch) < 2:
        raise ParityError(f"{folder}: parity needs at least 2 readable images, found {len(batch)}")
    return batch, f"{len(batch)} images from {folder}"


def load_folder(folder: Path, spec: ModelSpec, limit: int) -> np.ndarray:
    """Up to `limit` readable images of `folder`, prepared as model input."""
    arrays: list[np.ndarray] = []
    for path in find_images(folder):
        if len(arrays) >= limit:
            break
        try:
            arrays.append(load_input(path, spec))
        except UnreadableImage as e:
            log.error("%s", e)
    h, w = spec.input_size
    return np.stack(arrays) if arrays else np.zeros((0, 3, h, w), np.float32)


def synthetic_images(n: int, spec: ModelSpec, seed: int = 0) -> np.ndarray:
    """Structured test pictures (gradients, blocks, noise) in 0..255, as model input."""
    rng = np.random.default_rng(seed)
    h, w = spec.input_size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n, 3, h, w), np.float32)
    for i in range(n):
        for c in range(3):
            fx, fy, phase = rng.uniform(0.5, 6, 2).tolist() + [rng.uniform(0, 6.28)]
            wave = np.sin(xx / w * fx * 6.28 + phase) * np.cos(yy / h * fy * 6.28)
            out[i, c] = 127 + 90 * wave + rng.normal(0, 12, (h, w))
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        out[i, :, y0 : y0 + h // 3, x0 : x0 + w // 3] = rng.uniform(0, 255, (3, 1, 1))
    return np.clip(out, 0, 255)


def torch_outputs(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        outputs: torch.Tensor = model.eval()(torch.from_numpy(images))
        return outputs.numpy()


def onnx_outputs(path: Path, images: np.ndarray) -> tuple[np.ndarray, list[str]]:
    from refinery.runner.session import Embedder

    embedder = Embedder(path, device="cpu")
    return embedder.run(images), [o.name for o in embedder.session.get_outputs()]


def check_onnx(
    path: Path, spec: ModelSpec, images: np.ndarray, reference: np.ndarray, label: str, tolerance: Tolerance
) -> ParityReport:
    outputs, names = onnx_outputs(path, images)
    return check_parity(label, reference, outputs, tolerance, names=([spec.output_name], names))


def export_fp16(
    onnx_path: Path, spec: ModelSpec, images: np.ndarray, reference: np.ndarray, result: ExportResult
) -> ParityReport:
    """PREFIX.fp16.onnx: weights and compute in float16, float32 input and output."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    path = onnx_path.with_suffix(".fp16.onnx")
    fp16_spec = spec.replace(precision="fp16")
    proto = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
    onnx_export.set_metadata(proto, fp16_spec.to_metadata())
    with output_path(path, Kind.ONNX) as tmp:
        onnx.save(proto, str(tmp))
    report = check_onnx(path, fp16_spec, images, reference, "onnx fp16", FP16)
    fp16_spec.save(path.with_suffix(".json"))
    result.files += [path, path.with_suffix(".json")]
    return report


def export_int8(
    onnx_path: Path, spec: ModelSpec, opts: ExportOptions, images: np.ndarray, result: ExportResult
) -> QuantReport:
    """PREFIX.int8.onnx, calibrated on opts.int8_calibration, compared with fp32 on the parity images."""
    assert opts.int8_calibration is not None
    calibration = load_folder(opts.int8_calibration, spec, opts.calibration_limit)
    if len(calibration) == 0:
        raise ParityError(f"{opts.int8_calibration}: no readable calibration images")
    path = onnx_path.with_suffix(".int8.onnx")
    int8_spec = quantize_int8(onnx_path, path, spec, calibration)
    evaluation = images if opts.images else calibration
    report = compare_int8(onnx_path, path, evaluation, len(calibration))
    if report.mean_cosine < MIN_INT8_COSINE:
        raise ParityError(
            f"{path}: int8 embeddings drift too far from fp32 "
            f"(mean cosine {report.mean_cosine:.4f} < {MIN_INT8_COSINE}); "
            "try more or more varied calibration images"
        )
    int8_spec.save(path.with_suffix(".json"))
    result.files += [path, path.with_suffix(".json")]
    return report


def export_coreml(
    model: torch.nn.Module, spec: ModelSpec, path: Path, images: np.ndarray, reference: np.ndarray, result: ExportResult
) -> str:
    """Write PREFIX.mlpackage; check its interface, and its outputs where Core ML runs."""
    coreml_export.export_coreml(model, spec, path)
    check = coreml_export.check_coreml(path, spec)
    result.files.append(path)
    if not coreml_export.can_predict():
        return f"Core ML: converted, interface checked ({check.reason})"
    outputs = coreml_export.predict_coreml(path, spec, images)
    report = check_parity("coreml", reference, outputs, FP32)
    result.parity.append(report)
    return "Core ML: converted and predictions checked"
