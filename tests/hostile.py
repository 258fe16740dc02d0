"""A folder gathered from everywhere: every kind of file that can trip an image tool.

`build(root)` writes it and returns what refinery must say of each entry: the decision and
a piece of the reason (or the stage). Used by tests/test_hostile.py.
"""

from __future__ import annotations

import ctypes
import io
import os
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import draw_picture

HUGE = (12000, 9000)
BOMB = (30000, 30000)


@dataclass
class Expect:
    decision: str  # keep | remove | error | skip | decided (keep or remove, either is right)
    says: str = ""  # a piece of the reason, or the stage that removed it


def drop_root_file_access() -> None:
    """For a child run as root: give up the power to read any file regardless of its mode
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a mode-000 file is unreadable as for any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def unreadable_in_child(path: Path) -> bool:
    """Whether a child started with `drop_root_file_access` (as the tests start the CLI) fails to read `path`."""
    probe = subprocess.run(
        [sys.executable, "-c", f"open({str(path)!r}, 'rb').read(1)"], preexec_fn=child_setup(), capture_output=True
    )
    return probe.returncode != 0


def child_setup():  # noqa: ANN201 - a preexec_fn or None
    """The preexec_fn for CLI runs on the hostile folder: as root, drop file-access powers."""
    if os.geteuid() != 0:
        return None
    try:  # only to learn whether this environment allows it; the child does it again
        subprocess.run([sys.executable, "-c", "pass"], preexec_fn=drop_root_file_access, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return drop_root_file_access


def bomb_png(width: int, height: int) -> bytes:
    """A small PNG whose header declares width x height pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 3 * 64) * 64)  # far fewer rows than declared
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def exif_rotated(upright: Image.Image) -> bytes:
    """JPEG bytes that store `upright` turned on its side, with EXIF orientation 6 saying how to
    turn it back (rotate 90 degrees clockwise to display), as phone cameras write them."""
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


def animated(fmt: str, seed: int) -> bytes:
    frames = [draw_picture(seed + k, (240, 180)) for k in range(3)]
    out = io.BytesIO()
    frames[0].save(out, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


def gray16(size: tuple[int, int]) -> Image.Image:
    """A 16-bit gray picture that uses the whole 0..65535 range (a scanner's or a microscope's)."""
    w, h = size
    rgb = np.asarray(draw_picture(31, size).convert("L"), np.float64) / 255
    return Image.fromarray((rgb * 65535).astype(np.uint16))


def with_alpha(seed: int, size: tuple[int, int]) -> Image.Image:
    """A cut-out: a picture on a transparent background."""
    im = draw_picture(seed, size).convert("RGBA")
    alpha = np.zeros(size[::-1], np.uint8)
    alpha[size[1] // 6 : -size[1] // 6, size[0] // 6 : -size[0] // 6] = 255
    im.putalpha(Image.fromarray(alpha))
    return im


def huge_png(seed: int, size: tuple[int, int]) -> Image.Image:
    """A real picture at size: a drawn picture scaled up (flat areas, so the PNG stays small)."""
    return draw_picture(seed, (400, 300)).resize(size, Image.Resampling.NEAREST)


def build(root: Path, outside: Path, huge: bool = True) -> dict[str, Expect]:
    """Write the hostile folder at `root` (and link targets at `outside`); expected outcome by path.

    `huge` adds two 12000x9000 PNGs (one in a sub-folder, so two workers meet them at once).
    """
    root.mkdir(parents=True)
    outside.mkdir(parents=True)
    size = (320, 240)
    expect: dict[str, Expect] = {}

    def put(rel: str, data: bytes | Image.Image, outcome: Expect, **save: object) -> Path:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, Image.Image):
            data.save(path, **save)
        else:
            path.write_bytes(data)
        expect[rel] = outcome
        return path

    # Good pictures, each distinct.
    for i in range(4):
        put(f"good_{i}.jpg", draw_picture(200 + i, size), Expect("keep"), quality=92)
    a_jpg = (root / "good_0.jpg").read_bytes()

    # Broken files: one error line each, naming the reason.
    put("empty.jpg", b"", Expect("error", "empty file"))
    put("truncated.jpg", a_jpg[: len(a_jpg) // 2], Expect("error", "truncated"))
    put("random.png", np.random.default_rng(0).bytes(4096), Expect("error", "not an image"))
    put("notes.jpg", b"shopping list: milk, eggs\n" * 20, Expect("error", "not an image"))
    put("bomb.png", bomb_png(*BOMB), Expect("error", "30000x30000"))

    # Unusual but valid pictures: decided like any other.
    put("cmyk.jpg", draw_picture(210, size).convert("CMYK"), Expect("keep"), quality=92)
    put("gray16.png", gray16(size), Expect("keep"))
    palette = draw_picture(211, size).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    put("palette_transparent.png", palette, Expect("keep"), transparency=0)
    put("rgba.png", with_alpha(212, size), Expect("keep"))
    put("one_pixel.png", Image.new("RGB", (1, 1), (90, 120, 150)), Expect("remove", "too small"))
    if huge:
        put("huge.png", huge_png(41, HUGE), Expect("keep"), compress_level=1)
        put("sub/huge_too.png", huge_png(43, HUGE), Expect("keep"), compress_level=1)
    upright = draw_picture(213, (240, 320))  # portrait
    put("upright.jpg", upright, Expect("decided"), quality=95)
    put("phone_rotated.jpg", exif_rotated(upright), Expect("decided"))
    put("animated.gif", animated("GIF", 214), Expect("keep"))
    put("animated.webp", animated("WEBP", 217), Expect("keep"))

    # Names.
    put("with space.jpg", draw_picture(220, size), Expect("keep"), quality=92)
    put("ünïcødé 日本.jpg", draw_picture(221, size), Expect("keep"), quality=92)
    put("-leading-dash.jpg", draw_picture(222, size), Expect("keep"), quality=92)
    latin1 = os.fsdecode(b"caf\xe9.jpg")  # not UTF-8: a name from an old Windows share
    put(latin1, draw_picture(223, size), Expect("keep"), quality=92)

    # The same bytes as good_0.jpg under another extension: an exact copy.
    put("good_0_copy.png", a_jpg, Expect("remove", "exact"))

    # No read permission (unreadable for the CLI run; see child_setup).
    locked = put("locked.jpg", draw_picture(224, size), Expect("error", "permission denied"), quality=92)
    locked.chmod(0)
    if not unreadable_in_child(locked):  # root that cannot give up its powers: it reads the file
        expect["locked.jpg"] = Expect("keep")

    # Symbolic links: never followed out of the folder, never judged twice.
    (outside / "elsewhere.jpg").write_bytes((root / "good_2.jpg").read_bytes())  # a copy, out of the folder
    (root / "link_to_good.jpg").symlink_to("good_1.jpg")
    expect["link_to_good.jpg"] = Expect("skip", "good_1.jpg")
    (root / "link_outside.jpg").symlink_to(outside / "elsewhere.jpg")
    expect["link_outside.jpg"] = Expect("skip", "outside")
    (root / "loop_a.jpg").symlink_to("loop_b.jpg")
    (root / "loop_b.jpg").symlink_to("loop_a.jpg")
    expect["loop_a.jpg"] = expect["loop_b.jpg"] = Expect("error", "loop")
    (root / "dangling.jpg").symlink_to("no_such_file.jpg")
    expect["dangling.jpg"] = Expect("error", "does not exist")
    (root / "sub").mkdir(exist_ok=True)
    put("sub/inner.jpg", draw_picture(231, size), Expect("keep"), quality=92)
    (root / "alias_of_sub").symlink_to("sub", target_is_directory=True)
    expect["alias_of_sub"] = Expect("skip", "folder")

    # Hidden folders (nested too) are not entered: one line for the folder.
    put("sub/.thumbnails/deep/t.jpg", draw_picture(232, size), Expect("keep"), quality=92)
    del expect["sub/.thumbnails/deep/t.jpg"]
    expect["sub/.thumbnails"] = Expect("skip", "hidden")
    return expect
