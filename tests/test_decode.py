"""Decoding at the size the stages need: JPEGs reduced by the decoder, other formats after it,
with the full picture's size kept for the keep rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import draw_picture, extract
from refinery.features import thumb_correlation
from refinery.io.images import WORK_SIZE, decode, decode_for_stages, reduction
from refinery.spec import ModelSpec

SPEC = ModelSpec.load(Path(__file__).parent.parent / "refinery" / "models" / "default.json")  # 224x224 input


@pytest.mark.parametrize(
    "size, min_long, min_short, factor",
    [
        ((640, 640), 320, 224, 2),  # the corpus: half size
        ((1280, 960), 320, 224, 4),  # 320x240
        ((4000, 3000), 320, 224, 8),  # a camera: 500x375
        ((640, 480), 320, 224, 2),  # 320x240
        ((600, 400), 320, 224, 1),  # 300 < 320
        ((2000, 300), 320, 224, 1),  # the short side is the limit
        ((5000, 5000), 0, 0, 1),  # nothing asked: full size
    ],
)
def test_reduction_keeps_both_sides_at_their_minimum(
    size: tuple[int, int], min_long: int, min_short: int, factor: int
) -> None:
    assert reduction(*size, min_long, min_short) == factor


def test_large_jpeg_is_decoded_reduced_with_its_full_size_kept(tmp_path: Path) -> None:
    im = draw_picture(5, (1280, 960))
    data = _save(im, tmp_path / "big.jpg", quality=92)
    decoded = decode_for_stages(data, "big.jpg", SPEC)
    assert decoded.image.size == (320, 240) and (decoded.width, decoded.height) == (1280, 960)
    assert decoded.quantiser > 0
    full = decode(data, "big.jpg")
    assert full.image.size == (1280, 960)


def test_rotated_jpeg_reports_the_size_a_person_sees(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = _save(draw_picture(6, (1280, 960)), tmp_path / "rot.jpg", exif=exif.tobytes())
    decoded = decode_for_stages(data, "rot.jpg", SPEC)
    assert decoded.image.size == (240, 320) and (decoded.width, decoded.height) == (960, 1280)


def test_png_and_jpeg_of_one_picture_get_the_same_size_and_near_equal_features(tmp_path: Path) -> None:
    im = draw_picture(7, (1280, 960))
    _save(im, tmp_path / "a.jpg", quality=95)
    _save(im, tmp_path / "a.png")
    fj, jpeg_image = extract(tmp_path / "a.jpg", "a.jpg", SPEC)
    fp, png_image = extract(tmp_path / "a.png", "a.png", SPEC)
    assert jpeg_image.size == png_image.size == (320, 240)
    assert (fj.width, fj.height) == (fp.width, fp.height) == (1280, 960)
    assert bin(fj.phash ^ fp.phash).count("1") <= 2 and thumb_correlation(fj.thumb, fp.thumb) > 0.99
    assert fj.sharpness == pytest.approx(fp.sharpness, rel=0.25)
    # the reduced decode is close to a full decode scaled down: the DCT scaling is a box filter
    full = np.asarray(decode((tmp_path / "a.jpg").read_bytes()).image.reduce(4), np.float32)
    assert np.abs(np.asarray(jpeg_image, np.float32) - full).mean() < 2.0


def test_small_pictures_are_not_reduced(tmp_path: Path) -> None:
    data = _save(draw_picture(8, (WORK_SIZE, 240)), tmp_path / "s.jpg")
    assert decode_for_stages(data, "s.jpg", SPEC).image.size == (WORK_SIZE, 240)


def _save(im: Image.Image, path: Path, **kw: object) -> bytes:
    im.save(path, **kw)
    return path.read_bytes()
