"""The report's decisions on a generated folder are pinned: speed work must not change them.

Regenerate only after a deliberate change of behaviour: python tests/test_pinned_decisions.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from conftest import run_cli

PINNED = Path(__file__).parent / "data" / "pinned_decisions.json"


def make_folder(root: Path) -> None:
    """Sixteen pictures and their copies: exact, resized, re-encoded, next frame, dark, blurred."""
    from PIL import Image, ImageFilter

    from conftest import draw_picture, next_frame

    root.mkdir(parents=True, exist_ok=True)
    for seed in range(20, 32):
        im = draw_picture(seed, (320, 240))
        im.save(root / f"p{seed}.png")
        kind = seed % 6
        if kind == 0:
            (root / f"p{seed}_copy.png").write_bytes((root / f"p{seed}.png").read_bytes())
        elif kind == 1:
            im.resize((200, 150)).save(root / f"p{seed}_small.jpg", quality=80)
        elif kind == 2:
            next_frame(im).save(root / f"p{seed}_next.png")
        elif kind == 3:
            Image.eval(im, lambda v: v // 16).save(root / f"p{seed}_dark.png")
        elif kind == 4:
            im.filter(ImageFilter.GaussianBlur(6)).save(root / f"p{seed}_blur.png")
        else:
            im.save(root / f"p{seed}_q20.jpg", quality=20)
    # Camera-sized JPEGs: the decoder reduces these before the stages see them.
    for seed in range(40, 44):
        im = draw_picture(seed, (1024, 768))
        im.save(root / f"big{seed}.jpg", quality=90)
        kind = seed % 4
        if kind == 0:
            im.resize((512, 384)).save(root / f"big{seed}_small.jpg", quality=85)
        elif kind == 1:
            next_frame(im).save(root / f"big{seed}_next.jpg", quality=90)
        elif kind == 2:
            im.filter(ImageFilter.GaussianBlur(8)).save(root / f"big{seed}_blur.jpg", quality=90)
        else:
            im.save(root / f"big{seed}.png")


def decisions(root: Path, report: Path) -> dict[str, list]:
    proc = run_cli("dedup", str(root), "--report", str(report), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    files = json.loads(report.read_text())["files"]
    return {f["path"]: [f["decision"], f["stage"], f["kept_as"]] for f in files}


def test_decisions_are_pinned(tmp_path: Path) -> None:
    make_folder(tmp_path / "photos")
    got = decisions(tmp_path / "photos", tmp_path / "r.json")
    expected = json.loads(PINNED.read_text())
    assert got == expected
    assert sum(d[0] == "remove" for d in got.values()) >= 8  # the folder exercises every stage


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    with tempfile.TemporaryDirectory() as tmp:
        make_folder(Path(tmp) / "photos")
        PINNED.write_text(json.dumps(decisions(Path(tmp) / "photos", Path(tmp) / "r.json"), indent=1) + "\n")
    print(f"wrote {PINNED}")
