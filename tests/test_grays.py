"""The gray pictures a run keeps from its read-once pass for the scene test: the same pixels
as decoding the file again, and a scratch folder that fills up changes no decision."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from test_scenes import scene_folder, standing

from conftest import REPO, draw_picture
from refinery.config import load_config
from refinery.dedup.featurepass import feature_pass, list_files
from refinery.dedup.grays import Grays, GrayStore
from refinery.dedup.state import Run, StageStats
from refinery.dedup.vectors import VectorStore
from refinery.runner.session import Embedder


def test_a_store_keeps_what_fits_under_its_limit(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grays = [rng.integers(0, 256, (256, 400), np.uint8) for _ in range(12)]  # 100 KB each
    with GrayStore(tmp_path, limit_mb=1) as store:
        for row, gray in enumerate(grays):
            store.put(row, gray)
        assert len(store) == 10
        for row in range(10):
            np.testing.assert_array_equal(store.get(row), grays[row])
        assert store.get(10) is None and store.get(99) is None
    assert list(tmp_path.iterdir()) == []  # an unnamed file: nothing left behind


def test_the_pass_keeps_each_picture_as_decoding_it_again_gives_it(tmp_path: Path) -> None:
    """Kept or decoded again (a cached run, past the limit), a picture's gray is the same, so
    a run decides alike whichever way its grays came: a big JPEG the decoder reduces, a small
    one, a rotated one, a PNG with transparency, a gray one."""
    root = tmp_path / "pictures"
    root.mkdir()
    draw_picture(1, (960, 540)).save(root / "big.jpg", quality=90)
    draw_picture(2, (200, 150)).save(root / "small.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: shown turned by 90 degrees
    draw_picture(3, (640, 480)).save(root / "rotated.jpg", quality=90, exif=exif)
    draw_picture(4, (500, 400)).convert("RGBA").save(root / "alpha.png")
    draw_picture(5, (400, 300)).convert("L").save(root / "gray.jpg", quality=90)
    cfg = load_config(None)
    embedder = Embedder("default", device="cpu")
    files, _ = list_files(root, cfg)
    run = Run(files)
    stages = {name: StageStats(name) for name in ("pass", "features", "embed")}
    with VectorStore(embedder.spec.output_dim, tmp_path) as vectors, GrayStore(tmp_path, 64) as kept:
        feature_pass(root, run, len(files), cfg, embedder, stages, store=vectors, grays=kept)
        assert len(kept) == len(files)
        from_pass, again = Grays(root, run.table, embedder.spec, kept), Grays(root, run.table, embedder.spec)
        for row, name in enumerate(files):
            np.testing.assert_array_equal(from_pass(row), again(row), err_msg=name)
        assert from_pass(files.index("rotated.jpg")).shape == (320, 240)


def _decisions(report: Path) -> dict[str, tuple[str, str | None]]:
    return {f["path"]: (f["decision"], f["kept_as"]) for f in json.loads(report.read_text())["files"]}


def test_a_scratch_folder_that_fills_up_changes_no_decision(tmp_path: Path) -> None:
    """Files may grow only to 1 MB (as on a nearly full disk): the grays of the first frames
    fit, the rest are decoded again; the run ends as one with room does."""
    root = tmp_path / "frames"
    scene_folder(root, 8, 40, standing(8, 6))
    reports = {}
    for name, limit in (("room", resource.RLIM_INFINITY), ("full", 2**20)):
        reports[name] = tmp_path / f"{name}.json"

        def cap(limit: int = limit) -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "refinery",
                "dedup",
                str(root),
                "--no-cache",
                "--device",
                "cpu",
                "--report",
                str(reports[name]),
                "--set",
                f"run.scratch_dir={tmp_path / 'scratch'}",
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            preexec_fn=cap,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
    room, full = _decisions(reports["room"]), _decisions(reports["full"])
    assert room == full
    assert sum(decision == "remove" for decision, _ in room.values()) >= 5


def test_scratch_space_inside_the_folder_leaves_it_as_it_was(tmp_path: Path) -> None:
    """run.scratch_dir pointed at the folder being judged: the scratch files are unnamed, so
    nothing is judged, left or changed there, and the decisions are those of a run elsewhere."""
    root = tmp_path / "frames"
    scene_folder(root, 9, 30, standing(9, 4))
    before = {p.name: p.read_bytes() for p in root.iterdir()}
    reports = {}
    for name, scratch in (("elsewhere", tmp_path / "scratch"), ("inside", root)):
        reports[name] = tmp_path / f"{name}.json"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "refinery",
                "dedup",
                str(root),
                "--no-cache",
                "--device",
                "cpu",
                "--report",
                str(reports[name]),
                "--set",
                f"run.scratch_dir={scratch}",
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before
    assert _decisions(reports["inside"]) == _decisions(reports["elsewhere"])
    assert len(_decisions(reports["inside"])) == len(before)
