#!/usr/bin/env python3
"""The quality stage over every picture some Debian packages install: what does it reject?

    python benchmarks/quality_sweep.py [FOLDER ...]

Nobody labelled these pictures, and nearly all of them are good ones (wallpapers, clip-art
stamps, opencv-doc's example photos): every rejection is printed with its reason, to be read
by a person. Defaults to the folders of opencv-doc, the wallpaper packages and
tuxpaint-stamps-default that benchmarks/quality_set.py draws from (those not installed are
left out). Decodes each file as dedup does and judges it with the default [quality] settings.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from corpus import cpu_name  # noqa: E402

from refinery.config import QualityConfig  # noqa: E402
from refinery.dedup.stages.quality import judge  # noqa: E402
from refinery.errors import UnreadableImage  # noqa: E402
from refinery.features import measure  # noqa: E402
from refinery.io.images import decode  # noqa: E402

Image.MAX_IMAGE_PIXELS = None  # wallpapers reach 5120x2880: installed files, not a hostile input
FOLDERS = [
    "/usr/share/wallpapers",
    "/usr/share/backgrounds",
    "/usr/share/tuxpaint/stamps",
    "/usr/share/doc/opencv-doc/examples/data",
]
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, default=[Path(f) for f in FOLDERS])
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}")
    cfg, judged, rejected = QualityConfig(), 0, []
    start = time.perf_counter()
    for folder in (f for f in args.folders if f.is_dir()):
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()):
            try:
                decoded = decode(path.read_bytes(), path, 320, 224)
            except UnreadableImage as e:
                print(f"  unreadable: {e}")
                continue
            judged += 1
            reason = judge(measure(str(path), b"", "", decoded), cfg)
            if reason:
                rejected.append((path, reason))
    kinds = Counter(reason.code.value for _, reason in rejected)
    print(
        f"{judged} pictures in {time.perf_counter() - start:.0f} s; {len(rejected)} rejected: "
        + ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
    )
    for path, reason in rejected:
        print(f"  {path}: {reason.text}")


if __name__ == "__main__":
    main()
