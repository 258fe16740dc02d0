"""The runner with the shipped default model: real onnxruntime sessions on real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import draw_picture
from refinery.errors import ModelError, UnreadableImage
from refinery.images import load_input, load_rgb
from refinery.runner import Embedder, default_model_path
from refinery.runner.embed import embed_folder, save_npz
from refinery.scan import find_images


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
    one_by_one = np.concatenate([embedder.embed(batch[i:i + 1]) for i in range(len(batch))])
    np.testing.assert_allclose(whole, one_by_one, atol=1e-5)


def test_embed_folder_skips_unreadable_files(embedder: Embedder, messy_dir: Path, tmp_path: Path) -> None:
    result = embed_folder(messy_dir, embedder)
    assert result.paths == ["good_0.jpg", "good_1.jpg", "good_2.jpg"]
    assert list(result.errors) == ["broken.jpg"]
    out = tmp_path / "v.npz"
    save_npz(result, out)
    data = np.load(out)
    assert list(data["paths"]) == result.paths
    assert data["vectors"].shape == (3, 1280) and data["vectors"].dtype == np.float32


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such model file"):
        Embedder(tmp_path / "nope.onnx")


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    im = draw_picture(3, size=(160, 120))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    im.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "rot.jpg").size == (120, 160)


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"), (b"\x89PNG\r\n\x1a\nrandom", "not an image")])
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
