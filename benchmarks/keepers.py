#!/usr/bin/env python3
"""Which copy a group keeps, on real photos: each photo saved as TIFF, BMP, PNG and a lossy
WebP (quality 80, the kind a phone's gallery or a web download gives), all in one folder,
then `refinery dedup` (the library, as the command runs it). Prints, for each photo, the copy
kept and the reason it gives; a lossless copy should stay.

    python benchmarks/keepers.py [PHOTO ...]   (default: five of Debian's opencv-doc photos)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from corpus import cpu_name  # noqa: E402
from PIL import Image  # noqa: E402

from refinery import api  # noqa: E402

OPENCV_DOC = Path("/usr/share/doc/opencv-doc/examples/data")
DEFAULT = ["baboon.jpg", "messi5.jpg", "fruits.jpg", "building.jpg", "home.jpg"]
SAVES = {".tiff": {}, ".bmp": {}, ".png": {}, ".webp": {"quality": 80}}


def main() -> None:
    photos = [Path(p) for p in sys.argv[1:]] or [OPENCV_DOC / name for name in DEFAULT]
    print(f"CPU: {cpu_name()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for photo in photos:
            picture = Image.open(photo).convert("RGB")
            for suffix, options in SAVES.items():
                picture.save(folder / (photo.stem + suffix), **options)
        result = api.dedup(folder, device="cpu", config=api.settings(run_cache=False))
        kept = {line.path: line for line in result.files if line.decision == "keep"}
        lossless = 0
        for photo in photos:
            [(path, line)] = [(p, line) for p, line in kept.items() if Path(p).stem == photo.stem]
            lossless += not path.endswith(".webp")
            print(f"{photo.name}: kept {path} - {line.reason}")
        print(f"a lossless copy kept for {lossless} of {len(photos)} photos")


if __name__ == "__main__":
    main()
