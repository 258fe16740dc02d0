"""Shared fixtures: images drawn on the spot, random-init checkpoints, and the real CLI."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent


def draw_picture(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A small picture with a background gradient and a few shapes, different per seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.uniform(30, 220, 3)
    ramp = np.linspace(0, 1, w)[None, :, None] * rng.uniform(-60, 60, 3)
    pixels = np.clip(base + ramp + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(pixels)
    draw = ImageDraw.Draw(im)
    for _ in range(4):
        x0, y0 = rng.integers(0, w - 20), rng.integers(0, h - 20)
        x1, y1 = x0 + rng.integers(10, w // 2), y0 + rng.integers(10, h // 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    return im


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Caches (features, CoreML) go to a temporary folder, for this process and the CLI runs."""
    path = tmp_path_factory.mktemp("xdg-cache")
    os.environ["XDG_CACHE_HOME"] = str(path)
    return path


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight readable pictures (JPEG and PNG, one in a sub-folder)."""
    root = tmp_path_factory.mktemp("images")
    (root / "sub").mkdir()
    for i in range(8):
        folder = root / "sub" if i == 7 else root
        suffix = ".png" if i % 3 == 0 else ".jpg"
        draw_picture(i).save(folder / f"pic_{i}{suffix}")
    return root


@pytest.fixture
def messy_dir(tmp_path: Path) -> Path:
    """Three good pictures and one file that only pretends to be a JPEG."""
    for i in range(3):
        draw_picture(100 + i).save(tmp_path / f"good_{i}.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"this is not a jpeg")
    return tmp_path


@pytest.fixture(scope="session")
def fastreid_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random-init checkpoints in fastreid's on-disk format: old model-zoo and current layouts."""
    pytest.importorskip("torch")
    from refinery.export.fastreid import write_random_checkpoint

    root = tmp_path_factory.mktemp("ckpt")
    return {
        layout: write_random_checkpoint(root / f"{layout}.pth", layout, seed=i)
        for i, layout in enumerate(("legacy", "current"))
    }


TINY_CLIP = REPO / "tests" / "data" / "tinyclip"  # an open_clip config: 2 layers of 64 wide, 32-d, 32x32 input
NO_OPEN_CLIP = "the CLIP tests export with open_clip: pip install '.[clip]'"
# A test that runs a CLIP export (found, not imported: open_clip would bring torch in)
needs_open_clip = pytest.mark.skipif(importlib.util.find_spec("open_clip") is None, reason=NO_OPEN_CLIP)


@pytest.fixture(scope="session")
def clip_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init CLIP (tests/data/tinyclip) exported by the real CLI in its own process, so
    the tests' process stays torch-free: PREFIX.onnx, .text.onnx, .vocab.txt.gz. The image tower's path."""
    if importlib.util.find_spec("open_clip") is None:
        pytest.skip(NO_OPEN_CLIP)
    out = tmp_path_factory.mktemp("clip") / "tiny"
    done = run_cli("export-model", "--arch", f"openclip:local-dir:{TINY_CLIP}", "--out", str(out), "--format", "onnx")
    assert done.returncode == 0, done.stderr
    return out.with_suffix(".onnx")


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run the real `refinery` entry point in a fresh interpreter."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "refinery", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or REPO,
        timeout=timeout,
    )


def next_frame(im: Image.Image, dx: int = 3, dy: int = 2) -> Image.Image:
    """The same scene a moment later: shifted a few pixels, a little brighter."""
    from PIL import ImageEnhance

    out = Image.new("RGB", im.size)
    out.paste(im.crop((dx, dy, im.width, im.height)), (0, 0))
    return ImageEnhance.Brightness(out).enhance(1.05)


def draw_dup_folder(root: Path) -> dict[str, str | None]:
    """One of each case the funnel handles, drawn into `root`; the expected stage by file.

    Expected stage None means "keep"; "pair" marks c.jpg and its next frame, of which the
    keep rule keeps the more detailed one.
    """
    from PIL import ImageFilter

    (root / "sub").mkdir(parents=True)
    size = (320, 240)
    a, b, c, d = (draw_picture(s, size) for s in (0, 4, 5, 6))
    a.save(root / "a.jpg", quality=92)
    (root / "sub" / "a_copy.jpg").write_bytes((root / "a.jpg").read_bytes())
    b.save(root / "b.png")
    b.resize((192, 144)).save(root / "b_small.jpg", quality=85)
    b.save(root / "b_low.jpg", quality=30)
    c.save(root / "c.jpg", quality=92)
    next_frame(c).save(root / "c_next.jpg", quality=92)
    d.save(root / "d.jpg", quality=92)
    Image.eval(d, lambda v: int(v * 0.05)).save(root / "d_dark.jpg")
    Image.blend(d, Image.new("RGB", size, "white"), 0.92).save(root / "d_bright.jpg")
    d.filter(ImageFilter.GaussianBlur(8)).save(root / "d_blur.jpg")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return {
        "a.jpg": None,
        "sub/a_copy.jpg": "exact",
        "b.png": None,
        "b_small.jpg": "near",
        "b_low.jpg": "near",
        "c.jpg": "pair",
        "c_next.jpg": "pair",
        "d.jpg": None,
        "d_dark.jpg": "quality",
        "d_bright.jpg": "quality",
        "d_blur.jpg": "quality|near",
        "broken.jpg": "error",
    }


@pytest.fixture
def dup_folder(tmp_path: Path) -> tuple[Path, dict[str, str | None]]:
    """A folder with one of each case the funnel handles (draw_dup_folder); returns (folder,
    expected stage by file)."""
    root = tmp_path / "photos"
    return root, draw_dup_folder(root)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root`, hidden ones too: files by SHA-256, links by their text."""
    entries: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                entries[rel] = ("link", os.readlink(path))
            elif path.is_file():
                try:
                    entries[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mode)
                except PermissionError:  # not root: the locked file
                    entries[rel] = ("locked", path.stat().st_size)
    return entries


def extract(path: Path, rel: str, spec) -> tuple:  # noqa: ANN001 - a ModelSpec
    """(features, picture) of one file, read and decoded as a dedup run does it."""
    from refinery.features import measure
    from refinery.io.images import decode_for_stages, read_bytes

    data = read_bytes(path)
    decoded = decode_for_stages(data, path, spec)
    return measure(rel, data, hashlib.sha256(data).hexdigest(), decoded), decoded.image
