"""The runner with the shipped default model: real onnxruntime sessions on real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import draw_picture
from refinery.config import Config
from refinery.dedup.featurepass import embed_every_picture
from refinery.errors import ModelError, UnreadableImage
from refinery.io.images import load_input, load_rgb
from refinery.io.scan import find_images
from refinery.runner import Embedder, default_model_path


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("default", device="cpu", batch_size=4)


def test_default_model_ships_with_its_spec(embedder: Embedder) -> None:
    assert default_model_path().is_file()
    spec = embedder.spec
    assert spec.name == "mobilenetv2" and spec.output_dim == 1280
    assert spec.input_name == embedder.input_name == "images"
    assert spec.identity_normalisation  # normalisation is inside the graph
    assert spec.sha256 and spec.source


def test_vectors_are_unit_length_and_tell_pictures_apart(embedder: Embedder, tmp_path: Path) -> None:
    pictures = [draw_picture(1), draw_picture(1).resize((150, 110)), draw_picture(2)]
    for i, im in enumerate(pictures):
        im.save(tmp_path / f"{i}.png")
    batch = np.stack([load_input(tmp_path / f"{i}.png", embedder.spec) for i in range(3)])
    v = embedder.embed(batch)
    assert v.shape == (3, 1280) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    same, different = float(v[0] @ v[1]), float(v[0] @ v[2])
    assert same > 0.95 and different < same - 0.05


def test_batches_larger_and_smaller_than_batch_size_agree(embedder: Embedder, image_dir: Path) -> None:
    batch = np.stack([load_input(p, embedder.spec) for p in find_images(image_dir)])
    whole = embedder.embed(batch)  # 8 images: two calls of 4
    one_by_one = np.concatenate([embedder.embed(batch[i : i + 1]) for i in range(len(batch))])
    np.testing.assert_allclose(whole, one_by_one, atol=1e-5)


def test_embedding_a_folder_leaves_out_unreadable_files(embedder: Embedder, messy_dir: Path) -> None:
    found = embed_every_picture(messy_dir, Config(), embedder)
    assert found.paths == ["good_0.jpg", "good_1.jpg", "good_2.jpg"]
    assert [path for path, _ in found.left_out] == ["broken.jpg"] and found.errors == 1
    assert found.vectors.shape == (3, 1280) and found.vectors.dtype == np.float32


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such model file"):
        Embedder(tmp_path / "nope.onnx")


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    im = draw_picture(3, size=(160, 120))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    im.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "rot.jpg").size == (120, 160)


@pytest.mark.parametrize("content, reason", [(b"", "empty file"), (b"\x89PNG\r\n\x1a\nrandom", "not an image")])
def test_unreadable_images_name_the_file_and_reason(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(UnreadableImage, match=reason) as info:
        load_rgb(path)
    assert str(path) in str(info.value)


def test_truncated_jpeg_is_unreadable(tmp_path: Path) -> None:
    draw_picture(4).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImage, match="cannot decode"):
        load_rgb(tmp_path / "half.jpg")


def test_fixed_batch_pins_the_shape_and_pads(image_dir: Path) -> None:
    """The CoreML path: batch dimension made static, short batches padded, same vectors."""
    fixed = Embedder("default", device="cpu", batch_size=4, fixed_batch=True)
    assert fixed.static_batch and fixed.session.get_inputs()[0].shape[0] == 4
    batch = np.stack([load_input(p, fixed.spec) for p in find_images(image_dir)[:7]])
    dynamic = Embedder("default", device="cpu", batch_size=4)
    assert not dynamic.static_batch
    np.testing.assert_allclose(fixed.embed(batch), dynamic.embed(batch), atol=1e-5)
    assert fixed.embed(batch[:1]).shape == (1, 1280)


def model_with_sidecar(tmp_path: Path, metadata: bool = True, **changes: object) -> Path:
    """A copy of the shipped model (its metadata stripped unless `metadata`) with x.json beside it,
    the shipped spec with `changes`."""
    import json
    import shutil

    path = tmp_path / "x.onnx"
    if metadata:
        shutil.copyfile(default_model_path(), path)
    else:
        onnx = pytest.importorskip("onnx")
        proto = onnx.load(str(default_model_path()))
        del proto.metadata_props[:]
        onnx.save(proto, str(path))
    spec = json.loads(default_model_path().with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**spec, **changes}))
    return path


@pytest.mark.parametrize("metadata", [True, False], ids=["with-metadata", "sidecar-only"])
@pytest.mark.parametrize(
    "changes, says",
    [
        ({"input_size": [256, 128]}, "x.json says input 256x128, but the graph takes 224x224"),
        ({"output_dim": 512}, "x.json says output 512-d, but the graph gives 1280-d"),
        ({"input_name": "pixels"}, "x.json says input 'pixels', but the graph's inputs are 'images'"),
    ],
)
def test_a_sidecar_that_disagrees_with_the_graph_is_a_model_error(
    tmp_path: Path, metadata: bool, changes: dict, says: str
) -> None:
    path = model_with_sidecar(tmp_path, metadata, **changes)
    embedder = Embedder(path, device="cpu")
    with pytest.raises(ModelError) as info:
        embedder.load()
    message = str(info.value)
    assert message.startswith(f"{path}: {says}") and "\n" not in message
    assert message.endswith("export it again with `refinery export-model` (or delete the stale x.json)")


def test_a_sidecar_that_agrees_with_the_graph_loads(tmp_path: Path) -> None:
    embedder = Embedder(model_with_sidecar(tmp_path, metadata=False), device="cpu").load()
    assert embedder.spec.input_size == (224, 224) and embedder.spec.output_dim == 1280


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"input_size": "abc"}, "input_size"),
        ({"input_size": [224]}, "input_size"),
        ({"input_size": [224, -1]}, "input_size"),
        ({"input_size": [224.5, 224]}, "input_size"),
        ({"input_size": 5}, "input_size"),
        ({"output_dim": "1280"}, "output_dim"),
        ({"output_dim": 0}, "output_dim"),
        ({"output_dim": True}, "output_dim"),
        ({"mean": [0, 0]}, "mean"),
        ({"std": [1, 0, 1]}, "std"),
        ({"std": ["a", 1, 1]}, "std"),
        ({"scale": None}, "scale"),
        ({"normalized": "no"}, "normalized"),
        ({"name": ""}, "name"),
        ({"input_name": 3}, "input_name"),
        ({"precision": "fp8"}, "precision"),
        ({"opset": "18"}, "opset"),
    ],
)
def test_a_garbage_sidecar_is_a_model_error_naming_the_file(tmp_path: Path, changes: dict, key: str) -> None:
    path = model_with_sidecar(tmp_path, **changes)
    with pytest.raises(ModelError, match=key) as info:
        Embedder(path, device="cpu")
    assert str(info.value).startswith(f"{path.with_suffix('.json')}: ")


@pytest.mark.parametrize("content", ["[1, 2]", "not json", '{"name": "m"}'])
def test_a_sidecar_that_is_no_spec_is_a_model_error(tmp_path: Path, content: str) -> None:
    path = model_with_sidecar(tmp_path)
    path.with_suffix(".json").write_text(content)
    with pytest.raises(ModelError) as info:
        Embedder(path, device="cpu")
    assert str(info.value).startswith(f"{path.with_suffix('.json')}: ")
