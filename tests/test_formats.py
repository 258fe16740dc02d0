"""Every format Pillow reads that people keep pictures in is judged, never silently left out:
phones' HEIC/HEIF and AVIF, the PNM family, cameras' MPO; a broken one is an error line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import refinery.io.images  # noqa: F401 - registers the HEIF plugin, which the fixture saves with
from conftest import draw_picture, run_cli
from refinery.io.scan import holds_a_picture, scan


@pytest.fixture
def formats(tmp_path: Path) -> Path:
    root = tmp_path / "formats"
    root.mkdir()
    for k, (name, fmt) in enumerate(
        (("phone.heic", "HEIF"), ("phone.avif", "AVIF"), ("scan.ppm", "PPM"), ("camera.mpo", "MPO"), ("a.png", "PNG"))
    ):
        draw_picture(200 + k, (160, 120)).save(root / name, fmt)
    draw_picture(200, (160, 120)).convert("L").save(root / "gray.pgm")
    draw_picture(201, (160, 120)).convert("1").save(root / "bits.pbm")
    draw_picture(200, (160, 120)).save(root / "no_suffix", "HEIF")  # known by its bytes alone
    (root / "broken.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40)
    return root


def test_every_format_is_found(formats: Path) -> None:
    found = {p.name for p in scan(formats).files}
    assert found == {p.name for p in formats.iterdir()}


def test_holds_a_picture_answers_as_scan_does_without_reading_it_all(formats: Path, tmp_path: Path) -> None:
    folder = tmp_path / "f"
    (folder / "deep" / ".hidden").mkdir(parents=True)
    (folder / "notes.txt").write_text("no picture")
    (folder / ".seen.jpg").write_bytes((formats / "no_suffix").read_bytes())
    (folder / "deep" / ".hidden" / "a.jpg").write_bytes((formats / "no_suffix").read_bytes())
    assert not holds_a_picture(folder) and not scan(folder).files  # hidden ones are not read
    (folder / "deep" / "no_suffix").write_bytes((formats / "no_suffix").read_bytes())  # known by its bytes
    assert holds_a_picture(folder) and scan(folder).files


def test_every_format_is_judged_and_a_broken_one_is_an_error(formats: Path, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    proc = run_cli("dedup", str(formats), "--report", str(report), "--device", "cpu")
    assert proc.returncode == 3  # the broken HEIC
    files = {f["path"]: f for f in json.loads(report.read_text())["files"]}
    assert set(files) == {p.name for p in formats.iterdir()}
    assert files["broken.heic"]["decision"] == "error"
    assert all(f["decision"] in ("keep", "remove") for name, f in files.items() if name != "broken.heic")
    assert files["no_suffix"]["decision"] == "remove" or files["phone.heic"]["decision"] == "remove"  # one picture
